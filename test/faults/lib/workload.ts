/**
 * The fault suite's workload: signed `orders/paid` webhooks sent over real HTTP the way Shopify sends them (a 503 or a
 * refused connection is retried with the same webhook id until it is answered 200), and the checks that every accepted
 * order became exactly one message at the provider.
 */
import { randomUUID } from 'node:crypto';
import { signWebhook } from '../../../src/shopify/hmac.js';
import type { SandboxMessage } from '../../../src/sandbox/server.js';
import { SHOPIFY_SECRET } from '../../helpers/system.js';
import { fixture } from '../../helpers/webhooks.js';

const ORDER = fixture('orders-paid') as Record<string, unknown> & { customer: Record<string, unknown> };

export interface Webhook {
  webhookId: string;
  body: Buffer;
  headers: Record<string, string>;
}

/** Order `n` of a shop: its own order id and customer (with a phone of its own, not an SMS subscriber), signed. */
export function orderWebhook(n: number, shop: string): Webhook {
  const body = Buffer.from(
    JSON.stringify({
      ...ORDER,
      id: 7_000_000_000 + n,
      name: `#F${n}`,
      // Not SMS subscribers: the confirmation is transactional and is sent anyway, while a new subscriber's welcome
      // message (sent or held by quiet hours, depending on the hour) would make the counts depend on the clock.
      customer: {
        ...ORDER.customer,
        id: 6_000_000_000 + n,
        phone: `+1 ${201 + Math.floor(n / 10_000)} 555 ${String(n % 10_000).padStart(4, '0')}`,
        sms_marketing_consent: { ...(ORDER.customer.sms_marketing_consent as object), state: 'not_subscribed' },
      },
    }),
  );
  const webhookId = randomUUID();
  return {
    webhookId,
    body,
    headers: {
      'content-type': 'application/json',
      'x-shopify-topic': 'orders/paid',
      'x-shopify-shop-domain': shop,
      'x-shopify-hmac-sha256': signWebhook(body, SHOPIFY_SECRET),
      'x-shopify-webhook-id': webhookId,
    },
  };
}

export interface Delivered {
  /** Answers other than 200 and 503 (each one a bug). */
  unexpected: Array<{ status: number; body: string }>;
  /** 503 answers and refused connections, retried. */
  retries: number;
}

/**
 * Sends each webhook until it is answered 200, as Shopify does (it retries for 48 h; here until `deadlineMs`). Only 200
 * and 503 are expected answers; anything else is collected and not retried.
 */
export async function sendLikeShopify(baseUrl: string, webhooks: Webhook[], concurrency = 8, deadlineMs = 120_000): Promise<Delivered> {
  const out: Delivered = { unexpected: [], retries: 0 };
  const deadline = Date.now() + deadlineMs;
  let next = 0;
  const worker = async () => {
    for (;;) {
      const w = webhooks[next++];
      if (!w) return;
      for (let attempt = 0; ; attempt++) {
        if (Date.now() > deadline) throw new Error(`webhook ${w.webhookId} not accepted before the deadline`);
        const status = await fetch(`${baseUrl}/webhooks/shopify`, { method: 'POST', headers: w.headers, body: new Uint8Array(w.body) })
          .then(async (r) => {
            if (r.status !== 200 && r.status !== 503) out.unexpected.push({ status: r.status, body: await r.text() });
            else await r.arrayBuffer();
            return r.status;
          })
          .catch(() => 0);
        if (status !== 503 && status !== 0) break;
        out.retries++;
        await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** Math.min(attempt, 5))));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

export interface ProviderCount {
  /** Messages the provider took (answered or not), one per reference expected. */
  accepted: number;
  references: number;
  /** References the provider took more than once: messages sent twice. */
  duplicated: string[];
}

/**
 * Counts what the provider took, by reference (our message id). With `only`, just those references: a run's order
 * confirmations, leaving out the welcome messages new subscribers also get (sent or not depending on the hour).
 */
export function countAtProvider(messages: readonly SandboxMessage[], only?: ReadonlySet<string>): ProviderCount {
  const seen = new Map<string, number>();
  let accepted = 0;
  for (const m of messages) {
    const ref = String(m.reference);
    if (only && !only.has(ref)) continue;
    accepted++;
    seen.set(ref, (seen.get(ref) ?? 0) + 1);
  }
  return { accepted, references: seen.size, duplicated: [...seen].filter(([, n]) => n > 1).map(([r]) => r) };
}

/** The ids of the order confirmations in the database, as the references the provider saw. */
export async function orderMessageRefs(db: { query<T>(sql: string, params?: unknown[]): Promise<T[]> }): Promise<Set<string>> {
  const rows = await db.query<{ id: string }>(`SELECT id::text AS id FROM messages WHERE trigger = 'order_paid'`);
  return new Set(rows.map((r) => r.id));
}

/** Polls `probe` until it returns a value `done` accepts; errors (a database restarting) count as not yet. */
export async function eventually<T>(what: string, probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = await probe();
      if (done(last)) return last;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not done after ${timeoutMs} ms; last seen ${JSON.stringify(last)}${lastError ? `, last error ${(lastError as Error).message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
