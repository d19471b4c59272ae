/**
 * The `smsblossom` command (commander). Every command has `--help`.
 *
 * Exit codes scripts can rely on:
 *   0  success
 *   1  failure (the service could not start, a job or row failed, a dead letter or campaign does not exist, an
 *      import that rejected some rows — its good rows are still stored)
 *   2  bad usage or configuration (unknown command or option, invalid argument, invalid environment variable)
 */
import cluster from 'node:cluster';
import { constants as fsConstants, createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import cliProgress from 'cli-progress';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import pino from 'pino';
import { importContactsStream } from './contacts/import.js';
import { loadConfigOrExit, QUEUE_NAMES, type Config, type QueueName } from './config.js';
import { openDatabase } from './db/client.js';
import { migrate } from './db/migrate.js';
import { getShopByDomain } from './db/shops.js';
import { AppError } from './errors.js';
import { createLogger } from './logger.js';
import { queuesFromArgv } from './queue/queueArgs.js';
import { DEV_TOKEN_DEFAULT_TTL_SECONDS, DEV_TOKEN_MAX_TTL_SECONDS, signDevSessionToken } from './shopify/sessionToken.js';
import { startSystem, type System } from './system.js';
import { notifyReady, onSupervisorStop, runSupervisor, singleProcessReason } from './supervisor.js';
import { campaignCommand, CAMPAIGN_HELP } from './campaigns/cli.js';
import { syncShopCommand } from './sync/cli.js';

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

/** A failure with the exit code it maps to; thrown inside actions, printed once by {@link runFromCli}. */
class CliExit extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

const usage = (message: string) => new CliExit(message, EXIT.USAGE);
const failure = (message: string) => new CliExit(message, EXIT.FAILURE);

/** After SHUTDOWN_TIMEOUT_MS the workers are cut off; the steps after them (queues, Redis, database) get this long. */
const SHUTDOWN_GRACE_MS = 5000;

/**
 * Runs until SIGTERM/SIGINT (or, in a process of `start`'s supervisor, until it asks), then stops gracefully; a second
 * signal exits at once, and so does a shutdown that has not finished SHUTDOWN_GRACE_MS after SHUTDOWN_TIMEOUT_MS (a
 * step that hangs must not keep a stopping service alive).
 */
export function runUntilSignalled(system: System): Promise<void> {
  return new Promise((resolve) => {
    let signalled = false;
    let stopping = false;
    // The supervisor's request is not a signal: the Ctrl-C that made it reaches this process too, and is not a second one.
    const stop = (reason: { signal: NodeJS.Signals } | { by: 'supervisor' }) => {
      if (stopping) return;
      stopping = true;
      const limitMs = system.config.workers.shutdownTimeoutMs + SHUTDOWN_GRACE_MS;
      setTimeout(() => {
        system.logger.error({ limitMs }, 'Shutdown did not finish in time: exiting now');
        process.exit(1);
      }, limitMs).unref();
      system.logger.info(reason, 'Shutting down: finishing active jobs');
      system
        .stop()
        .then(() => {
          system.logger.info('Stopped');
          resolve();
        })
        .catch((err: Error) => {
          system.logger.error({ err: err.message }, 'Shutdown failed');
          process.exitCode = 1;
          resolve();
        });
    };
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        system.logger.warn({ signal }, 'Second signal: exiting now');
        process.exit(1);
      }
      signalled = true;
      stop({ signal });
    };
    onSupervisorStop(() => stop({ by: 'supervisor' }));
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

async function serve(config: Config, api: boolean, workers: readonly QueueName[], started?: (system: System) => void): Promise<void> {
  let system: System;
  try {
    system = await startSystem({ config, api, workers });
  } catch (err) {
    throw failure((err as Error).message);
  }
  started?.(system);
  const stopped = runUntilSignalled(system);
  notifyReady();
  await stopped;
  // Everything is closed; a handle left open by a library must not keep a stopped service alive.
  process.exit();
}

/** Warnings and worse, on stderr: stdout carries the command's output (`--json`), which a log line would corrupt. */
function commandLogger(config: Config) {
  const level = config.logLevel === 'silent' || config.logLevel === 'fatal' || config.logLevel === 'error' ? config.logLevel : 'warn';
  return createLogger({ level, destination: pino.destination(2) });
}

async function withSystem<T>(config: Config, fn: (s: System) => Promise<T>): Promise<T> {
  const system = await startSystem({ config, api: false, workers: [], logger: commandLogger(config) });
  try {
    return await fn(system);
  } finally {
    await system.stop();
  }
}

const positiveId = (what: string) => (value: string) => {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${what} must be a positive integer`);
  return n;
};

const queueOption = () =>
  new Option('--queue <name>', 'only this queue').choices([...QUEUE_NAMES]);

const out = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);

/** Builds the program. A fresh one per call: commander keeps parse state on the instance. */
export function buildProgram(): Command {
  const program = new Command('smsblossom')
    .description('SMS automation for Shopify merchants. Every command reads its configuration from the environment (see README.md).')
    .addHelpText('after', '\nExit codes: 0 success, 1 failure, 2 bad usage or configuration.')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) });

  program
    .command('start')
    .description('HTTP API and every worker (WORKER_QUEUES) in each of PROCESSES processes (default: one per core on PostgreSQL, one on PGlite)')
    .action(async () => {
      const config = loadConfigOrExit();
      if (cluster.isPrimary && config.processes.count > 1) {
        let code: number;
        try {
          code = await runSupervisor({ config, logger: createLogger({ level: config.logLevel }), shutdownGraceMs: SHUTDOWN_GRACE_MS });
        } catch (err) {
          throw failure((err as Error).message);
        }
        process.exit(code);
      }
      await serve(config, true, config.workers.queues, (system) => {
        const why = singleProcessReason(config);
        if (why) system.logger.info({ processes: 1 }, why);
      });
    });

  program
    .command('api')
    .description('HTTP API only (webhooks, admin API, dashboard, metrics); pair with "smsblossom worker"')
    .action(async () => serve(loadConfigOrExit(), true, []));

  program
    .command('worker')
    .description('workers only')
    .option('--queues <list>', `comma-separated queues to serve (${QUEUE_NAMES.join(',')}); default WORKER_QUEUES`)
    .action(async (opts: { queues?: string }) => {
      let queues: QueueName[] | undefined;
      try {
        queues = opts.queues === undefined ? undefined : queuesFromArgv(['--queues', opts.queues]);
      } catch (err) {
        throw usage((err as Error).message);
      }
      const config = loadConfigOrExit();
      await serve(config, false, queues ?? config.workers.queues);
    });

  program
    .command('migrate')
    .description('apply pending database migrations and exit')
    .action(async () => {
      const config = loadConfigOrExit();
      const db = await openDatabase({ ...config.database, dataDir: config.dataDir });
      try {
        const applied = await migrate(db);
        out(applied.length ? `Applied migrations: ${applied.join(', ')}` : 'Database is up to date');
      } finally {
        await db.close();
      }
    });

  program
    .command('sandbox')
    .description('run the bundled Mitto-compatible SMS sandbox on its own; prints its URL, stops on SIGTERM/SIGINT')
    .option('--port <port>', 'port', (v) => {
      if (!/^\d+$/.test(v) || Number(v) > 65535) throw new InvalidArgumentError('must be a port number');
      return Number(v);
    }, 4010)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--api-key <key>', 'the X-Mitto-API-Key it accepts (default: any)')
    .option('--dlr-delay-ms <ms>', 'delay before each delivery report', positiveId('--dlr-delay-ms'))
    .action(async (opts: { port: number; host: string; apiKey?: string; dlrDelayMs?: number }) => {
      const { createSandbox } = await import('./sandbox/server.js');
      const logger = createLogger({ level: 'info', name: 'sms-sandbox' });
      const sandbox = await createSandbox({
        logger,
        ...(opts.apiKey !== undefined ? { apiKey: opts.apiKey } : {}),
        ...(opts.dlrDelayMs !== undefined ? { dlrDelayMs: opts.dlrDelayMs } : {}),
      });
      out(await sandbox.listen(opts.port, opts.host));
      await new Promise<void>((resolve) => {
        const stop = () => void sandbox.close().finally(resolve);
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });

  const dlq = program.command('dlq').description('dead letters: jobs that failed for good (stored in the database)');
  dlq
    .command('list')
    .description('newest dead letters first')
    .addOption(queueOption())
    .option('--shop <domain>', 'only this shop')
    .option('--limit <n>', 'at most this many (1-500)', (v) => {
      const n = positiveId('--limit')(v);
      if (n > 500) throw new InvalidArgumentError('must be at most 500');
      return n;
    }, 50)
    .option('--json', 'print JSON')
    .action(async (opts: { queue?: QueueName; shop?: string; limit: number; json?: boolean }) => {
      await withSystem(loadConfigOrExit(), async ({ deadLetters }) => {
        const rows = await deadLetters.list({ queue: opts.queue, shopId: opts.shop, limit: opts.limit });
        if (opts.json) return out(JSON.stringify(rows));
        if (!rows.length) return out('No dead letters.');
        for (const r of rows) {
          out(
            `${String(r.id).padStart(6)}  ${r.failedAt.toISOString()}  ${r.queue}:${r.jobName}  ${r.shopId ?? '-'}  ` +
              `${r.errorCode ?? ''} ${r.errorMessage.slice(0, 80)}${r.replayCount ? `  (replayed ${r.replayCount}x)` : ''}`,
          );
        }
      });
    });
  dlq
    .command('show')
    .description('one dead letter, as JSON')
    .argument('<id>', 'dead letter id', positiveId('id'))
    .action(async (id: number) => {
      await withSystem(loadConfigOrExit(), async ({ deadLetters }) => {
        const row = await deadLetters.get(id);
        if (!row) throw failure(`dead letter ${id} does not exist`);
        out(JSON.stringify(row, null, 2));
      });
    });
  dlq
    .command('replay')
    .description('enqueue the job again, as it was')
    .argument('<id>', 'dead letter id', positiveId('id'))
    .action(async (id: number) => {
      await withSystem(loadConfigOrExit(), async ({ deadLetters }) => {
        const r = await deadLetters.replay(id);
        out(`Replayed to ${r.queue} as job ${r.jobId}`);
      });
    });
  dlq
    .command('purge')
    .description('delete dead letters: name --queue, --shop or --before, or pass --all')
    .addOption(queueOption())
    .option('--shop <domain>', 'only this shop')
    .option('--before <iso>', 'only those that failed before this time (ISO 8601)', (v) => {
      const d = new Date(v);
      if (Number.isNaN(d.getTime())) throw new InvalidArgumentError('not a date (use ISO 8601)');
      return d;
    })
    .option('--all', 'every dead letter')
    .action(async (opts: { queue?: QueueName; shop?: string; before?: Date; all?: boolean }) => {
      if (!opts.all && !opts.queue && !opts.shop && !opts.before) throw usage('dlq purge: name --queue, --shop or --before, or pass --all');
      await withSystem(loadConfigOrExit(), async ({ deadLetters }) => {
        const n = await deadLetters.purge({ queue: opts.queue, shopId: opts.shop, before: opts.before });
        out(`Purged ${n} dead letter(s)`);
      });
    });

  const contacts = program.command('contacts').description("a shop's contacts");
  contacts
    .command('import')
    .description(
      'import contacts from a CSV file (header row; columns phone, first_name, last_name, email, tags, country, customer_id, consent). ' +
        'Bad rows are reported with their line and reason; good rows are stored. Exits 1 when any row was rejected.',
    )
    .argument('<file>', 'CSV file (any size: it is read as a stream, a page of 500 rows stored at a time)')
    .requiredOption('--shop <domain>', 'the shop, e.g. blossom-demo.myshopify.com')
    .option('--rejects <file>', 'where every rejected row is written (line,reason); default <file>.rejects.csv when any is')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, opts: { shop: string; rejects?: string; json?: boolean }) => {
      if (!/^[a-z0-9][a-z0-9-]*\.myshopify\.com$/.test(opts.shop)) throw usage(`--shop: "${opts.shop}" is not a *.myshopify.com domain`);
      let size: number;
      try {
        size = (await stat(file)).size;
        await access(file, fsConstants.R_OK);
      } catch (err) {
        throw usage(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      const rejectsPath = opts.rejects ?? `${file}.rejects.csv`;
      let rejects: WriteStream | null = null;
      const config = loadConfigOrExit();
      const result = await withSystem(config, async ({ db }) => {
        // Never a shop made up by a typo: shops come from Shopify (their first webhook or API request).
        const shop = await getShopByDomain(db.db, opts.shop);
        if (!shop) throw new AppError('NOT_FOUND', `--shop: ${opts.shop} is not a shop of this service (a shop is added by its first webhook or API request; check the spelling)`);
        const bar = new cliProgress.SingleBar(
          // Off a terminal (a script, a log) it prints a line every 2 s instead of redrawing.
          { format: 'Importing [{bar}] {percentage}% | {rows} rows | {rate} rows/s', stream: process.stderr, hideCursor: true, noTTYOutput: true, notTTYSchedule: 2000 },
          cliProgress.Presets.shades_classic,
        );
        const started = Date.now();
        bar.start(Math.max(size, 1), 0, { rows: 0, rate: 0 });
        try {
          return await importContactsStream(db.db, shop, () => createReadStream(file), {
            listLimit: 20,
            onProgress: ({ bytes, rows }) => bar.update(bytes, { rows, rate: Math.round(rows / Math.max(0.001, (Date.now() - started) / 1000)) }),
            onRejected: (e) => {
              if (!rejects) {
                rejects = createWriteStream(rejectsPath);
                rejects.write('line,reason\n');
              }
              rejects.write(`${e.line},"${e.reason.replaceAll('"', '""')}"\n`);
            },
          });
        } finally {
          bar.stop();
          const open = rejects as WriteStream | null;
          if (open) await new Promise((resolve) => open.end(resolve));
        }
      });
      if (opts.json) out(JSON.stringify(result));
      else {
        out(`Imported ${result.imported} of ${result.rows} rows (${result.created} new, ${result.updated} updated); ${result.rejected} rejected`);
        for (const e of result.errors) out(`  line ${e.line}: ${e.reason}`);
        if (result.rejected > result.errors.length) out(`  … and ${result.rejected - result.errors.length} more`);
        if (result.rejected) out(`Every rejected row, with its line and reason: ${rejectsPath}`);
        if (result.consentRefusedCount) out(`Consent not applied on ${result.consentRefusedCount} row(s):`);
        for (const e of result.consentRefused) out(`  line ${e.line}: ${e.reason}`);
        if (result.consentRefusedCount > result.consentRefused.length) out(`  … and ${result.consentRefusedCount - result.consentRefused.length} more`);
      }
      if (result.rejected) process.exitCode = EXIT.FAILURE;
    });

  program
    .command('campaign')
    .description(`campaigns: ${CAMPAIGN_HELP}`)
    .argument('<action>', 'send | progress | pause | resume | cancel')
    .argument('<id>', 'campaign id', positiveId('campaign id'))
    .option('--follow', 'show a progress bar until the campaign is sent, cancelled, failed or paused')
    .option('--json', 'print progress as JSON')
    .action(async (action: string, id: number, opts: { follow?: boolean; json?: boolean }) => {
      const config = loadConfigOrExit();
      await withSystem(config, (system) => campaignCommand(system, config, action, id, { follow: Boolean(opts.follow), json: Boolean(opts.json) }));
    });

  program
    .command('shop')
    .description("a shop's Shopify data")
    .command('sync')
    .description("queue a sync of the shop's details and customers from Shopify (the workers of the sync queue run it)")
    .requiredOption('--shop <domain>', 'the shop, e.g. blossom-demo.myshopify.com')
    .action(async (opts: { shop: string }) => {
      await withSystem(loadConfigOrExit(), async (system) => out(await syncShopCommand(system, opts.shop)));
    });

  const dev = program.command('dev').description('development aids (refused when NODE_ENV=production)');
  dev
    .command('token')
    .description("print a Shopify session token for the shop, signed with SHOPIFY_API_SECRET for SHOPIFY_API_KEY, as the merchant API takes it (Authorization: Bearer <token>)")
    .requiredOption('--shop <domain>', 'the shop, e.g. blossom-demo.myshopify.com')
    .option('--ttl <seconds>', `lifetime (1-${DEV_TOKEN_MAX_TTL_SECONDS})`, positiveId('--ttl'), DEV_TOKEN_DEFAULT_TTL_SECONDS)
    .action(async (opts: { shop: string; ttl: number }) => {
      out(await signDevSessionToken(loadConfigOrExit(), { shop: opts.shop, ttlSeconds: opts.ttl }));
    });

  return program;
}

/** Runs the command line (without the node and script arguments); exits the process on failure. */
export async function runFromCli(argv: string[]): Promise<void> {
  const program = buildProgram();
  if (argv.length === 0) {
    program.outputHelp();
    return;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successes; every other parse error is bad usage (commander has printed it).
      if (err.exitCode === 0) return;
      process.exit(EXIT.USAGE);
    }
    const exit = (message: string, code: number): never => {
      process.stderr.write(`smsblossom: ${message}\n`);
      process.exit(code);
    };
    if (err instanceof CliExit) exit(err.message, err.exitCode);
    if (err instanceof AppError) exit(`${err.code}: ${err.message}`, err.statusCode < 500 && err.code !== 'NOT_FOUND' ? EXIT.USAGE : EXIT.FAILURE);
    exit((err as Error).message, EXIT.FAILURE);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runFromCli(process.argv.slice(2));
}
