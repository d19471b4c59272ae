/**
 * `GET /metrics` on a running service (real Redis, PostgreSQL, the bundled Mitto sandbox): an order flows from a signed
 * webhook to the provider, and the exposition shows it — webhooks by topic and outcome, job durations, provider
 * latency, messages by status, queue job counts, dead letters, Node's defaults — in valid Prometheus text format.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ProviderError } from '../../src/messages/providers/types.js';
import { createServiceMetrics, instrumentProvider } from '../../src/queue/metrics.js';
import { ADMIN_TOKEN, startTestSystem, type TestSystem } from '../helpers/system.js';
import { promtoolProblems } from '../helpers/promtool.js';
import { fixture, postWebhook } from '../helpers/webhooks.js';

const METRICS_TOKEN = 'metrics-token-0123456789';
const SHOP = 'metrics-blooms.myshopify.com';

/** The exposition format, line by line: HELP and TYPE comments and samples, nothing else. */
const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABELS = `\\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*")*)?\\}`;
const VALUE = '(?:[-+]?(?:\\d+(?:\\.\\d*)?(?:[eE][-+]?\\d+)?|\\.\\d+)|[-+]?Inf|NaN)';
const LINE = new RegExp(`^(?:# HELP ${NAME} .*|# TYPE ${NAME} (?:counter|gauge|histogram|summary|untyped)|${NAME}(?:${LABELS})? ${VALUE}(?: -?\\d+)?)$`);

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    expect(line, 'exposition line').toMatch(LINE);
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      expect(types.has(type[1]!), `TYPE ${type[1]} once`).toBe(false);
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([^{ ]+)(?:\{(.*)\})? (\S+)/.exec(line)!;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { samples, types };
}

const find = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

describe('Prometheus metrics', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem('postgres', { listen: true, workers: ['events', 'automations', 'delivery'], env: { METRICS_TOKEN } });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  const scrape = (token = METRICS_TOKEN) => sys.app!.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });

  it('needs the metrics token (or the admin token) when METRICS_TOKEN is set', async () => {
    expect((await sys.app!.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
    expect((await scrape('wrong-token-0123456789')).statusCode).toBe(401);
    expect((await scrape(ADMIN_TOKEN)).statusCode).toBe(200);
  });

  it('shows an order going from webhook to provider, in valid exposition format', async () => {
    const webhookId = randomUUID();
    expect((await postWebhook(sys.app!, { topic: 'orders/paid', shop: SHOP, body: fixture('orders-paid'), webhookId })).statusCode).toBe(200);
    expect((await postWebhook(sys.app!, { topic: 'orders/paid', shop: SHOP, body: fixture('orders-paid'), webhookId })).json().duplicate).toBe(true);
    expect((await postWebhook(sys.app!, { topic: 'orders/paid', shop: SHOP, body: fixture('orders-paid'), secret: 'wrong' })).statusCode).toBe(401);

    // The order confirmation reaches the sandbox provider: the provider histogram counts it.
    const { samples, types } = await vi.waitFor(
      async () => {
        const res = await scrape();
        expect(res.statusCode).toBe(200);
        const parsed = parseExposition(res.body);
        const sent = find(parsed.samples, 'smsblossom_provider_request_duration_seconds_count', { provider: 'mitto', result: 'ok' });
        if (!sent.length || sent[0]!.value < 1) throw new Error('no provider call observed yet');
        // The delivery job completes (and is observed) just after the provider answered.
        if (!find(parsed.samples, 'smsblossom_job_duration_seconds_count', { queue: 'delivery', outcome: 'completed' }).length) {
          throw new Error('delivery job not completed yet');
        }
        return parsed;
      },
      { timeout: 20_000, interval: 100 },
    );
    const res = await scrape();
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    // Prometheus's own checker: the format parses and the names follow its conventions.
    expect(await promtoolProblems(res.body)).toEqual([]);

    expect(types.get('smsblossom_webhooks_total')).toBe('counter');
    expect(find(samples, 'smsblossom_webhooks_total', { topic: 'orders/paid', outcome: 'accepted' })[0]?.value).toBe(1);
    expect(find(samples, 'smsblossom_webhooks_total', { topic: 'orders/paid', outcome: 'duplicate' })[0]?.value).toBe(1);
    expect(find(samples, 'smsblossom_webhooks_total', { topic: 'orders/paid', outcome: 'invalid_signature' })[0]?.value).toBe(1);

    expect(types.get('smsblossom_job_duration_seconds')).toBe('histogram');
    for (const queue of ['events', 'automations', 'delivery']) {
      expect(find(samples, 'smsblossom_job_duration_seconds_count', { queue, outcome: 'completed' })[0]?.value, queue).toBeGreaterThanOrEqual(1);
      const inf = find(samples, 'smsblossom_job_duration_seconds_bucket', { queue, outcome: 'completed', le: '+Inf' })[0]!;
      expect(inf.value).toBe(find(samples, 'smsblossom_job_duration_seconds_count', { queue, outcome: 'completed' })[0]!.value);
    }

    const byStatus = find(samples, 'smsblossom_messages');
    expect(byStatus.reduce((n, s) => n + s.value, 0)).toBeGreaterThanOrEqual(1);
    expect(byStatus.every((s) => ['queued', 'sending', 'sent', 'delivered', 'failed', 'skipped', 'cancelled'].includes(s.labels.status!))).toBe(true);

    for (const queue of ['events', 'automations', 'campaigns', 'delivery', 'housekeeping']) {
      expect(find(samples, 'smsblossom_queue_jobs', { queue, state: 'waiting' }), queue).toHaveLength(1);
    }
    expect(find(samples, 'smsblossom_queue_jobs', { queue: 'events', state: 'completed' })[0]!.value).toBeGreaterThanOrEqual(1);
    expect(find(samples, 'smsblossom_dead_letters')[0]?.value).toBe(0);
    // Node's default metrics, on this service's own registry.
    expect(find(samples, 'smsblossom_process_cpu_user_seconds_total')).toHaveLength(1);
    expect(find(samples, 'smsblossom_nodejs_heap_size_used_bytes')).toHaveLength(1);
  });

  it('counts provider failures by kind and code, and times them', async () => {
    const metrics = createServiceMetrics({ defaultMetrics: false });
    const failing = instrumentProvider(
      {
        name: 'mitto',
        send: async () => {
          throw new ProviderError('permanent', 'MITTO_INVALID_RECEIVER', 'invalid receiver', { providerCode: 8 });
        },
      },
      metrics,
    );
    const req = { to: '+14155550100', text: 'hi', from: 'Blossom', unicode: false, reference: '1' };
    await expect(failing.send(req)).rejects.toThrow(ProviderError);
    await expect(failing.send(req)).rejects.toThrow(ProviderError);
    const { samples } = parseExposition(await metrics.registry.metrics());
    expect(find(samples, 'smsblossom_provider_errors_total', { provider: 'mitto', kind: 'permanent', code: 'MITTO_INVALID_RECEIVER' })[0]?.value).toBe(2);
    expect(find(samples, 'smsblossom_provider_request_duration_seconds_count', { provider: 'mitto', result: 'permanent' })[0]?.value).toBe(2);
  });
});
