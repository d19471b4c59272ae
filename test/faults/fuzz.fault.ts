/**
 * 10,000 fuzzed requests at the webhook intake over a real socket — random bodies, sizes, headers, signatures, invalid
 * UTF-8, malformed HTTP — with 500 real orders mixed in (a fifth of them sent twice). Nothing may crash, nothing may be
 * answered 5xx but the documented 503, and every real order is processed once and becomes one message.
 *
 * The generator is seeded (FUZZ_SEED, else random and printed), so a failure can be replayed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSystem, type TestSystem } from '../helpers/system.js';
import { createFuzzer, type FuzzRequest } from './lib/fuzz.js';
import { countAtProvider, eventually, orderWebhook, type Webhook } from './lib/workload.js';

const FUZZED = 10_000;
const ORDERS = 500;
const SHOP = 'fuzz.myshopify.com';
const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

const { rnd, fuzzRequest, rawGarbage } = createFuzzer(seed);
const int = (n: number) => Math.floor(rnd() * n);

describe(`faults: 10,000 fuzzed webhook requests (FUZZ_SEED=${seed})`, () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem('postgres', { listen: true, workers: ['events', 'automations', 'delivery'] });
  });
  afterAll(() => sys?.teardown());

  it('no crash, no 5xx but 503, every real order processed once', async () => {
    const port = Number(new URL(sys.url!).port);
    const orders: Webhook[] = Array.from({ length: ORDERS }, (_, i) => orderWebhook(i, SHOP));
    // The real orders, a fifth of them twice (Shopify redelivers), shuffled among the fuzz.
    const real = [...orders, ...orders.slice(0, ORDERS / 5)];
    const plan: Array<{ real?: Webhook; fuzz?: FuzzRequest; raw?: true }> = [
      ...real.map((w) => ({ real: w })),
      ...Array.from({ length: FUZZED }, () => (rnd() < 0.01 ? { raw: true as const } : { fuzz: fuzzRequest() })),
    ];
    for (let i = plan.length - 1; i > 0; i--) {
      const j = int(i + 1);
      [plan[i], plan[j]] = [plan[j]!, plan[i]!];
    }

    const statuses = new Map<string, number>();
    const bad: string[] = [];
    let next = 0;
    const worker = async () => {
      for (;;) {
        const item = plan[next++];
        if (!item) return;
        if (item.raw) {
          const answer = await rawGarbage(port);
          if (/^HTTP\/1\.1 5/.test(answer)) bad.push(`raw → ${answer}`);
          continue;
        }
        const r = item.real ?? item.fuzz!;
        const kind = item.real ? 'real order' : item.fuzz!.kind;
        for (;;) {
          const res = await fetch(`${sys.url}${item.fuzz?.path ?? '/webhooks/shopify'}`, {
            method: item.fuzz?.method ?? 'POST',
            headers: r.headers,
            body: item.fuzz?.method === 'GET' ? undefined : new Uint8Array(r.body),
          }).catch((err: Error) => ({ status: -1, text: async () => err.message }));
          const key = `${kind} → ${res.status}`;
          statuses.set(key, (statuses.get(key) ?? 0) + 1);
          if (res.status >= 500 && res.status !== 503) bad.push(`${key}: ${await res.text()}`);
          else if ('arrayBuffer' in res) await res.arrayBuffer();
          if (item.real && res.status !== 200) {
            if (res.status === 503) continue; // Shopify retries
            bad.push(`real order answered ${res.status}`);
          }
          break;
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));

    // What the fuzz met, by kind and answer (kept in the test output: it shows the run exercised every path).
    const byStatus = [...statuses].sort().map(([k, n]) => `${k}: ${n}`);
    process.stdout.write(`fuzz (seed ${seed}):\n  ${byStatus.join('\n  ')}\n`);
    expect(bad).toEqual([]);
    expect(statuses.get('real order → 200')).toBe(real.length);

    // Every real order processed once, one message each, none twice at the provider.
    const ids = orders.map((w) => w.webhookId);
    const settled = await eventually(
      'real orders processed and sent',
      async () => {
        const [row] = await sys.db.query<{ events: number; processed: number; messages: number; sent: number }>(
          `SELECT (SELECT count(*)::int FROM events WHERE webhook_id = ANY($1)) AS events,
                  (SELECT count(*)::int FROM events WHERE webhook_id = ANY($1) AND status = 'processed') AS processed,
                  (SELECT count(*)::int FROM messages m JOIN shops s ON s.id = m.shop_id WHERE s.domain = $2 AND m.trigger = 'order_paid') AS messages,
                  (SELECT count(*)::int FROM messages m JOIN shops s ON s.id = m.shop_id WHERE s.domain = $2 AND m.trigger = 'order_paid' AND m.status IN ('sent', 'delivered')) AS sent`,
          [ids, SHOP],
        );
        return row!;
      },
      (c) => c.sent >= ORDERS && c.processed >= ORDERS,
      180_000,
    );
    expect(settled).toEqual({ events: ORDERS, processed: ORDERS, messages: ORDERS, sent: ORDERS });
    const provider = countAtProvider(sys.sandbox!.messages());
    expect(provider.duplicated).toEqual([]);

    // Every accepted fuzz event reaches an end state (processed, ignored or failed into the dead letters): none stuck.
    await eventually(
      'no accepted event left in flight',
      async () => (await sys.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM events WHERE status IN ('received', 'queued')`))[0]!.n,
      (n) => n === 0,
      180_000,
    );
    // And the process is well.
    expect((await fetch(`${sys.url}/health`)).status).toBe(200);
  });
});
