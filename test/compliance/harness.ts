/**
 * The compliance suite's harness: the whole service (HTTP API, `events`, `automations` and `delivery` workers) on real
 * Redis and PostgreSQL, sending to the bundled Mitto-compatible sandbox. Tests drive only the public surfaces —
 * signed Shopify webhooks, the provider's inbound callback, the merchant API — and assert on what the provider
 * received. Waits follow the real state of events, jobs and messages, never a fixed sleep.
 */
import { randomUUID } from 'node:crypto';
import { and, eq, inArray } from 'drizzle-orm';
import { vi } from 'vitest';
import { events, messages, shops, type Message, type Shop } from '../../src/db/schema.js';
import type { SandboxMessage } from '../../src/sandbox/server.js';
import { jobIdFrom } from '../../src/queue/queues.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { startTestSystem, type TestSystem } from '../helpers/system.js';
import { fixture, webhookRequest } from '../helpers/webhooks.js';

export const DLR_TOKEN = 'compliance-dlr-token-0123456789';
export const SHARED_SENDER = '+41791230000';

let seq = 0;
const base = Math.floor(Math.random() * 900_000);
export const newShop = (label: string) => `${label}-${Date.now().toString(36)}-${++seq}.myshopify.com`;
/** A US mobile in New York (area code 212) that no other test uses. */
export const nyPhone = () => `+1212555${String((base + ++seq) % 10_000).padStart(4, '0')}`;
/** A Swiss mobile no other test uses. */
export const chPhone = () => `+4179${String((base * 7 + ++seq) % 10_000_000).padStart(7, '0')}`;

export interface Compliance {
  sys: TestSystem;
  /** Posts a signed webhook; fails unless it is accepted (200). Resolves once the pipeline has settled for it. */
  webhook(topic: string, body: Record<string, unknown>, o: { shop: string; apiVersion?: string }): Promise<{ webhookId: string }>;
  /** Posts an inbound SMS the way the provider calls back. */
  inbound(payload: Record<string, unknown>): Promise<{ status: number; body: Record<string, any> }>;
  /** A merchant API call with a session token for `shop`. */
  api(shop: string, method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, contentType?: string): Promise<{ status: number; body: any }>;
  /** What the provider received for a phone. */
  received(phone: string): SandboxMessage[];
  shop(domain: string): Promise<Shop>;
  messagesTo(phone: string): Promise<Message[]>;
  /** Waits until no message to this phone is waiting to be sent now (queued or sending, not deferred). */
  settleMessages(phone: string): Promise<void>;
  close(): Promise<void>;
}

