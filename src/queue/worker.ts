/**
 * Starts one BullMQ Worker per served queue, logs each job's life, dead-letters final failures and shuts down
 * gracefully. Runnable on its own:
 *
 *   npm run worker -- --queues delivery          (or: npx tsx src/queue/worker.ts --queues delivery)
 *
 * Processors are thin: they unpack the job and call a domain function with explicit dependencies. The wrapper here
 * validates job data against the catalog, maps permanent errors to `UnrecoverableError`, and writes the dead letter
 * *before* BullMQ is told a job failed for good (see `deadLetters.ts` for why that order matters).
 */
import { pathToFileURL } from 'node:url';
import { DelayedError, MetricsTime, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config.js';
import type { Database } from '../db/client.js';
import { AppError, isAppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { DeadLetterQueue, isFinalFailure } from './deadLetters.js';
import type { Renderer } from '../messages/render.js';
import type { SmsProvider } from '../messages/providers/types.js';
import { evaluateAutomation } from './processors/automations.js';
import { processDelivery, type DeliveryControl } from './processors/delivery.js';
import { campaignGate, processCampaignBatch } from './processors/campaigns.js';
import { processEvent } from './processors/events.js';
import { processHousekeeping } from './processors/housekeeping.js';
import { parseJobData, QUEUE_NAMES, type JobData, type QueueName, type QueueRegistry } from './queues.js';
import { getRedisConnection } from './redis.js';
import type { ServiceMetrics } from './metrics.js';

/** Long-lived collaborators built once per process and handed to processors. */
export interface Services {
  renderer: Renderer;
  /** Present in processes that serve `delivery`. */
  provider?: SmsProvider;
  /** Base URL the provider calls back (PUBLIC_URL, else the address the API listens on). */
  publicUrl: string;
}

export interface ProcessorContext {
  db: Database;
  queues: QueueRegistry;
  logger: Logger;
  config: Config;
  services: Services;
  /** The lock token of the job being processed (for `moveToDelayed`). */
  token: string | undefined;
}

export type Processor<Q extends QueueName> = (job: Job, data: JobData<Q>, ctx: ProcessorContext) => Promise<unknown>;
export type ProcessorMap = { [Q in QueueName]?: Processor<Q> };

/** The processor of each queue; a queue missing here is not served rather than faked as done. */
export const PROCESSORS: ProcessorMap = {
  events: (job, data, ctx) => processEvent(data, { db: ctx.db.db, queues: ctx.queues, logger: ctx.logger }, String(job.id)),
  automations: (_job, data, ctx) =>
    evaluateAutomation(data, {
      db: ctx.db.db,
      queues: ctx.queues,
      logger: ctx.logger,
      renderer: ctx.services.renderer,
      sms: ctx.config.sms,
    }),
  delivery: (job, data, ctx) => {
    const { provider } = ctx.services;
    if (!provider) throw new AppError('INTERNAL', 'this process serves delivery without an SMS provider');
    const sms = ctx.config.sms;
    return processDelivery(
      data,
      {
        db: ctx.db.db,
        provider,
        logger: ctx.logger,
        callbackUrl: (id) => `${ctx.services.publicUrl}/webhooks/mitto/dlr?token=${encodeURIComponent(sms.dlrToken)}&ref=${id}`,
        reconcileDelayMs: sms.reconcileDelayMs,
        reconcileAttempts: sms.reconcileAttempts,
        campaignGate: campaignGate(ctx.db.db, ctx.config.campaigns.pausedRecheckMs),
      },
      deliveryControl(job, ctx),
    );
  },
  housekeeping: (_job, data, ctx) =>
    processHousekeeping(data, { db: ctx.db.db, queues: ctx.queues, logger: ctx.logger, settings: ctx.config.housekeeping }),
};

/** `campaigns:batch`: pages of the audience while the campaign's delivery backlog has room; otherwise it runs again later. */
PROCESSORS.campaigns = (job, data, ctx) =>
  processCampaignBatch(
    data,
    {
      database: ctx.db,
      queues: ctx.queues,
      logger: ctx.logger,
      renderer: ctx.services.renderer,
      sms: ctx.config.sms,
      pacing: { ...ctx.config.campaigns, maxPagesPerRun: 10 },
    },
    {
      async deferUntil(at) {
        await job.moveToDelayed(at.getTime(), ctx.token);
        throw new DelayedError();
      },
    },
  );

/** BullMQ's ways of putting a job off, behind the processor's queue-agnostic interface. */
function deliveryControl(job: Job, ctx: ProcessorContext): DeliveryControl {
  return {
    attemptsMade: job.attemptsMade,
    maxAttempts: job.opts.attempts ?? 1,
    reconcileRound: Number(job.data?.reconcileRound ?? 0),
    async deferUntil(at, reconcileRound) {
      if (reconcileRound !== undefined) await job.updateData({ ...job.data, reconcileRound });
      await job.moveToDelayed(at.getTime(), ctx.token);
      throw new DelayedError();
    },
    async rateLimited(ms) {
      await ctx.queues.get('delivery').rateLimit(ms);
      throw Worker.RateLimitError();
    },
  };
}

/** Errors BullMQ uses for control flow; they are not failures and must pass through untouched. */
const CONTROL_FLOW_ERRORS = new Set(['DelayedError', 'RateLimitError', 'WaitingChildrenError', 'WaitingError']);

export interface WorkerStatus {
  name: QueueName;
  isRunning: boolean;
  concurrency: number;
}

export interface WorkerPoolOptions {
  config: Config;
  db: Database;
  queues: QueueRegistry;
  logger: Logger;
  deadLetters: DeadLetterQueue;
  processors?: ProcessorMap;
  services: Services;
  /** How long a dead-letter write that failed is put off before the job runs again (ms). */
  deadLetterRetryDelayMs?: number;
  /** Prometheus metrics: job durations are observed here. */
  metrics?: ServiceMetrics;
}

export class WorkerPool {
  private readonly workers = new Map<QueueName, { worker: Worker; connection: Redis }>();
  private closing: Promise<void> | undefined;
  private readonly processors: ProcessorMap;

  constructor(private readonly options: WorkerPoolOptions) {
    this.processors = options.processors ?? PROCESSORS;
  }

  /** Starts workers for the queues asked for that have a processor; returns the names started. */
  async start(queueNames: readonly QueueName[] = this.options.config.workers.queues): Promise<QueueName[]> {
    const started: QueueName[] = [];
    for (const name of queueNames) {
      if (this.workers.has(name)) continue;
      if (!this.processors[name]) {
        this.options.logger.info({ queue: name }, 'No processor for this queue yet: not served');
        continue;
      }
      this.startOne(name);
      started.push(name);
    }
    await Promise.all(started.map((n) => this.workers.get(n)!.worker.waitUntilReady()));
    for (const name of started) {
      const recorded = await this.options.deadLetters
        .sweep(name, this.options.queues.get(name))
        .catch((err: Error) => this.options.logger.error({ queue: name, err: err.message }, 'Dead-letter sweep failed'));
      if (recorded) this.options.logger.warn({ queue: name, recorded }, 'Dead-letter sweep recorded failed jobs');
    }
    return started;
  }

  private startOne<Q extends QueueName>(name: Q): void {
    const { config, logger, deadLetters } = this.options;
    const processor = this.processors[name] as Processor<Q>;
    const ctx: ProcessorContext = { db: this.options.db, queues: this.options.queues, logger, config, services: this.options.services, token: undefined };
    const connection = getRedisConnection({ url: config.redis.url }, 'worker', { connectionName: `smsblossom-worker-${name}` });
    connection.on('error', (err) => logger.warn({ queue: name, err: err.message }, 'Worker Redis connection error'));
    const retryDelay = this.options.deadLetterRetryDelayMs ?? 30_000;

    const run = async (job: Job, token?: string): Promise<unknown> => {
      const jobLogger = logger.child({ queue: name, jobId: job.id, requestId: job.data?.requestId, shopId: job.data?.shopId });
      try {
        const data = parseJobData(name, job.name, job.data);
        return await processor(job, data, { ...ctx, logger: jobLogger, token });
      } catch (err) {
        if (CONTROL_FLOW_ERRORS.has((err as Error)?.name)) throw err;
        if (isFinalFailure(job, err)) {
          try {
            await deadLetters.record(name, job, err);
          } catch (dlqErr) {
            // The failure could not be recorded: keep the job alive rather than let it fail unrecorded.
            jobLogger.error({ err: (dlqErr as Error).message }, 'Dead-letter write failed; job put off to try again');
            await job.moveToDelayed(Date.now() + retryDelay, token);
            throw new DelayedError();
          }
        }
        if (isAppError(err) && err.permanent) throw new UnrecoverableError(`${err.code}: ${err.message}`);
        throw err;
      }
    };

    const worker = new Worker(name, run, {
      connection,
      prefix: config.redis.prefix,
      concurrency: config.workers.concurrency[name],
      lockDuration: config.workers.lockDurationMs,
      stalledInterval: config.workers.stalledIntervalMs,
      // BullMQ's default of 1 fails a job whose worker died twice: with several crashes in a row (the fault suite kills
      // workers five times) a message would end in the dead letters instead of being sent. Every processor here is
      // idempotent, so running a job again is safe.
      maxStalledCount: config.workers.maxStalledCount,
      autorun: true,
      metrics: { maxDataPoints: MetricsTime.ONE_WEEK },
      // Delivery always has a limiter: the configured messages per second, and the one a provider's 429 imposes.
      ...(name === 'delivery' ? { limiter: { max: config.sms.ratePerSecond || 1_000_000, duration: 1000 } } : {}),
    });
    worker.on('error', (err) => logger.error({ queue: name, err: err.message }, 'Worker error'));
    const observe = (job: Job, outcome: 'completed' | 'failed') => {
      if (this.options.metrics && job.processedOn && job.finishedOn) {
        this.options.metrics.jobDuration.observe({ queue: name, outcome }, (job.finishedOn - job.processedOn) / 1000);
      }
    };
    worker.on('completed', (job) => {
      observe(job, 'completed');
      logger.info(
        {
          jobId: job.id,
          queue: name,
          jobName: job.name,
          duration: Date.now() - job.timestamp,
          processingMs: job.finishedOn && job.processedOn ? job.finishedOn - job.processedOn : undefined,
          requestId: job.data?.requestId,
          shopId: job.data?.shopId,
        },
        'Job completed',
      );
    });
    worker.on('failed', (job, error) => {
      if (job) observe(job, 'failed');
      if (!job) {
        logger.error({ queue: name, error: error.message }, 'Job failed');
        return;
      }
      const final = isFinalFailure(job, error, true);
      logger.error(
        {
          jobId: job.id,
          queue: name,
          jobName: job.name,
          error: error.message,
          attemptsMade: job.attemptsMade,
          final,
          requestId: job.data?.requestId,
          shopId: job.data?.shopId,
        },
        'Job failed',
      );
      // Failures decided by BullMQ without our processor (too many stalls) reach only this listener.
      if (final) {
        deadLetters.record(name, job, error, job.attemptsMade).catch((err: Error) => {
          logger.error({ queue: name, jobId: job.id, err: err.message }, 'Dead-letter write failed; the start-up sweep will retry');
        });
      }
    });
    worker.on('stalled', (jobId) => logger.warn({ queue: name, jobId }, 'Job stalled; it will run again'));
    this.workers.set(name, { worker, connection });
  }

  status(): { workerCount: number; workers: WorkerStatus[] } {
    const workers = [...this.workers.entries()].map(([name, { worker }]) => ({
      name,
      isRunning: worker.isRunning() && !worker.closing,
      concurrency: worker.concurrency,
    }));
    return { workerCount: workers.length, workers };
  }

  has(name: QueueName): boolean {
    return this.workers.has(name);
  }

  /**
   * Stops taking jobs and waits for active ones to finish, up to `timeoutMs`; then stops waiting and cuts the workers'
   * connections. A job cut off that way is not lost: its lock is no longer renewed, expires, and another worker runs it
   * again. Idempotent.
   */
  close(timeoutMs = this.options.config.workers.shutdownTimeoutMs): Promise<void> {
    this.closing ??= (async () => {
      const entries = [...this.workers.values()];
      let timer: NodeJS.Timeout | undefined;
      const graceful = Promise.allSettled(entries.map(({ worker }) => worker.close())).then(() => 'done' as const);
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      });
      const result = await Promise.race([graceful, timeout]);
      clearTimeout(timer);
      if (result === 'timeout') {
        // Not `worker.close(true)`: once close() is under way BullMQ returns that same promise, which waits for the
        // active jobs, so a forced close would wait as long as the graceful one.
        this.options.logger.warn({ timeoutMs }, 'Active jobs did not finish in time; cutting the workers off');
        for (const { connection } of entries) connection.disconnect();
        return;
      }
      await Promise.allSettled(entries.map(({ connection }) => connection.quit().catch(() => connection.disconnect())));
    })();
    return this.closing;
  }
}

