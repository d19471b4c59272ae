/** Health and queue observability: `/health`, `/health/live`, `/health/ready`, `/queue/health`, `/queue/metrics`. */
import type { FastifyInstance } from 'fastify';
import { QUEUE_NAMES } from '../../queue/queues.js';
import { pingRedis } from '../../queue/redis.js';
import type { AppDeps } from '../app.js';
import { collectQueueMetrics } from '../../queue/metrics.js';
import { routeSchema, type RouteDoc } from './docs.js';

/** A probe's route options: anyone may call it; 503 when what it checks does not answer. */
const probe = (d: Omit<RouteDoc, 'tags' | 'auth'>) => routeSchema({ ...d, tags: ['health'], auth: 'public' });
const live = probe({ operationId: 'live', summary: 'Liveness: the process answers', answers: { 200: 'Alive' } });
const health = probe({ operationId: 'health', summary: 'Database and Redis, with their latency', answers: { 200: 'Both answer', 503: 'Degraded' } });
const ready = probe({ operationId: 'ready', summary: 'Readiness: database and Redis answer', answers: { 200: 'Ready', 503: 'Not ready' } });
const queueHealth = probe({ operationId: 'queueHealth', summary: "Redis and this process's workers", answers: { 200: 'Redis answers', 503: 'Redis does not' } });
const queueMetrics = probe({
  operationId: 'queueMetrics',
  summary: 'Job counts per queue and state, processing rates, dead-letter count',
  answers: { 200: 'The counts', 503: 'Redis does not answer' },
});

export async function registerHealthRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const timeout = deps.config.redis.healthTimeoutMs;

  const checkDatabase = async () => {
    try {
      const latencyMs = await Promise.race([
        deps.db.ping(),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), timeout).unref()),
      ]);
      return { ok: true, kind: deps.db.kind, latencyMs: round(latencyMs) };
    } catch (err) {
      return { ok: false, kind: deps.db.kind, error: (err as Error).message };
    }
  };
  const checkRedis = async () => {
    const r = await pingRedis(deps.queues.connection, timeout);
    return { ok: r.ok, latencyMs: round(r.latencyMs), ...(r.error ? { error: r.error } : {}) };
  };
  const workerStatus = () => deps.workers?.status() ?? { workerCount: 0, workers: [] };

  app.get('/health/live', live, async () => ({ status: 'ok' }));

  app.get('/health', health, async (_req, reply) => {
    const [database, redis] = await Promise.all([checkDatabase(), checkRedis()]);
    const ok = database.ok && redis.ok;
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ok' : 'degraded', database, redis });
  });

  app.get('/health/ready', ready, async (_req, reply) => {
    const [database, redis] = await Promise.all([checkDatabase(), checkRedis()]);
    const ready = database.ok && redis.ok;
    return reply.status(ready ? 200 : 503).send({ ready, database: database.ok, redis: redis.ok });
  });

  app.get('/queue/health', queueHealth, async (_req, reply) => {
    const redis = await checkRedis();
    const body = { redis: redis.ok, redisLatencyMs: redis.latencyMs, workers: workerStatus() };
    return reply.status(redis.ok ? 200 : 503).send(body);
  });

  app.get('/queue/metrics', queueMetrics, async (_req, reply) => {
    const redis = await checkRedis();
    const dlqSize = await deps.deadLetters.count().catch(() => null);
    if (!redis.ok) {
      return reply.status(503).send({ redis: false, workers: workerStatus(), queues: null, dlq: { size: dlqSize } });
    }
    try {
      const metrics = await collectQueueMetrics(QUEUE_NAMES.map((n) => deps.queues.get(n)), timeout * 5);
      return { redis: true, workers: workerStatus(), queues: metrics.queues, processing: metrics.processing, dlq: { size: dlqSize } };
    } catch (err) {
      // Redis answered the ping but not the counts (overloaded, or gone in between): unavailable, not a server bug.
      return reply
        .status(503)
        .send({ redis: true, workers: workerStatus(), queues: null, dlq: { size: dlqSize }, error: (err as Error).message });
    }
  });
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
