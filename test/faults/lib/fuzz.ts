/**
 * The fault suite's fuzzer: webhook requests a buggy or hostile sender might make — random bodies, sizes, headers,
 * signatures, invalid UTF-8, deep JSON, odd methods and paths — and malformed HTTP written straight to a socket. Seeded,
 * so a failing run can be replayed.
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { mulberry32 } from '../../../src/sandbox/server.js';
import { signWebhook } from '../../../src/shopify/hmac.js';
import { SHOPIFY_SECRET } from '../../helpers/system.js';

export interface FuzzRequest {
  kind: string;
  headers: Record<string, string>;
  body: Buffer;
  method?: string;
  path?: string;
}

export interface Fuzzer {
  /** The seeded generator behind every choice (for callers that shuffle or pick with the same seed). */
  rnd: () => number;
  fuzzRequest(): FuzzRequest;
  /** Writes one malformed HTTP request to 127.0.0.1:`port`; resolves with the first bytes of the answer (or ''). */
  rawGarbage(port: number): Promise<string>;
}

export function createFuzzer(seed: number): Fuzzer {
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

  return { rnd, fuzzRequest, rawGarbage };
}
