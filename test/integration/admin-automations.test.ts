/**
 * Shop settings and automations through the merchant API on real Redis and PostgreSQL: settings that take effect in
 * the real pipeline, template validation on save, preview, and a simulation that sends and writes nothing.
 */
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { QUEUE_NAMES } from '../../src/queue/queues.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { messagesOfShop } from '../helpers/messages.js';
import { startTestSystem, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook } from '../helpers/webhooks.js';

const SHOP = 'settings-blooms.myshopify.com';
const SIM_SHOP = 'sim-blooms.myshopify.com';

describe('settings and automations', () => {
  let sys: TestSystem;
  let h: Record<string, string>;
  const inject = (method: 'GET' | 'PATCH' | 'POST', url: string, payload?: unknown, headers = h) =>
    sys.app!.inject({ method, url, headers, ...(payload === undefined ? {} : { payload: payload as object }) });

  beforeAll(async () => {
    sys = await startTestSystem('postgres', { env: { SHOPIFY_API_KEY }, workers: ['events', 'automations'] });
    h = await merchantHeaders(SHOP);
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  it('shows the defaults, changes settings, and resets one with null', async () => {
    const before = (await inject('GET', '/api/settings')).json();
    expect(before).toMatchObject({
      shop: SHOP,
      timezone: 'UTC',
      quietHours: { enabled: true, start: '21:00', end: '08:00' },
      frequencyCap: { max: 1, windowHours: 24 },
      optOutFooter: 'Reply STOP to unsubscribe',
    });
    const res = await inject('PATCH', '/api/settings', {
      timezone: 'Europe/Berlin',
      quietHours: { start: '22:00' },
      frequencyCap: { max: 2, windowHours: 12 },
      sender: 'Blossoms',
      optOutFooter: 'Text STOP to quit',
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      timezone: 'Europe/Berlin',
      quietHours: { enabled: true, start: '22:00', end: '08:00' },
      frequencyCap: { max: 2, windowHours: 12 },
      sender: 'Blossoms',
      optOutFooter: 'Text STOP to quit',
    });
    const reset = await inject('PATCH', '/api/settings', { sender: null });
    expect(reset.json().sender).toBe(sys.config.sms.sender);
    expect(reset.json().optOutFooter).toBe('Text STOP to quit');

    for (const [body, field] of [
      [{ timezone: 'Mars/Olympus' }, 'timezone'],
      [{ frequencyCap: { max: 0, windowHours: 12 } }, 'frequencyCap.max'],
      [{ sender: 'x' }, 'sender'],
      [{ colour: 'pink' }, 'colour'],
      [{}, '(root)'],
    ] as const) {
      const bad = await inject('PATCH', '/api/settings', body);
      expect(bad.statusCode, JSON.stringify(body)).toBe(400);
      expect(bad.json().error.code).toBe('VALIDATION_FAILED');
      expect(bad.json().error.message).toContain(field);
    }
  });

  it('applies the shop settings in the real pipeline: sender, footer, quiet hours off', async () => {
    const shop = 'pipeline-blooms.myshopify.com';
    const ph = await merchantHeaders(shop);
    expect((await inject('PATCH', '/api/settings', { sender: 'Petals', optOutFooter: 'Send STOP to end', quietHours: { enabled: false } }, ph)).statusCode).toBe(200);
    // A subscribed customer's paid order: an order confirmation (transactional) and a welcome (marketing).
    const res = await postWebhook(sys.app!, { topic: 'orders/paid', shop, body: fixture('orders-paid') });
    expect(res.statusCode).toBe(200);
    const shopRow = (await sys.app!.inject({ method: 'GET', url: '/api/settings', headers: ph })).json();
    expect(shopRow.shop).toBe(shop);
    const messages = await vi.waitFor(
      async () => {
        const list = (await sys.app!.inject({ method: 'GET', url: '/api/messages', headers: ph })).json().items as Array<{ kind: string; body: string; sender: string; scheduledFor: string | null }>;
        if (list.length < 2) throw new Error(`${list.length} messages so far`);
        return list;
      },
      { timeout: 15_000, interval: 50 },
    );
    const welcome = messages.find((m) => m.kind === 'marketing')!;
    const confirmation = messages.find((m) => m.kind === 'transactional')!;
    expect(welcome.body.endsWith('Send STOP to end')).toBe(true);
    expect(welcome.sender).toBe('Petals');
    expect(welcome.scheduledFor).toBeNull();
    expect(confirmation.body).not.toContain('Send STOP to end');
    expect(confirmation.sender).toBe('Petals');
  });

  it('lists, gets and updates automations; a template that does not parse is refused with TEMPLATE_INVALID', async () => {
    const list = (await inject('GET', '/api/automations')).json().items as Array<{ id: number; trigger: string; template: string }>;
    expect(list.map((a) => a.trigger).sort()).toEqual(['abandoned_checkout', 'fulfillment_update', 'order_created', 'order_paid', 'welcome']);
    const paid = list.find((a) => a.trigger === 'order_paid')!;
    expect((await inject('GET', `/api/automations/${paid.id}`)).json().template).toBe(paid.template);

    for (const template of ['Hi {{ customer.firstName ', 'Hi {{ customer.firstName | shout }}', '{% if order.name %}never closed']) {
      const bad = await inject('PATCH', `/api/automations/${paid.id}`, { template });
      expect(bad.statusCode, template).toBe(400);
      expect(bad.json().error.code).toBe('TEMPLATE_INVALID');
    }
    const badCondition = await inject('PATCH', `/api/automations/${paid.id}`, { rules: { conditions: { path: 'order.totalPrice', op: 'between', value: 1 } } });
    expect(badCondition.statusCode).toBe(400);
    expect(badCondition.json().error.code).toBe('CONDITION_INVALID');
    expect((await inject('GET', `/api/automations/${paid.id}`)).json().template).toBe(paid.template);

    const ok = await inject('PATCH', `/api/automations/${paid.id}`, {
      template: 'Thanks {{ customer.firstName }} for {{ order.name }}!',
      rules: { conditions: { path: 'order.totalPrice', op: 'gte', value: 10 } },
    });
    expect(ok.statusCode).toBe(200);
    const merged = await inject('PATCH', `/api/automations/${paid.id}`, { rules: { quietHours: { bypass: true } } });
    expect(merged.json().rules).toEqual({ conditions: { path: 'order.totalPrice', op: 'gte', value: 10 }, quietHours: { bypass: true } });
    expect(merged.json().template).toBe('Thanks {{ customer.firstName }} for {{ order.name }}!');
    expect((await inject('GET', '/api/automations/999999')).statusCode).toBe(404);
  });

  it('previews a template against the built-in sample and against a given event, with encoding and cost', async () => {
    const list = (await inject('GET', '/api/automations')).json().items as Array<{ id: number; trigger: string }>;
    const welcome = list.find((a) => a.trigger === 'welcome')!;
    const sample = (await inject('POST', `/api/automations/${welcome.id}/preview`, {})).json();
    expect(sample.text).toContain('Ada');
    expect(sample.text.endsWith('Text STOP to quit')).toBe(true);
    expect(sample).toMatchObject({ encoding: 'GSM-7', segments: 1, footer: true });

    const custom = (
      await inject('POST', `/api/automations/${welcome.id}/preview`, {
        template: 'Hola {{ customer.firstName }} — {{ order.name }} {{ order.missing }} 🌸',
        event: { topic: 'orders/paid', payload: fixture('orders-paid') },
      })
    ).json();
    expect(custom.text.startsWith('Hola Jane — #1042')).toBe(true);
    expect(custom.encoding).toBe('UCS-2');
    expect(custom.warnings).toContain('missing variable: order.missing');
    expect(custom.costEstimate).toBeGreaterThan(0);

    const bad = await inject('POST', `/api/automations/${welcome.id}/preview`, { template: '{{ nope' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('TEMPLATE_INVALID');
  });

  it('simulates an event: each rule decision and the text, and nothing is written or enqueued', async () => {
    const sh = await merchantHeaders(SIM_SHOP);
    await inject('PATCH', '/api/settings', { quietHours: { start: '22:00', end: '07:00' }, optOutFooter: 'Text STOP to quit', sender: 'SimShop' }, sh);
    const countsBefore = await jobCounts();
    const rowsBefore = await rowCounts();

    // 23:00 in New York, where the customer lives (NJ): inside the shop's quiet hours (22:00-07:00).
    const res = await inject('POST', '/api/automations/simulate', { topic: 'orders/paid', payload: fixture('orders-paid'), at: '2025-01-15T04:00:00Z' }, sh);
    expect(res.statusCode).toBe(200);
    const sim = res.json() as {
      dryRun: boolean;
      contact: { known: boolean; consent: string; hasPhone: boolean };
      automations: Array<{ trigger: string; decision: string; reason: string | null; deferredUntil: string | null; text: string; sender: string; trace: Array<{ rule: string; outcome: string; detail?: string }> }>;
    };
    expect(sim.dryRun).toBe(true);
    expect(sim.contact).toEqual({ id: null, known: false, consent: 'subscribed', hasPhone: true });
    const paid = sim.automations.find((a) => a.trigger === 'order_paid')!;
    expect(paid.decision).toBe('send');
    expect(paid.text).toContain('#1042');
    expect(paid.text).not.toContain('Text STOP to quit');
    expect(paid.trace.find((t) => t.rule === 'quiet_hours')!.outcome).toBe('exempt');
    const welcome = sim.automations.find((a) => a.trigger === 'welcome')!;
    expect(welcome.decision).toBe('defer');
    expect(welcome.reason).toBe('quiet_hours');
    expect(welcome.deferredUntil).toBe('2025-01-15T12:00:00.000Z');
    expect(welcome.trace.find((t) => t.rule === 'quiet_hours')!.detail).toContain('22:00-07:00 America/New_York');
    expect(welcome.text.endsWith('Text STOP to quit')).toBe(true);
    expect(welcome.sender).toBe('SimShop');

    // An opted-out customer: skipped for consent, with the rest of the trace not reached.
    const optedOut = fixture('orders-paid') as { customer: { sms_marketing_consent: Record<string, unknown> } };
    optedOut.customer.sms_marketing_consent = { ...optedOut.customer.sms_marketing_consent, state: 'unsubscribed' };
    const skipped = (await inject('POST', '/api/automations/simulate', { topic: 'orders/paid', payload: optedOut }, sh)).json();
    expect(skipped.automations).toHaveLength(1);
    expect(skipped.automations[0]).toMatchObject({ trigger: 'order_paid', decision: 'skip', reason: 'opted_out' });
    expect(skipped.automations[0].trace.at(-1)).toEqual({ rule: 'quiet_hours', outcome: 'not_reached' });

    const unknown = await inject('POST', '/api/automations/simulate', { topic: 'carts/explode', payload: {} }, sh);
    expect(unknown.statusCode).toBe(400);

    expect(await jobCounts()).toEqual(countsBefore);
    expect(await rowCounts()).toEqual(rowsBefore);
  });

  async function jobCounts(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    for (const name of QUEUE_NAMES) out[name] = await sys.queues.get(name).getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized');
    return out;
  }

  async function rowCounts(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const table of ['messages', 'message_skips', 'contacts', 'consent_changes', 'checkouts', 'events']) {
      const r = await sys.db.db.execute(sql.raw(`select count(*)::int as n from ${table}`));
      out[table] = Number((r as unknown as { rows: Array<{ n: number }> }).rows[0]!.n);
    }
    const shop = (await sys.db.db.execute(sql`select id from shops where domain = ${SIM_SHOP}`)) as unknown as { rows: Array<{ id: number }> };
    out.simShopMessages = shop.rows[0] ? (await messagesOfShop(sys.db.db, Number(shop.rows[0].id))).length : 0;
    return out;
  }
});
