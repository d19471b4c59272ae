/**
 * Queue depth and processing figures read from Redis (BullMQ's job counts and per-minute metrics), and the Prometheus
 * metrics of a running service.
 */
import type { Queue } from 'bullmq';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { isProviderError, type SmsProvider } from '../messages/providers/types.js';
import { PRIVACY_TOPICS, SUBSCRIBED_TOPICS } from '../shopify/topics.js';

export interface QueueDepth {
  waiting: number;
  active: number;
  completed: number;
  failed: number;
  delayed: number;
  prioritized: number;
  /** Worker connections serving this queue, across every process. */
  workers: number;
}

export interface ProcessingStats {
  /** Jobs completed / failed since metrics began (BullMQ worker metrics). */
  completedTotal: number;
  failedTotal: number;
  /** Mean per minute over the last 15 minutes. */
  completedPerMinute: number;
  failedPerMinute: number;
}

export async function collectQueueMetrics(
  queues: Queue[],
  timeoutMs: number,
): Promise<{ queues: Record<string, QueueDepth>; processing: Record<string, ProcessingStats> }> {
  const read = async (q: Queue) => {
    const [counts, workers, completed, failed] = await Promise.all([
      q.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized'),
      q.getWorkersCount(),
      q.getMetrics('completed', 0, 14),
      q.getMetrics('failed', 0, 14),
    ]);
    const perMinute = (data: number[]) => (data.length ? Math.round((data.reduce((a, b) => a + b, 0) / 15) * 100) / 100 : 0);
    return {
      depth: {
        waiting: counts.waiting ?? 0,
        active: counts.active ?? 0,
        completed: counts.completed ?? 0,
        failed: counts.failed ?? 0,
        delayed: counts.delayed ?? 0,
        prioritized: counts.prioritized ?? 0,
        workers,
      },
      processing: {
        completedTotal: completed.meta.count,
        failedTotal: failed.meta.count,
        completedPerMinute: perMinute(completed.data),
        failedPerMinute: perMinute(failed.data),
      },
    };
  };
  let timer: NodeJS.Timeout | undefined;
  const all = await Promise.race([
    Promise.all(queues.map(read)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`queue metrics took longer than ${timeoutMs} ms`)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  const result = { queues: {} as Record<string, QueueDepth>, processing: {} as Record<string, ProcessingStats> };
  queues.forEach((q, i) => {
    result.queues[q.name] = all[i]!.depth;
    result.processing[q.name] = all[i]!.processing;
  });
  return result;
}

// ---- Prometheus (`GET /metrics`) ----

/**
 * The Prometheus metrics of one running service, on a registry of its own (never prom-client's global one, so two
 * services in one process — tests — do not collide). Counters and histograms are observed where things happen
 * (workers, the provider, webhook intake); gauges are read from Redis and the database when scraped.
 */
export interface ServiceMetrics {
  /** Everything below: what one process serves at `/metrics`. */
  readonly registry: Registry;
  /** What this process counts itself (counters, histograms, its runtime): summed over processes under a supervisor. */
  readonly processRegistry: Registry;
  /** Gauges read from Redis and the database at scrape time: already the whole service's. */
  readonly sharedRegistry: Registry;
  /** Job run time (processedOn → finishedOn), by queue and outcome (`completed`, `failed`). */
  readonly jobDuration: Histogram<'queue' | 'outcome'>;
  /** Shopify webhook deliveries by topic and outcome (`accepted`, `duplicate`, `invalid_signature`, `rejected`, ...). */
  readonly webhooks: Counter<'topic' | 'outcome'>;
  /** Provider send latency by provider and result (`ok` or the error kind). */
  readonly providerLatency: Histogram<'provider' | 'result'>;
  /** Provider failures by provider, kind and stable code (`MITTO_INVALID_RECEIVER`, `HTTP_503`, `TIMEOUT`, ...). */
  readonly providerErrors: Counter<'provider' | 'kind' | 'code'>;
  /** Wires the scrape-time gauges to their sources. Called once, by the app that serves `/metrics`. */
  bindSources(sources: MetricSources): void;
}

export interface MetricSources {
  /** The five queues. */
  queues: () => Queue[];
  /** Message rows by status (every shop). */
  messagesByStatus: () => Promise<Record<string, number>>;
  /** Rows in the dead-letter table not yet replayed. */
  deadLetterCount: () => Promise<number>;
  /** A scrape must answer even when Redis is slow: gauges that take longer are left out of that scrape. */
  timeoutMs: number;
}

const JOB_STATES = ['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized', 'waiting-children'] as const;

/** Topics as labels are bounded: anything outside the known set (fuzzed headers) is counted as `other`. */
const KNOWN_TOPICS: ReadonlySet<string> = new Set([...SUBSCRIBED_TOPICS, ...PRIVACY_TOPICS]);

export function topicLabel(topic: unknown): string {
  return typeof topic === 'string' && KNOWN_TOPICS.has(topic) ? topic : 'other';
}

/** The outcome label of a webhook response. */
export function webhookOutcome(status: number, duplicate: boolean): string {
  if (status === 200) return duplicate ? 'duplicate' : 'accepted';
  if (status === 401) return 'invalid_signature';
  if (status === 503) return 'unavailable';
  if (status === 413) return 'too_large';
  return status < 500 ? 'rejected' : 'error';
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function createServiceMetrics(options: { defaultMetrics?: boolean } = {}): ServiceMetrics {
  const processRegistry = new Registry();
  const sharedRegistry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: processRegistry, prefix: 'smsblossom_' });
  let sources: MetricSources | undefined;

  const jobDuration = new Histogram({
    name: 'smsblossom_job_duration_seconds',
    help: 'Time a job spent being processed, by queue and outcome',
    labelNames: ['queue', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [processRegistry],
  });
  const webhooks = new Counter({
    name: 'smsblossom_webhooks_total',
    help: 'Shopify webhook deliveries by topic and outcome',
    labelNames: ['topic', 'outcome'] as const,
    registers: [processRegistry],
  });
  const providerLatency = new Histogram({
    name: 'smsblossom_provider_request_duration_seconds',
    help: 'SMS provider send latency by provider and result',
    labelNames: ['provider', 'result'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [processRegistry],
  });
  const providerErrors = new Counter({
    name: 'smsblossom_provider_errors_total',
    help: 'SMS provider send failures by provider, kind and code',
    labelNames: ['provider', 'kind', 'code'] as const,
    registers: [processRegistry],
  });

  new Gauge({
    name: 'smsblossom_queue_jobs',
    help: 'Jobs per queue and state (read from Redis at scrape time)',
    labelNames: ['queue', 'state'] as const,
    registers: [sharedRegistry],
    async collect() {
      this.reset();
      if (!sources) return;
      const queues = sources.queues();
      const counts = await withTimeout(Promise.all(queues.map((q) => q.getJobCounts(...JOB_STATES))), sources.timeoutMs).catch(() => null);
      if (!counts) return;
      queues.forEach((q, i) => {
        for (const state of JOB_STATES) this.set({ queue: q.name, state }, counts[i]![state] ?? 0);
      });
    },
  });
  new Gauge({
    name: 'smsblossom_messages',
    help: 'Message rows by status (every shop)',
    labelNames: ['status'] as const,
    registers: [sharedRegistry],
    async collect() {
      this.reset();
      if (!sources) return;
      const byStatus = await withTimeout(sources.messagesByStatus(), sources.timeoutMs).catch(() => null);
      for (const [status, n] of Object.entries(byStatus ?? {})) this.set({ status }, n);
    },
  });
  new Gauge({
    name: 'smsblossom_dead_letters',
    help: 'Dead letters not yet replayed',
    registers: [sharedRegistry],
    async collect() {
      this.reset();
      if (!sources) return;
      const n = await withTimeout(sources.deadLetterCount(), sources.timeoutMs).catch(() => null);
      if (n !== null) this.set(n);
    },
  });

  return {
    registry: Registry.merge([processRegistry, sharedRegistry]),
    processRegistry,
    sharedRegistry,
    jobDuration,
    webhooks,
    providerLatency,
    providerErrors,
    bindSources(s) {
      sources = s;
    },
  };
}

/** The provider, timed and its failures counted; what it sends and answers is untouched. */
export function instrumentProvider(provider: SmsProvider, metrics: ServiceMetrics): SmsProvider {
  return {
    name: provider.name,
    async send(req) {
      const end = metrics.providerLatency.startTimer({ provider: provider.name });
      try {
        const result = await provider.send(req);
        end({ result: 'ok' });
        return result;
      } catch (err) {
        const kind = isProviderError(err) ? err.kind : 'unknown';
        end({ result: kind });
        metrics.providerErrors.inc({ provider: provider.name, kind, code: isProviderError(err) ? err.code : 'UNKNOWN' });
        throw err;
      }
    },
  };
}
