/**
 * `GET /metrics`: Prometheus exposition of the service's own registry (see src/queue/metrics.ts).
 *
 * Under a supervisor (`PROCESSES` > 1) the counters and histograms are every process's, summed (the process that takes
 * the scrape asks the supervisor; src/queue/clusterMetrics.ts), so any scrape sees the whole service. A scrape that
 * cannot gather them answers 503 rather than one process's share, which Prometheus would read as a counter reset.
 *
 * With METRICS_TOKEN set it needs `Authorization: Bearer <METRICS_TOKEN>` (ADMIN_TOKEN works too); unset, it is open,
 * like most exporters inside a private network: it carries counts only, never a shop, phone number or message.
 */
import type { FastifyInstance } from 'fastify';
import { countMessagesByStatus } from '../../db/messages.js';
import { AppError } from '../../errors.js';
import { QUEUE_NAMES } from '../../queue/queues.js';
import type { ServiceMetrics } from '../../queue/metrics.js';
import { aggregatedMetrics, metricsAreAggregated } from '../../queue/clusterMetrics.js';
import type { AppDeps } from '../app.js';
import { bearerToken } from '../merchantAuth.js';
import { isAdminToken } from '../auth.js';
import { routeSchema } from './docs.js';

export async function registerMetricsRoute(app: FastifyInstance, { deps, metrics }: { deps: AppDeps; metrics: ServiceMetrics }): Promise<void> {
  metrics.bindSources({
    queues: () => QUEUE_NAMES.map((n) => deps.queues.get(n)),
    messagesByStatus: () => countMessagesByStatus(deps.db.db),
    deadLetterCount: () => deps.deadLetters.count(),
    timeoutMs: Math.max(deps.config.redis.healthTimeoutMs * 5, 1000),
  });
  const { metricsToken, adminToken } = deps.config;

  const doc = routeSchema({
    operationId: 'metrics',
    summary: "Prometheus exposition of the service's metrics (counts only: no shop, phone number or message)",
    tags: ['health'],
    auth: 'metrics',
    answers: { 200: { description: 'Prometheus text format', contentType: 'text/plain' } },
  });
  app.get('/metrics', doc, async (req, reply) => {
    if (metricsToken) {
      const token = bearerToken(req);
      if (!isAdminToken(token, metricsToken) && !isAdminToken(token, adminToken)) {
        throw new AppError('UNAUTHORIZED', 'a valid metrics token is required (Authorization: Bearer <METRICS_TOKEN>)');
      }
    }
    const body = metricsAreAggregated() ? await serviceWide(metrics) : await metrics.registry.metrics();
    return reply.header('content-type', metrics.registry.contentType).header('cache-control', 'no-store').send(body);
  });
}

/** Every process's own metrics, summed by the supervisor, then the gauges read from Redis and the database, once. */
async function serviceWide(metrics: ServiceMetrics): Promise<string> {
  let processes: string;
  try {
    processes = await aggregatedMetrics();
  } catch (err) {
    throw new AppError('SERVICE_UNAVAILABLE', `the metrics of every process could not be gathered: ${(err as Error).message}`);
  }
  const shared = await metrics.sharedRegistry.metrics();
  return processes.endsWith('\n') || processes === '' ? processes + shared : `${processes}\n${shared}`;
}
