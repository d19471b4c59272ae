/**
 * A `delivery` worker with short lock and stall timings, for tests that kill a worker mid-send.
 *
 * `WorkerPool` takes BullMQ's defaults (30 s lock, 30 s stall check), so BullMQ would notice a killed worker's job
 * only after half a minute. This builds the BullMQ Worker itself, around the same pieces the pool uses — catalog
 * validation and the production `PROCESSORS.delivery` with its `deliveryControl` — with a 1 s lock and a 250 ms stall
 * check. The job's life after a kill is then BullMQ's own: the lock expires, the stall check moves the job back to
 * wait, and another worker runs it.
 */
import { Worker } from 'bullmq';
import type { Config } from '../../src/config.js';
import type { Database } from '../../src/db/client.js';
import type { Logger } from '../../src/logger.js';
import type { SmsProvider } from '../../src/messages/providers/types.js';
import { createRenderer } from '../../src/messages/render.js';
import { parseJobData, type QueueRegistry } from '../../src/queue/queues.js';
import { getRedisConnection } from '../../src/queue/redis.js';
import { PROCESSORS } from '../../src/queue/worker.js';

export const FAST_LOCK_MS = 1000;
export const FAST_STALLED_INTERVAL_MS = 250;

export interface DeliveryWorkerDeps {
  config: Config;
  db: Database;
  queues: QueueRegistry;
  logger: Logger;
  provider: SmsProvider;
  /** Base URL of the API that receives delivery reports. */
  publicUrl: string;
}

export interface FastDeliveryWorker {
  worker: Worker;
  close(): Promise<void>;
}

export function startFastDeliveryWorker(deps: DeliveryWorkerDeps): FastDeliveryWorker {
  const processor = PROCESSORS.delivery!;
  const services = { renderer: createRenderer(), provider: deps.provider, publicUrl: deps.publicUrl };
  const connection = getRedisConnection({ url: deps.config.redis.url }, 'worker', { connectionName: 'smsblossom-test-fast-delivery' });
  connection.on('error', () => undefined);
  const worker = new Worker(
    'delivery',
    async (job, token) =>
      processor(job, parseJobData('delivery', job.name, job.data), {
        db: deps.db,
        queues: deps.queues,
        logger: deps.logger,
        config: deps.config,
        services,
        token,
      }),
    {
      connection,
      prefix: deps.config.redis.prefix,
      concurrency: 1,
      lockDuration: FAST_LOCK_MS,
      stalledInterval: FAST_STALLED_INTERVAL_MS,
      // Same as the pool's delivery worker: the processor's rate-limit path needs a limiter to exist.
      limiter: { max: 1_000_000, duration: 1000 },
    },
  );
  worker.on('error', () => undefined);
  let closing: Promise<void> | undefined;
  return {
    worker,
    close() {
      closing ??= (async () => {
        await worker.close();
        await connection.quit().catch(() => connection.disconnect());
      })();
      return closing;
    },
  };
}
