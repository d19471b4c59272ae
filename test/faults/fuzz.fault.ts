/**
 * 10,000 fuzzed requests at the webhook intake over a real socket — random bodies, sizes, headers, signatures, invalid
 * UTF-8, malformed HTTP — with 500 real orders mixed in (a fifth of them sent twice). Nothing may crash, nothing may be
 * answered 5xx but the documented 503, and every real order is processed once and becomes one message.
 *
 * The generator is seeded (FUZZ_SEED, else random and printed), so a failure can be replayed.
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/sandbox/server.js';
import { signWebhook } from '../../src/shopify/hmac.js';
import { SHOPIFY_SECRET, startTestSystem, type TestSystem } from '../helpers/system.js';
import { countAtProvider, eventually, orderWebhook, type Webhook } from './lib/workload.js';

const FUZZED = 10_000;
const ORDERS = 500;
const SHOP = 'fuzz.myshopify.com';
const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

const rnd = mulberry32(seed);
const int = (n: number) => Math.floor(rnd() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

const TOPICS = ['orders/paid', 'orders/create', 'checkouts/update', 'fulfillments/create', 'customers/update', 'customers/redact', 'app/uninstalled', 'products/update', 'x/y', '', '../../etc', 'orders/paid\u0000'];
// Not the real orders' shop: a fuzzed (validly signed) app/uninstalled would rightly stop its messages.
const SHOPS = ['fuzz-junk.myshopify.com', 'other.myshopify.com', '', 'not a domain', 'a'.repeat(300), '-bad-.myshopify.com'];

/** A JSON value of random shape: what a buggy or hostile sender might sign. */
function junkJson(depth = 0): unknown {
  switch (int(depth > 3 ? 5 : 8)) {
    case 0: return null;
    case 1: return rnd() * 1e12 - 5e11;
    case 2: return pick(['', 'x', '+1 201 555 0100', '\u{1F600}'.repeat(int(50)), '<script>', 'STOP', '9'.repeat(40)]);
    case 3: return rnd() < 0.5;
    case 4: return int(2 ** 53);
    case 5: return Array.from({ length: int(5) }, () => junkJson(depth + 1));
    default: {
      const keys = ['id', 'customer', 'phone', 'total_price', 'currency', 'sms_marketing_consent', 'checkout_token', 'completed_at', 'line_items', 'shipping_address', 'name', '__proto__', 'constructor'];
      return Object.fromEntries(Array.from({ length: int(8) }, () => [pick(keys), junkJson(depth + 1)]));
    }
  }
}

interface FuzzRequest {
  kind: string;
  headers: Record<string, string>;
  body: Buffer;
  method?: string;
  path?: string;
}

function fuzzRequest(): FuzzRequest {
  const topic = pick(TOPICS);
  const shop = pick(SHOPS);
  const base = (body: Buffer, sign: boolean | 'wrong' = true): Record<string, string> => {
    const h: Record<string, string> = { 'content-type': 'application/json' };
    if (topic) h['x-shopify-topic'] = topic.replace(/\u0000/g, '');
    if (shop) h['x-shopify-shop-domain'] = shop;
    h['x-shopify-webhook-id'] = rnd() < 0.9 ? randomUUID() : pick(['', 'x', 'a'.repeat(500)]) || randomUUID();
    if (sign === true) h['x-shopify-hmac-sha256'] = signWebhook(body, SHOPIFY_SECRET);
    if (sign === 'wrong') h['x-shopify-hmac-sha256'] = pick([signWebhook(body, 'wrong-secret'), 'AAAA', '', '%%%', bytes(32).toString('base64')]);
    return h;
  };
  switch (int(10)) {
    case 0: { const b = bytes(int(4096)); return { kind: 'random bytes, signed', body: b, headers: base(b) }; }
    case 1: { const b = Buffer.concat([Buffer.from('{"id":"'), bytes(8).map((x) => x | 0x80), Buffer.from('"}')]); return { kind: 'invalid UTF-8, signed', body: b, headers: base(b) }; }
    case 2: { const b = Buffer.from(JSON.stringify(junkJson())); return { kind: 'junk JSON, wrong signature', body: b, headers: base(b, 'wrong') }; }
    case 3: { const b = Buffer.from(JSON.stringify(junkJson())); return { kind: 'junk JSON, unsigned', body: b, headers: base(b, false) }; }
    case 4: { const b = Buffer.from(JSON.stringify(junkJson())); return { kind: 'junk JSON, signed', body: b, headers: base(b) }; }
    case 5: { const b = Buffer.from(pick(['', '{', '[]', 'null', '1', '"x"', '{"a":1}{', '{"a":'.repeat(2000)])); return { kind: 'not an object, signed', body: b, headers: base(b) }; }
    case 6: {
      const b = Buffer.from(JSON.stringify(junkJson()));
      const h = base(b);
      h['content-type'] = pick(['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'multipart/form-data; boundary=x', '']);
      return { kind: 'odd content type, signed', body: b, headers: h };
    }
    case 7: {
      const b = Buffer.from(JSON.stringify(junkJson()));
      const h = base(b);
      h[pick(['x-shopify-event-id', 'x-shopify-triggered-at', 'x-request-id', 'x-shopify-api-version'])] = pick(['', 'x'.repeat(2000), '2026-13-45T99:99:99Z', '🙂', '../../']);
      return { kind: 'odd headers, signed', body: b, headers: h };
    }
    case 8: {
      const b = Buffer.from(JSON.stringify(junkJson()));
      return { kind: 'odd method or path', body: b, headers: base(b), method: pick(['GET', 'PUT', 'DELETE', 'PATCH', 'POST']), path: pick(['/webhooks/shopify/orders/paid', '/webhooks/shopify/..%2f..%2f', '/webhooks/shopify/a/b/c', '/webhooks/shopify?x=1', '/webhooks//shopify']) };
    }
    default: {
      // Rarely, a body over the 1 MiB limit.
      const b = rnd() < 0.05 ? Buffer.alloc(1024 * 1024 + 1 + int(1000), 0x20) : Buffer.from(JSON.stringify({ id: int(1e9), big: 'x'.repeat(int(100_000)) }));
      return { kind: 'large body, signed', body: b, headers: base(b) };
    }
  }
}

/** A malformed HTTP request written straight to a socket; Node's parser must answer 4xx or close, never crash. */
function rawGarbage(port: number): Promise<string> {
  const payload = pick([
    Buffer.from('POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello'),
    Buffer.from('POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n'),
    Buffer.concat([Buffer.from('POST /webhooks/shopify HTTP/1.1\r\nX-Bad: '), bytes(64), Buffer.from('\r\n\r\n')]),
    bytes(200),
    Buffer.from(`GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`),
  ]);
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('data', (d) => (answer += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(answer.slice(0, 12)));
    socket.write(payload, () => socket.end());
  });
}

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
