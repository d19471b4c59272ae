/**
 * The shutdown order of `System.stop()` (src/system.ts): HTTP intake stops first, the workers then let their active
 * job finish while the queues and the database are still open for it, and the database pool closes last.
 */
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { QueueRegistry } from '../../src/queue/queues.js';
import { waitForJobState } from '../helpers/jobs.js';
import { slowJobKeys, slowProcessor } from '../helpers/slowJob.js';
import { startTestSystem, testConfig, TEST_REDIS_URL, type TestSystem } from '../helpers/system.js';

/** True once nothing answers HTTP at `url` any more (refused, or 503 while Fastify closes). */
async function intakeStopped(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health/live`);
    await res.arrayBuffer();
    return res.status === 503;
  } catch {
    return true;
  }
}

describe('System.stop(): HTTP, then workers, then queues, then the database', () => {
  let sys: TestSystem | undefined;
  let redis: Redis | undefined;
  afterEach(async () => {
    await sys?.teardown();
    redis?.disconnect();
  });

  it('stops taking HTTP requests while an active job still finishes with its queue and database, then closes them', async () => {
    const config = testConfig('pglite', { PORT: '0', HOST: '127.0.0.1' });
    const prefix = config.redis.prefix;
    sys = await startTestSystem('pglite', { config, listen: true, workers: ['events'], processors: { events: slowProcessor(prefix) } });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    const keys = slowJobKeys(prefix);
    const observer = new QueueRegistry({ connection: redis, prefix, logger: createLogger({ level: 'silent' }) });
    const events = observer.get('events');

    expect((await fetch(`${sys.url}/health/live`)).status).toBe(200);
    const jobId = await sys.queues.enqueueJob('events', 'orders/paid', {
      topic: 'orders/paid',
      shopId: 'shutdown-order.myshopify.com',
      objectId: '1',
      raw: { id: 1 },
      requestId: `req_${Date.now()}_order`,
    });
    await vi.waitFor(async () => expect(await redis!.get(keys.started)).toBe('1'), { timeout: 20_000, interval: 20 });

    const stopping = sys.stop();
    // 1. HTTP intake is stopped while the job is still running.
    await vi.waitFor(async () => expect(await intakeStopped(sys!.url!)).toBe(true), { timeout: 10_000, interval: 20 });
    expect(await events.getJobState(jobId)).toBe('active');
    // 2. What the running job needs is still open: its queue and the database.
    expect(await sys.queues.get('events').getJobState(jobId)).toBe('active');
    expect(await sys.deadLetters.count()).toBe(0);

    // 3. The job finishes; only then do the queues and the database close.
    await redis.set(keys.release, '1');
    await stopping;
    await waitForJobState(events, jobId, 'completed');
    await expect(sys.deadLetters.count()).rejects.toThrow();
    await observer.close();
  });
});