export async function startCompliance(env: Record<string, string> = {}): Promise<Compliance> {
  const sys = await startTestSystem('postgres', {
    workers: ['events', 'automations', 'delivery'],
    listen: true,
    env: { SMS_PROVIDER: 'sandbox', DLR_TOKEN, SHOPIFY_API_KEY, MITTO_SENDER: SHARED_SENDER, ...env },
  });
  const db = sys.db.db;
  const sandbox = sys.sandbox!;

  const settleMessages = async (phone: string) => {
    await vi.waitFor(
      async () => {
        const pending = await db
          .select()
          .from(messages)
          .where(and(eq(messages.toPhone, phone), inArray(messages.status, ['queued', 'sending'])));
        const due = pending.filter((m) => !m.scheduledFor || m.scheduledFor.getTime() <= Date.now() + 1000);
        if (due.length) throw new Error(`${due.length} message(s) to send still`);
        const unanswered = sandbox.messages().filter((m) => m.to === phone && !m.answered);
        if (unanswered.length) throw new Error('provider still answering');
      },
      { timeout: 15_000, interval: 25 },
    );
  };

  const h: Compliance = {
    sys,
    async webhook(topic, body, o) {
      const webhookId = randomUUID();
      const req = webhookRequest({ topic, body, shop: o.shop, webhookId, ...(o.apiVersion ? { headers: { 'x-shopify-api-version': o.apiVersion } } : {}) });
      const res = await sys.app!.inject(req);
      if (res.statusCode !== 200) throw new Error(`webhook ${topic} answered ${res.statusCode}: ${res.body}`);
      // The event is processed (or ignored), then its automations job (if any) is done.
      const row = await vi.waitFor(
        async () => {
          const [e] = await db.select().from(events).where(eq(events.webhookId, webhookId));
          if (!e || e.status === 'received' || e.status === 'queued') throw new Error(`event ${topic} is ${e?.status ?? 'missing'}`);
          return e;
        },
        { timeout: 15_000, interval: 25 },
      );
      if (row.status === 'failed') throw new Error(`event ${topic} failed: ${row.error}`);
      if (row.outcome === 'forwarded') {
        const queue = sys.queues.get('automations');
        await vi.waitFor(
          async () => {
            const state = await queue.getJobState(jobIdFrom('evt', webhookId));
            if (state !== 'completed') throw new Error(`automations job is ${state}`);
          },
          { timeout: 15_000, interval: 25 },
        );
      }
      return { webhookId };
    },
    async inbound(payload) {
      const res = await sys.app!.inject({ method: 'POST', url: `/webhooks/mitto/inbound?token=${DLR_TOKEN}`, payload });
      return { status: res.statusCode, body: res.json() };
    },
    async api(shop, method, url, payload, contentType) {
      const res = await sys.app!.inject({
        method,
        url,
        headers: { ...(await merchantHeaders(shop)), ...(contentType ? { 'content-type': contentType } : {}) },
        ...(payload === undefined ? {} : { payload: payload as string }),
      });
      return { status: res.statusCode, body: res.body ? res.json() : null };
    },
    received: (phone) => sandbox.messages().filter((m) => m.to === phone),
    async shop(domain) {
      const [s] = await db.select().from(shops).where(eq(shops.domain, domain));
      if (!s) throw new Error(`no shop ${domain}`);
      return s;
    },
    messagesTo: (phone) => db.select().from(messages).where(eq(messages.toPhone, phone)).orderBy(messages.id),
    settleMessages,
    close: () => sys.teardown(),
  };
  return h;
}

/** The published 2025-01 `orders/paid` sample, made an order of this customer (no embedded consent: 2025-01 has none). */
export function paidOrder(o: { orderId: number; customerId: number; phone: string; firstName?: string; province?: string | null; country?: string }) {
  const body = fixture('published/orders-paid') as Record<string, any>;
  body.id = o.orderId;
  body.name = `#${o.orderId}`;
  body.cancelled_at = null;
  body.financial_status = 'paid';
  body.phone = o.phone;
  body.customer = { ...body.customer, id: o.customerId, phone: o.phone, first_name: o.firstName ?? 'Ada', email: null };
  const address = { ...body.shipping_address, phone: o.phone, country_code: o.country ?? 'US', province_code: o.province === undefined ? 'NY' : o.province };
  body.shipping_address = address;
  body.billing_address = address;
  if (body.customer.default_address) body.customer.default_address = { ...address };
  return body;
}

/** The published `customers_marketing_consent/update` sample for this customer and state. */
export function consentUpdate(o: { customerId: number; phone: string; state: string; at: string | null }) {
  const body = fixture('published/customers_marketing_consent-update') as Record<string, any>;
  return {
    ...body,
    id: o.customerId,
    phone: o.phone,
    sms_marketing_consent: { ...body.sms_marketing_consent, state: o.state, opt_in_level: 'single_opt_in', consent_updated_at: o.at },
  };
}

/** The published `checkouts/update` sample, abandoned by this customer with the SMS box ticked. */
export function smsCheckout(o: { token: string; phone: string; createdAt: string; updatedAt: string; customerId?: number }) {
  const body = fixture('published/checkouts-update') as Record<string, any>;
  return {
    ...body,
    token: o.token,
    created_at: o.createdAt,
    updated_at: o.updatedAt,
    buyer_accepts_sms_marketing: true,
    sms_marketing_phone: o.phone,
    phone: o.phone,
    ...(o.customerId ? { customer: { ...(body.customer ?? {}), id: o.customerId, phone: o.phone } } : {}),
  };
}
