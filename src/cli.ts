/**
 * The `smsblossom` command. Exit codes: 0 success, 1 failure, 2 bad usage or configuration.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfigOrExit, QUEUE_NAMES, type Config, type QueueName } from './config.js';
import { openDatabase } from './db/client.js';
import { migrate } from './db/migrate.js';
import { AppError } from './errors.js';
import { createLogger } from './logger.js';
import { queuesFromArgv } from './queue/worker.js';
import { startSystem, type System } from './system.js';

const HELP = `smsblossom — SMS automation for Shopify merchants

Usage: smsblossom <command> [options]

Commands:
  start                     HTTP API and every worker in one process
  api                       HTTP API only
  worker [--queues a,b]     workers only (default: WORKER_QUEUES, i.e. all queues)
  migrate                   apply database migrations and exit
  smoke                     enqueue the specification's examples and wait for them
  dlq list [--queue Q] [--shop S] [--limit N]
  dlq show <id>
  dlq replay <id>
  dlq purge (--queue Q | --shop S | --before ISO | --all)

Every command reads its configuration from the environment (see README.md).
Run "smsblossom <command> --help" for a command's options.`;

const COMMAND_HELP: Record<string, string> = {
  start: 'smsblossom start\n  Runs the HTTP API and the workers of every queue (WORKER_QUEUES) in one process.',
  api: 'smsblossom api\n  Runs the HTTP API only: webhook intake, health, operator endpoints. Pair with "smsblossom worker".',
  worker: `smsblossom worker [--queues ${QUEUE_NAMES.join(',')}]\n  Runs workers only, for the queues named (default: WORKER_QUEUES).`,
  migrate: 'smsblossom migrate\n  Applies pending database migrations and exits.',
  smoke: 'smsblossom smoke\n  Enqueues the specification usage examples for queues that have processors and waits for each job.',
  dlq: 'smsblossom dlq list [--queue Q] [--shop S] [--limit N] | show <id> | replay <id> | purge (--queue Q | --shop S | --before ISO | --all)',
};

function fail(message: string, code = 2): never {
  process.stderr.write(`smsblossom: ${message}\n`);
  process.exit(code);
}

/** Runs until SIGTERM/SIGINT, then stops gracefully; a second signal exits at once. */
export function runUntilSignalled(system: System): Promise<void> {
  return new Promise((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        system.logger.warn({ signal }, 'Second signal: exiting now');
        process.exit(1);
      }
      signalled = true;
      system.logger.info({ signal }, 'Shutting down: finishing active jobs');
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
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

async function serve(config: Config, api: boolean, workers: readonly QueueName[]): Promise<void> {
  let system: System;
  try {
    system = await startSystem({ config, api, workers });
  } catch (err) {
    fail((err as Error).message, 1);
  }
  await runUntilSignalled(system);
  // Everything is closed; a handle left open by a library must not keep a stopped service alive.
  process.exit();
}

async function withSystem<T>(config: Config, fn: (s: System) => Promise<T>): Promise<T> {
  const system = await startSystem({ config, api: false, workers: [], logger: createLogger({ level: 'warn' }) });
  try {
    return await fn(system);
  } finally {
    await system.stop();
  }
}

async function dlqCommand(config: Config, args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      queue: { type: 'string' },
      shop: { type: 'string' },
      limit: { type: 'string' },
      before: { type: 'string' },
      all: { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  const id = () => {
    const n = Number(positionals[0]);
    if (!Number.isInteger(n) || n < 1) fail(`dlq ${sub}: give a dead letter id (a positive integer)`);
    return n;
  };
  if (values.queue && !(QUEUE_NAMES as readonly string[]).includes(values.queue)) fail(`--queue: unknown queue "${values.queue}"`);
  await withSystem(config, async ({ deadLetters }) => {
    switch (sub) {
      case 'list': {
        const limit = values.limit ? Number(values.limit) : 50;
        if (!Number.isInteger(limit) || limit < 1 || limit > 500) fail('--limit: must be an integer from 1 to 500');
        const rows = await deadLetters.list({ queue: values.queue, shopId: values.shop, limit });
        if (values.json) {
          process.stdout.write(`${JSON.stringify(rows)}\n`);
          return;
        }
        if (!rows.length) {
          process.stdout.write('No dead letters.\n');
          return;
        }
        for (const r of rows) {
          process.stdout.write(
            `${String(r.id).padStart(6)}  ${r.failedAt.toISOString()}  ${r.queue}:${r.jobName}  ${r.shopId ?? '-'}  ` +
              `${r.errorCode ?? ''} ${r.errorMessage.slice(0, 80)}${r.replayCount ? `  (replayed ${r.replayCount}x)` : ''}\n`,
          );
        }
        return;
      }
      case 'show': {
        const row = await deadLetters.get(id());
        if (!row) fail(`dead letter ${positionals[0]} does not exist`, 1);
        process.stdout.write(`${JSON.stringify(row, null, 2)}\n`);
        return;
      }
      case 'replay': {
        const r = await deadLetters.replay(id());
        process.stdout.write(`Replayed to ${r.queue} as job ${r.jobId}\n`);
        return;
      }
      case 'purge': {
        const before = values.before ? new Date(values.before) : undefined;
        if (before && Number.isNaN(before.getTime())) fail('--before: not a date (use ISO 8601)');
        if (!values.all && !values.queue && !values.shop && !before) fail('dlq purge: name --queue, --shop or --before, or pass --all');
        const n = await deadLetters.purge({ queue: values.queue, shopId: values.shop, before });
        process.stdout.write(`Purged ${n} dead letter(s)\n`);
        return;
      }
      default:
        fail(`dlq: unknown subcommand "${sub ?? ''}"\n${COMMAND_HELP.dlq}`);
    }
  });
}

export async function runFromCli(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  if (args.includes('--help') || args.includes('-h')) {
    const text = COMMAND_HELP[command];
    if (!text) fail(`unknown command "${command}"\n\n${HELP}`);
    process.stdout.write(`${text}\n`);
    return;
  }
  const config = loadConfigOrExit();
  try {
    switch (command) {
      case 'start':
        return await serve(config, true, config.workers.queues);
      case 'api':
        return await serve(config, true, []);
      case 'worker':
        return await serve(config, false, queuesFromArgv(args) ?? config.workers.queues);
      case 'migrate': {
        const db = await openDatabase({ ...config.database, dataDir: config.dataDir });
        try {
          const applied = await migrate(db);
          process.stdout.write(applied.length ? `Applied migrations: ${applied.join(', ')}\n` : 'Database is up to date\n');
        } finally {
          await db.close();
        }
        return;
      }
      case 'smoke': {
        const { runSmoke } = await import('../scripts/enqueueSmoke.js');
        process.exitCode = await runSmoke(config);
        return;
      }
      case 'dlq':
        return await dlqCommand(config, args);
      default:
        fail(`unknown command "${command}"\n\n${HELP}`);
    }
  } catch (err) {
    if (err instanceof AppError) fail(`${err.code}: ${err.message}`, err.statusCode < 500 ? 2 : 1);
    fail((err as Error).message, 1);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runFromCli(process.argv.slice(2));
}
