/**
 * The merchant and operator surfaces of the app: OpenAPI docs, rate limits, Prometheus metrics, the merchant API
 * (`/api/*`), the queue dashboard and its login.
 *
 * `registerAdminFoundation` must run on the root instance before any route is added (the docs generator collects
 * routes as they are registered; the rate limiter and the webhook counter are root hooks); `registerAdminRoutes`
 * adds the routes.
 *
 * Rate limits (Redis store on the producer connection, so every API process shares the counts; keys under
 * `<REDIS_PREFIX>:rate-limit:`): `/api/*` per shop of a valid session token (RATE_LIMIT_SHOP_MAX per
 * RATE_LIMIT_WINDOW_MS), everything else per client IP (RATE_LIMIT_IP_MAX), `POST /admin/login` per IP at
 * {@link LOGIN_MAX}. Webhooks, health probes and `/queue/health` are never limited. Over the limit: 429 with
 * `Retry-After`. When Redis does not answer, requests are let through rather than refused.
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { createServiceMetrics, topicLabel, webhookOutcome, type ServiceMetrics } from '../queue/metrics.js';
import type { AppDeps } from './app.js';
import { merchantSession } from './merchantAuth.js';
import { registerAutomationRoutes } from './routes/automations.js';
import { registerContactRoutes } from './routes/contacts.js';
import { DASHBOARD_PATH, registerDashboardRoutes } from './routes/dashboard.js';
import { registerDocs } from './routes/docs.js';
import { registerMessageRoutes } from './routes/messages.js';
import { registerMetricsRoute } from './routes/metrics.js';
import { registerSettingsRoutes } from './routes/settings.js';

/** Login attempts per IP per window. */
export const LOGIN_MAX = 10;

const metricsOf = new WeakMap<AppDeps, ServiceMetrics>();

/** The app's metrics: the ones handed in (shared with the workers of this process), else its own. */
export function appMetrics(deps: AppDeps): ServiceMetrics {
  let m = deps.metrics ?? metricsOf.get(deps);
  if (!m) {
    m = createServiceMetrics();
    metricsOf.set(deps, m);
  }
  return m;
}

/**
 * Limits go by the route a request matched, never by its raw URL: `/admin/%6Cogin` reaches the login route, and must
 * count against the login limit. An unmatched request goes by its path.
 */
function routeOf(req: FastifyRequest): string {
  return req.routeOptions?.url ?? req.url.split('?')[0]!;
}

function isUnlimited(route: string): boolean {
  return route.startsWith('/webhooks/') || route === '/health' || route.startsWith('/health/') || route.startsWith('/queue/health');
}

export async function registerAdminFoundation(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.decorateRequest('shop', null);
  instrumentWebhooks(app, appMetrics(deps));
  await registerDocs(app, { dashboardPath: DASHBOARD_PATH, rateLimited: (url) => !isUnlimited(url) });

  const limits = deps.config.rateLimit;
  await app.register(rateLimit, {
    global: false,
    redis: deps.queues.connection,
    nameSpace: `${deps.config.redis.prefix}:rate-limit:`,
    skipOnError: true,
    timeWindow: limits.windowMs,
    max: (_req: FastifyRequest, key: string) => (key.startsWith('shop:') ? limits.shopMax : key.startsWith('login:') ? LOGIN_MAX : limits.ipMax),
    keyGenerator: async (req: FastifyRequest) => {
      if (routeOf(req).startsWith('/api/')) {
        // A valid token is limited per shop (a shop's staff share one budget, wherever they are); anything else per IP.
        const shop = await merchantSession(req, deps).then(
          (s) => s.shopDomain,
          () => null,
        );
        if (shop) return `shop:${shop}`;
      }
      if (req.method === 'POST' && routeOf(req) === '/admin/login') return `login:${req.ip}`;
      return `ip:${req.ip}`;
    },
    errorResponseBuilder: (_req, ctx) =>
      new AppError('RATE_LIMITED', `too many requests: at most ${ctx.max} per ${Math.round(limits.windowMs / 1000)} s; retry in ${ctx.after}`),
  });
  const limiter = app.rateLimit();
  app.addHook('onRequest', async (req, reply) => {
    if (isUnlimited(routeOf(req))) return;
    await limiter.call(app, req, reply);
  });
}

/** Counts Shopify webhook deliveries by topic and outcome, from the response (the intake code stays unaware). */
function instrumentWebhooks(app: FastifyInstance, metrics: ServiceMetrics): void {
  const duplicates = new WeakSet<FastifyRequest>();
  const isWebhook = (req: FastifyRequest) => req.url.startsWith('/webhooks/shopify');
  app.addHook('onSend', async (req, _reply, payload) => {
    if (isWebhook(req) && typeof payload === 'string' && payload.includes('"duplicate":true')) duplicates.add(req);
    return payload;
  });
  app.addHook('onResponse', async (req, reply) => {
    if (!isWebhook(req)) return;
    const fromPath = req.url.split('?')[0]!.slice('/webhooks/shopify/'.length);
    metrics.webhooks.inc({ topic: topicLabel(req.headers['x-shopify-topic'] ?? fromPath), outcome: webhookOutcome(reply.statusCode, duplicates.has(req)) });
  });
}

export async function registerAdminRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  await app.register(registerSettingsRoutes, { deps });
  await app.register(registerAutomationRoutes, { deps });
  await app.register(registerContactRoutes, { deps });
  await app.register(registerMessageRoutes, { deps });
  await app.register(registerDashboardRoutes, { deps });
  await app.register(registerMetricsRoute, { deps, metrics: appMetrics(deps) });
}
