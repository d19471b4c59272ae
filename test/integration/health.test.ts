/**
 * Health and queue observability endpoints through `app.inject()`, on real Redis and a real database (PostgreSQL and
 * PGlite), including what they answer when Redis or the database is gone.
 */
import { once } from 'node:events';
import { UnrecoverableError } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { PROCESSORS, type ProcessorMap } from '../../src/queue/worker.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';

const SHOP = 'health-demo.myshopify.com';

interface QueueDepth {
  waiting: number;
  active: number;
  completed: number;
  failed: number;
  delayed: number;
}
interface MetricsBody {
  redis: boolean;
  workers: { workerCount: number; workers: Array<{ name: string; isRunning: boolean }> };
  queues: Record<string, QueueDepth> | null;
  processing?: Record<string, { completedTotal: number; failedTotal: number }>;
  dlq: { size: number | null };
}

/** A promise the test resolves by hand: holds a job in `active` without sleeping. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

async function disconnectRedis(sys: TestSystem): Promise<void> {
  const ended = once(sys.redis, 'end');
  sys.redis.disconnect();
  await ended;
}

describe.each(DB_KINDS)('health endpoints on %s', (kind) => {
  let sys: TestSystem;
  const campaignGate = gate();
  const processors: ProcessorMap = {
    ...PROCESSORS,
    housekeeping: async (_job, data) => {
      // Stand-ins for the real tasks: one completes, one fails for good.
      if (data.task === 'reconcile') throw new UnrecoverableError('told to explode');
      return { done: data.task };
    },
    campaigns: async () => {
      await campaignGate.opened;
      return { sent: 0 };
    },
  };

  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: ['events', 'housekeeping', 'campaigns'], processors });
  });
  afterAll(async () => {
    campaignGate.open();
    await sys?.teardown();
  });

  it('GET /health/live answers 200 without touching Redis or the database', async () => {
    const res = await sys.app!.inject({ method: 'GET', url: '/health/live' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });

  it('GET /health reports the database and Redis with their latency', async () => {
    const res = await sys.app!.inject({ method: 'GET', url: '/health' });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toEqual({
      status: 'ok',
      database: { ok: true, kind, latencyMs: expect.any(Number) },
      redis: { ok: true, latencyMs: expect.any(Number) },
    });
    expect(body.database.latencyMs).toBeGreaterThanOrEqual(0);
    expect(body.redis.latencyMs).toBeGreaterThanOrEqual(0);
    expect(res.headers['x-request-id']).toMatch(/^req_\d+_[0-9a-f]+$/);
  });

  it('GET /health/ready answers 200 when both are up', async () => {
    const res = await sys.app!.inject({ method: 'GET', url: '/health/ready' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ ready: true, database: true, redis: true });
  });

  it('GET /queue/health lists the running workers of this process', async () => {
    const res = await sys.app!.inject({ method: 'GET', url: '/queue/health' });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.redis).toBe(true);
    expect(body.redisLatencyMs).toEqual(expect.any(Number));
    expect(body.workers.workerCount).toBe(3);
    expect(body.workers.workers).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'events', isRunning: true, concurrency: sys.config.workers.concurrency.events }),
        expect.objectContaining({ name: 'housekeeping', isRunning: true }),
        expect.objectContaining({ name: 'campaigns', isRunning: true }),
      ]),
    );
    // A queue with no processor is not served, never faked.
    expect(body.workers.workers.map((w: { name: string }) => w.name)).not.toContain('delivery');
  });

  it('GET /queue/metrics reports every queue and counts that follow the jobs', async () => {
    const metrics = async () => {
      const res = await sys.app!.inject({ method: 'GET', url: '/queue/metrics' });
      expect(res.statusCode).toBe(200);
      return res.json() as MetricsBody;
    };

    const before = await metrics();
    expect(before.redis).toBe(true);
    expect(Object.keys(before.queues!).sort()).toEqual(['automations', 'campaigns', 'delivery', 'events', 'housekeeping', 'sync']);
    for (const depth of Object.values(before.queues!)) {
      expect(depth).toMatchObject({ waiting: 0, active: 0, completed: 0, failed: 0, delayed: 0 });
    }
    expect(before.dlq).toEqual({ size: 0 });
    expect(before.workers.workerCount).toBe(3);

    // No automations worker here, so these stay where they are put.
    const evaluate = { trigger: 'orders/paid', shopId: SHOP, context: {} };
    await sys.queues.enqueueJob('automations', 'evaluate', evaluate);
    await sys.queues.enqueueJob('automations', 'evaluate', evaluate);
    await sys.queues.enqueueJob('automations', 'evaluate', evaluate, { delay: 60_000 });
    await sys.queues.enqueueJob('housekeeping', 'run', { task: 'rollup_reports' });
    await sys.queues.enqueueJob('housekeeping', 'run', { task: 'reconcile' });
    await sys.queues.enqueueJob('campaigns', 'batch', { campaignId: 1, shopId: SHOP });

    const during = await vi.waitFor(
      async () => {
        const m = await metrics();
        expect(m.queues!.automations).toMatchObject({ waiting: 2, delayed: 1, active: 0 });
        expect(m.queues!.housekeeping).toMatchObject({ completed: 1, failed: 1, waiting: 0, active: 0 });
        expect(m.queues!.campaigns).toMatchObject({ active: 1, waiting: 0, completed: 0 });
        expect(m.dlq.size).toBe(1);
        return m;
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(during.queues!.events).toMatchObject({ waiting: 0, failed: 0 });
    expect(during.queues!.delivery).toMatchObject({ waiting: 0, active: 0 });
    expect(during.processing!.housekeeping).toMatchObject({ completedTotal: 1, failedTotal: 1 });

    campaignGate.open();
    await vi.waitFor(
      async () => {
        const m = await metrics();
        expect(m.queues!.campaigns).toMatchObject({ active: 0, completed: 1 });
      },
      { timeout: 10_000, interval: 50 },
    );
  });

  it('answers an unknown route with 404 JSON NOT_FOUND', async () => {
    const res = await sys.app!.inject({ method: 'GET', url: '/no/such/thing?x=1' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/application\/json/);
    const body = res.json();
    expect(body).toEqual({ error: { code: 'NOT_FOUND', message: expect.stringContaining('/no/such/thing') }, requestId: expect.any(String) });
    expect(body.error.message).not.toContain('x=1');
    expect(res.headers['x-request-id']).toBe(body.requestId);

    const wrongMethod = await sys.app!.inject({ method: 'GET', url: '/webhooks/shopify' });
    expect(wrongMethod.statusCode).toBe(404);
    expect(wrongMethod.json().error.code).toBe('NOT_FOUND');
  });
});

describe.each(DB_KINDS)('health endpoints on %s at start and with a backing store down', (kind) => {
  let sys: TestSystem | undefined;
  afterEach(async () => {
    await sys?.teardown();
    sys = undefined;
  });

  it('reports Redis healthy as soon as the system has started', async () => {
    // No worker and no queue touched: nothing but the app itself has waited for the producer connection.
    sys = await startTestSystem(kind);
    const res = await sys.app!.inject({ method: 'GET', url: '/queue/health' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ redis: true, workers: { workerCount: 0, workers: [] } });
  });

  it('answers 503 with redis:false when Redis is gone', async () => {
    sys = await startTestSystem(kind, { workers: ['events'] });
    await disconnectRedis(sys);

    const queueHealth = await sys.app!.inject({ method: 'GET', url: '/queue/health' });
    expect(queueHealth.statusCode).toBe(503);
    expect(queueHealth.json()).toMatchObject({ redis: false, workers: { workerCount: 1 } });

    const health = await sys.app!.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(503);
    expect(health.json()).toMatchObject({ status: 'degraded', database: { ok: true }, redis: { ok: false, error: expect.any(String) } });

    const ready = await sys.app!.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toEqual({ ready: false, database: true, redis: false });

    const metrics = await sys.app!.inject({ method: 'GET', url: '/queue/metrics' });
    expect(metrics.statusCode).toBe(503);
    expect(metrics.json()).toMatchObject({ redis: false, queues: null, dlq: { size: 0 } });

    const live = await sys.app!.inject({ method: 'GET', url: '/health/live' });
    expect(live.statusCode).toBe(200);
  });

  it('answers 503 with database:false when the database is closed', async () => {
    sys = await startTestSystem(kind);
    await sys.db.close();

    const health = await sys.app!.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(503);
    expect(health.json()).toMatchObject({ status: 'degraded', database: { ok: false, kind, error: expect.any(String) }, redis: { ok: true } });

    const ready = await sys.app!.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toEqual({ ready: false, database: false, redis: true });

    // Queue health is about Redis and the workers; the DLQ size is unknown without the database.
    const queueHealth = await sys.app!.inject({ method: 'GET', url: '/queue/health' });
    expect(queueHealth.statusCode).toBe(200);
    const metrics = await sys.app!.inject({ method: 'GET', url: '/queue/metrics' });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.json().dlq).toEqual({ size: null });
  });
});
