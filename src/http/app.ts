/**
 * The Fastify application: webhook intake, health and queue endpoints, and the operator API. Built from explicit
 * dependencies so tests can run it through `app.inject()` against real Redis and a real database.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Config } from '../config.js';
import type { Database } from '../db/client.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { DeadLetterQueue } from '../queue/deadLetters.js';
import { newRequestId, type QueueRegistry } from '../queue/queues.js';
import type { WorkerPool } from '../queue/worker.js';
import type { ServiceMetrics } from '../queue/metrics.js';
import { registerAdminFoundation, registerAdminRoutes } from './admin.js';
import { registerDeadLetterRoutes } from './routes/deadLetters.js';
import { registerCampaignRoutes } from './routes/campaigns.js';
import { registerSegmentRoutes } from './routes/segments.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerMittoRoutes } from './routes/mitto.js';
import { registerWebhookRoutes } from './routes/webhooks.js';
import { registerReportRoutes } from './routes/reports.js';
import { registerPrivacyRoutes } from './routes/privacy.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  db: Database;
  queues: QueueRegistry;
  deadLetters: DeadLetterQueue;
  /** The workers of this process, if it runs any (for `/queue/health`). */
  workers?: WorkerPool;
  /** Prometheus metrics shared with this process's workers; the app makes its own when absent. */
  metrics?: ServiceMetrics;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // Probes hit health endpoints every few seconds; their lines would drown the ones that matter.
    logController: new LogController({ requestIdLogLabel: 'requestId', disableRequestLogging: (req) => req.url.startsWith('/health') }),
    bodyLimit: deps.config.http.webhookBodyLimit,
    // Keep a caller's X-Request-Id when it is sane; otherwise mint one in the specification's format.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      const value = Array.isArray(given) ? given[0] : given;
      return value && REQUEST_ID.test(value) ? value : newRequestId();
    },
    return503OnClosing: true,
  });

  // The producer connection is still handshaking when the app is built, and it has no offline queue (so requests fail
  // fast when Redis is down). Without this wait the first webhooks after start are refused with 503.
  app.addHook('onReady', async () => {
    const timeoutMs = Math.max(deps.config.redis.healthTimeoutMs, 2000);
    await waitUntilRedisReady(deps.queues.connection, timeoutMs).catch((err: Error) =>
      deps.logger.warn({ err: err.message }, 'Redis is not ready yet; webhooks are answered 503 until it is'),
    );
  });

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  app.setErrorHandler((err: FastifyError | AppError, req, reply) => {
    if (err instanceof AppError) {
      if (err.statusCode >= 500) req.log.error({ code: err.code, err: err.message }, 'Request failed');
      else req.log.info({ code: err.code, msg: err.message }, 'Request rejected');
      return reply.status(err.statusCode).send({ ...err.toJSON(), requestId: req.id });
    }
    const status = err.statusCode ?? 500;
    if (status === 413) {
      return reply.status(413).send({ error: { code: 'PAYLOAD_TOO_LARGE', message: `request body is larger than ${deps.config.http.webhookBodyLimit} bytes` }, requestId: req.id });
    }
    if (status === 400 && err.validation) {
      return reply.status(400).send({ error: { code: 'VALIDATION_FAILED', message: err.message }, requestId: req.id });
    }
    if (status < 500) {
      return reply.status(status).send({ error: { code: err.code ?? 'BAD_REQUEST', message: err.message }, requestId: req.id });
    }
    req.log.error({ err }, 'Unhandled error');
    return reply.status(500).send({ error: { code: 'INTERNAL', message: 'internal error' }, requestId: req.id });
  });

  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({ error: { code: 'NOT_FOUND', message: `no route for ${req.method} ${req.url.split('?')[0]}` }, requestId: req.id }),
  );

  // Docs, rate limits and webhook counting hook into routes as they are added: before any route.
  await registerAdminFoundation(app, deps);
  await app.register(registerWebhookRoutes, { deps });
  await app.register(registerHealthRoutes, { deps });
  await app.register(registerMittoRoutes, { deps });
  await app.register(registerDeadLetterRoutes, { deps });
  await app.register(registerReportRoutes, { deps });
  await app.register(registerPrivacyRoutes, { deps });
  await app.register(registerAdminRoutes, { deps });
  await app.register(registerSegmentRoutes, { deps });
  await app.register(registerCampaignRoutes, { deps });
  return app;
}

/** Resolves once the connection is `ready`; rejects when it ends or `timeoutMs` passes first. */
function waitUntilRedisReady(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  if (redis.status === 'end') return Promise.reject(new Error('the Redis connection is closed'));
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('end', onEnd);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const onEnd = () => done(new Error('the Redis connection closed'));
    const timer = setTimeout(() => done(new Error(`Redis was not ready within ${timeoutMs} ms`)), timeoutMs);
    redis.once('ready', onReady);
    redis.once('end', onEnd);
  });
}
