/**
 * The Fastify application: webhook intake, health and queue endpoints, and the operator API. Built from explicit
 * dependencies so tests can run it through `app.inject()` against real Redis and a real database.
 */
import http from 'node:http';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerFactory,
} from 'fastify';
import type { RedisClient } from '../queue/redis.js';
import type { Config } from '../config.js';
import { AppError, databaseErrorCode } from '../errors.js';
import { findNulCharacter, jsonDepthExceeds, MAX_JSON_DEPTH } from '../json.js';
import { createRenderPool } from '../messages/renderPool.js';
import { newRequestId } from '../queue/queues.js';
import { registerAdminFoundation, registerAdminRoutes } from './admin.js';
import { registerDeadLetterRoutes } from './routes/deadLetters.js';
import { registerCampaignRoutes } from './routes/campaigns.js';
import { registerSegmentRoutes } from './routes/segments.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerMittoRoutes } from './routes/mitto.js';
import { registerWebhookRoutes } from './routes/webhooks.js';
import { registerReportRoutes } from './routes/reports.js';
import { registerPrivacyRoutes } from './routes/privacy.js';
import { registerShopSyncRoutes } from './routes/shopSync.js';
import { API_RENDER_NICE, renderPoolOptions, type AppDeps } from './deps.js';

export type { AppDeps } from './deps.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export async function buildApp(given: AppDeps): Promise<FastifyInstance> {
  const ownRenderer = given.renderer ? undefined : createRenderPool({ ...renderPoolOptions(given.config), nice: API_RENDER_NICE });
  const deps: AppDeps = ownRenderer ? { ...given, renderer: ownRenderer } : given;
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
    trustProxy: trustProxyOption(deps.config.http.trustProxy),
    requestTimeout: deps.config.http.requestTimeoutMs,
    keepAliveTimeout: deps.config.http.keepAliveTimeoutMs,
    serverFactory: boundedServer(deps.config.http),
  });

  // The default JSON parser, behind a depth check on the text: what follows parsing (zod, drizzle, JSON.stringify)
  // recurses, and a body nested thousands deep would overflow its stack as a 500.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (jsonDepthExceeds(String(body))) {
      done(new AppError('VALIDATION_FAILED', `body: JSON nested deeper than ${MAX_JSON_DEPTH} levels`), undefined);
      return;
    }
    parseJson(req, String(body), done);
  });

  // PostgreSQL cannot store or compare U+0000 in text: input carrying it is refused naming the field, before any query
  // fails on it (webhooks take raw bytes and clean their payload themselves).
  app.addHook('preValidation', async (req) => {
    const where =
      findNulCharacter(req.query, 'query') ??
      findNulCharacter(req.params, 'params') ??
      (req.body !== null && typeof req.body === 'object' && !Buffer.isBuffer(req.body) ? findNulCharacter(req.body, 'body') : undefined);
    if (where) throw new AppError('VALIDATION_FAILED', `${where}: must not contain a NUL character (U+0000)`);
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
  if (ownRenderer) app.addHook('onClose', () => ownRenderer.close());

  // Every error body comes from an AppError of the catalog (src/errors.ts): `{ error: { code, message }, requestId }`.
  const send = (reply: FastifyReply, req: FastifyRequest, err: AppError) => reply.status(err.statusCode).send({ ...err.toJSON(), requestId: req.id });

  app.setErrorHandler((err: FastifyError | AppError, req, reply) => {
    if (err instanceof AppError) {
      if (err.statusCode >= 500) req.log.error({ code: err.code, err: err.message }, 'Request failed');
      else req.log.info({ code: err.code, msg: err.message }, 'Request rejected');
      return send(reply, req, err);
    }
    const status = err.statusCode ?? 500;
    if (status < 500) return send(reply, req, clientError(err, status, req, deps.config.http.webhookBodyLimit));
    // A value PostgreSQL refused (SQLSTATE class 22: out of range, malformed, untranslatable) is bad input, not a fault.
    const sqlState = databaseErrorCode(err);
    if (sqlState?.startsWith('22')) {
      req.log.info({ err }, 'Request rejected: a value the database cannot take');
      return send(reply, req, new AppError('VALIDATION_FAILED', `a value in the request is out of range or malformed (SQLSTATE ${sqlState})`));
    }
    // The err serializer (logger.ts) keeps a failed query's SQLSTATE and drops its SQL text and parameters.
    req.log.error({ err }, 'Unhandled error');
    return send(reply, req, new AppError('INTERNAL', 'internal error'));
  });

  app.setNotFoundHandler((req, reply) => send(reply, req, new AppError('NOT_FOUND', `no route for ${req.method} ${req.url.split('?')[0]}`)));

  // Docs, rate limits and webhook counting hook into routes as they are added: before any route.
  await registerAdminFoundation(app, deps);
  await app.register(registerWebhookRoutes, { deps });
  await app.register(registerHealthRoutes, { deps });
  await app.register(registerMittoRoutes, { deps });
  await app.register(registerDeadLetterRoutes, { deps });
  await app.register(registerReportRoutes, { deps });
  await app.register(registerPrivacyRoutes, { deps });
  await app.register(registerShopSyncRoutes, { deps });
  await app.register(registerAdminRoutes, { deps });
  await app.register(registerSegmentRoutes, { deps });
  await app.register(registerCampaignRoutes, { deps });
  return app;
}

/** Fastify's own refusals (a body it cannot parse or take, a failed schema) as the catalog's errors. */
function clientError(err: FastifyError, status: number, req: FastifyRequest, defaultBodyLimit: number): AppError {
  if (status === 413) {
    // The limit of the route asked for (the CSV import takes more than a webhook), not the server-wide default.
    const limit = req.routeOptions.bodyLimit ?? defaultBodyLimit;
    const size = limit % 1_048_576 === 0 ? ` (${limit / 1_048_576} MiB)` : '';
    return new AppError('PAYLOAD_TOO_LARGE', `request body is larger than ${limit} bytes${size}, the limit of ${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`);
  }
  if (status === 415) return new AppError('UNSUPPORTED_MEDIA_TYPE', err.message);
  if (err.validation) return new AppError('VALIDATION_FAILED', err.message);
  if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return new AppError('INVALID_JSON', err.message);
  if (status === 401) return new AppError('UNAUTHORIZED', err.message);
  if (status === 404) return new AppError('NOT_FOUND', err.message);
  if (status === 429) return new AppError('RATE_LIMITED', err.message);
  return new AppError('BAD_REQUEST', err.message);
}

/** A hop count as the function Fastify's types ask for (trust the nearest `hops` proxies). */
function trustProxyOption(trust: AppDeps['config']['http']['trustProxy']): boolean | string[] | ((addr: string, hop: number) => boolean) {
  return typeof trust === 'number' ? (_addr, hop) => hop < trust : trust;
}

/**
 * The HTTP server behind Fastify, with the limits a slow client must not outlast: headers and the whole request on a
 * deadline (checked every quarter of it, not Node's default 30 s), a cap on connections in all and per peer address.
 * A connection over a cap is destroyed on arrival, before it can hold anything.
 */
function boundedServer(limits: AppDeps['config']['http']): FastifyServerFactory<http.Server> {
  return (handler) => {
    const server = http.createServer(
      {
        requestTimeout: limits.requestTimeoutMs,
        headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
        connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4))),
      },
      handler,
    );
    server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    server.maxConnections = limits.maxConnections;
    // Behind trusted proxies every peer is a proxy carrying many clients: the per-address cap is theirs to apply.
    if (limits.trustProxy !== false) return server;
    const perIp = new Map<string, number>();
    server.on('connection', (socket) => {
      const ip = socket.remoteAddress ?? 'unknown';
      const open = (perIp.get(ip) ?? 0) + 1;
      if (open > limits.maxConnectionsPerIp) {
        socket.destroy();
        return;
      }
      perIp.set(ip, open);
      socket.once('close', () => {
        const left = (perIp.get(ip) ?? 1) - 1;
        if (left <= 0) perIp.delete(ip);
        else perIp.set(ip, left);
      });
    });
    return server;
  };
}

/** Resolves once the connection is `ready`; rejects when it ends or `timeoutMs` passes first. */
function waitUntilRedisReady(redis: RedisClient, timeoutMs: number): Promise<void> {
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
