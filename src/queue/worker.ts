/**
 * Starts one BullMQ Worker per served queue, logs each job's life, dead-letters final failures and shuts down
 * gracefully. A process serving only workers is `smsblossom worker --queues delivery` (src/cli.ts).
 *
 * Processors are thin: they unpack the job and call a domain function with explicit dependencies. The wrapper here
 * validates job data against the catalog, maps permanent errors to `UnrecoverableError`, and writes the dead letter
 * *before* BullMQ is told a job failed for good (see `deadLetters.ts` for why that order matters).
 */
import type { ShopDirectory } from '../automations/shopDirectory.js';
import type { SemaphoreInterface } from 'async-mutex';
import { DelayedError, MetricsTime, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Config } from '../config.js';
import type { Database } from '../db/client.js';
import { AppError, databaseErrorCode, isPermanentFailure, safeErrorMessage, safeErrorStack } from '../errors.js';
import type { Logger } from '../logger.js';
import { DeadLetterQueue, isFinalFailure } from './deadLetters.js';
import type { Renderer } from '../messages/render.js';
import type { SmsProvider } from '../messages/providers/types.js';
import { processAutomation } from './processors/automations.js';
import { processDelivery } from './processors/delivery.js';
import { campaignGate, processCampaignBatch } from './processors/campaigns.js';
import { processEventJob } from './processors/events.js';
import { processHousekeeping } from './processors/housekeeping.js';
import { processSync } from './processors/sync.js';
import { jobIdFrom, parseJobData, type JobData, type QueueName, type QueueRegistry } from './queues.js';
import { getRedisConnection, type RedisClient } from './redis.js';
import type { ServiceMetrics } from './metrics.js';
import { announceBulkFinish, bulkFinishWaiter } from '../sync/bulkFinish.js';