/**
 * Parses `--queues a,b` (or `--queues=a,b`) from argv into distinct queue names, in the order given; undefined when
 * the flag is absent. A flag with no names (`--queues`, `--queues=`, `--queues ,`, `--queues --other`) is an error
 * rather than an empty list: a worker process serving no queue would look healthy and do nothing.
 */
export function queuesFromArgv(argv: readonly string[]): QueueName[] | undefined {
  const i = argv.findIndex((a) => a === '--queues' || a.startsWith('--queues='));
  if (i < 0) return undefined;
  const arg = argv[i]!;
  const value = arg === '--queues' ? argv[i + 1] : arg.slice('--queues='.length);
  const names = value === undefined || value.startsWith('-') ? [] : value.split(',').map((s) => s.trim()).filter(Boolean);
  if (!names.length) throw new AppError('VALIDATION_FAILED', `--queues needs a comma-separated list of queue names (${QUEUE_NAMES.join(', ')})`);
  for (const n of names) {
    if (!(QUEUE_NAMES as readonly string[]).includes(n)) {
      throw new AppError('UNKNOWN_QUEUE', `unknown queue "${n}" (known: ${QUEUE_NAMES.join(', ')})`);
    }
  }
  return [...new Set(names)] as QueueName[];
}

// Run as a process of its own: `tsx src/queue/worker.ts [--queues a,b]`. Not awaited at top level: cli.ts imports
// this module, and a top-level await here would leave that import cycle waiting on itself.
// Compared as URLs, so a path with spaces or non-ASCII characters (percent-encoded in import.meta.url) still matches.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void import('../cli.js').then(({ runFromCli }) => runFromCli(['worker', ...process.argv.slice(2)]));
}