/** Long-lived collaborators built once per process and handed to processors. */
export interface Services {
  renderer: Renderer;
  /** Shops and automations held in memory for the pipeline's processors. */
  shops?: ShopDirectory;
  /** Present in processes that serve `delivery`. */
  provider?: SmsProvider;
  /** Base URL the provider calls back (PUBLIC_URL, else the address the API listens on). */
  publicUrl: string;
  /** Slots for the sends of campaign batches in this process (DELIVERY_CONCURRENCY; see `DeliveryDeps.sendSlots`). */
  sendSlots?: { semaphore: SemaphoreInterface; size: number };
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
/** Processors that stand in for some of {@link PROCESSORS} (tests hand in slow or failing ones). */
export type ProcessorMap = { [Q in QueueName]?: Processor<Q> };

/** The processor of each queue: every queue in the catalog has one. */
export const PROCESSORS: { readonly [Q in QueueName]: Processor<Q> } = {
  events: (job, data, ctx) =>
    processEventJob(job, data, {
      db: ctx.db.db,
      queues: ctx.queues,
      logger: ctx.logger,
      shops: ctx.services.shops,
      announceBulkFinish: (shopDomain, operationId) => announceBulkFinish(ctx.queues.connection, ctx.queues.prefix, shopDomain, operationId),
    }),
  automations: (_job, data, ctx) =>
    processAutomation(data, {
      db: ctx.db.db,
      queues: ctx.queues,
      logger: ctx.logger,
      renderer: ctx.services.renderer,
      sms: ctx.config.sms,
      shops: ctx.services.shops,
    }),
  delivery: (job, data, ctx) => {
    const { provider } = ctx.services;
    if (!provider) throw new AppError('INTERNAL', 'this process serves delivery without an SMS provider');
    const sms = ctx.config.sms;
    return processDelivery(
      job,
      data,
      {
        db: ctx.db.db,
        provider,
        logger: ctx.logger,
        callbackUrl: (id) => `${ctx.services.publicUrl}/webhooks/mitto/dlr?token=${encodeURIComponent(sms.dlrToken)}&ref=${id}`,
        reconcileDelayMs: sms.reconcileDelayMs,
        reconcileAttempts: sms.reconcileAttempts,
        campaignGate: campaignGate(ctx.db.db, ctx.config.campaigns.pausedRecheckMs),
        renderer: ctx.services.renderer,
        sms,
        sendSlots: ctx.services.sendSlots,
      },
      { queues: ctx.queues, token: ctx.token },
    );
  },
  // `campaigns:batch`: pages of the audience while the campaign's delivery backlog has room; otherwise it runs again later.
  campaigns: (job, data, ctx) =>
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
    ),
  housekeeping: (_job, data, ctx) =>
    processHousekeeping(data, { db: ctx.db.db, queues: ctx.queues, logger: ctx.logger, settings: ctx.config.housekeeping }),
  sync: (job, data, ctx) =>
    processSync(job, data, {
      db: ctx.db.db,
      queues: ctx.queues,
      logger: ctx.logger,
      config: ctx.config,
      bulkFinishWaiter: () =>
        bulkFinishWaiter(
          () => getRedisConnection(ctx.config.redis, 'worker', { connectionName: 'smsblossom-sync-bulk-finish' }),
          ctx.queues.prefix,
          (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
        ),
    }),
};

/**
 * BullMQ keeps a failed job's message and stack in Redis (`failedReason`, `stacktrace`) and hands them to every
 * `failed` listener. A failed query's message holds its parameters: what BullMQ gets is the same error without them.
 */
function withoutQueryText(err: unknown): unknown {
  const sqlState = databaseErrorCode(err);
  if (sqlState === undefined && !(err instanceof Error && err.message.includes('Failed query:'))) return err;
  const safe = new Error(safeErrorMessage(err));
  safe.name = (err as Error).name ?? 'Error';
  safe.stack = safeErrorStack(err) ?? safe.stack;
  Object.assign(safe, { code: sqlState });
  return safe;
}

/** A permanent failure's reason as BullMQ keeps it: `CODE: message`, or a refused query's message without its values. */
function permanentReason(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && databaseErrorCode(err) === undefined ? `${code}: ${safeErrorMessage(err)}` : safeErrorMessage(err);
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
  /** Processors used instead of {@link PROCESSORS} for the queues they name. */
  processors?: ProcessorMap;
  services: Services;
  /** How long a dead-letter write that failed is put off before the job runs again (ms). */
  deadLetterRetryDelayMs?: number;
  /** Prometheus metrics: job durations are observed here. */
  metrics?: ServiceMetrics;
}

export class WorkerPool {
  private readonly workers = new Map<QueueName, { worker: Worker; connection: RedisClient }>();
  private closing: Promise<void> | undefined;
  private readonly processors: { readonly [Q in QueueName]: Processor<Q> };

  constructor(private readonly options: WorkerPoolOptions) {
    this.processors = { ...PROCESSORS, ...options.processors };
  }

  /** Starts a worker for each queue asked for that is not served yet; returns the names started. */
  async start(queueNames: readonly QueueName[] = this.options.config.workers.queues): Promise<QueueName[]> {
    const started: QueueName[] = [];
    for (const name of queueNames) {
      if (this.workers.has(name)) continue;
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
    const connection = getRedisConnection(config.redis, 'worker', { connectionName: `smsblossom-worker-${name}` });
    connection.on('error', (err) => logger.warn({ queue: name, err: err.message }, 'Worker Redis connection error'));
    const retryDelay = this.options.deadLetterRetryDelayMs ?? 30_000;

    const run = async (job: Job, token?: string): Promise<unknown> => {
      const jobLogger = logger.child({ queue: name, jobId: job.id, requestId: job.data?.requestId, shopId: job.data?.shopId });
      try {
        const data = parseJobData(name, job.name, job.data, job.timestamp);
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
        // The one place a permanent failure becomes BullMQ's: the processors and the domain only throw it.
        if (isPermanentFailure(err)) throw new UnrecoverableError(permanentReason(err));
        throw withoutQueryText(err);
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
        logger.error({ queue: name, error: safeErrorMessage(error) }, 'Job failed');
        return;
      }
      const final = isFinalFailure(job, error, true);
      logger.error(
        {
          jobId: job.id,
          queue: name,
          jobName: job.name,
          error: safeErrorMessage(error),
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
