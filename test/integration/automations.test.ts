/**
 * `automations:evaluate` on real Redis and a real database (PostgreSQL and PGlite): default automations, consent,
 * rendering, idempotency, welcome-once, quiet-hour deferral, the atomic frequency cap, and the abandoned-checkout
 * debounce and cancellation.
 *
 * End-to-end cases post signed webhooks through `app.inject()` and let the real `events` and `automations` workers run.
 * Cases that need a clock build the job data the way the events processor does (`normalizeEventContext`,
 * `contactInputFrom`, `upsertContact`, `forwardedContext`) and call `processAutomation` with `deps.now`. No delivery
 * worker runs, so every `delivery` job stays where `automations` put it. Waits poll real job state, never sleep.
 */
import { randomUUID } from 'node:crypto';
import type { Job, JobType } from 'bullmq';
import { and, eq } from 'drizzle-orm';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDefaultAutomations, getAutomationByTrigger, listAutomations, updateAutomation } from '../../src/db/automations.js';
import { getCheckout } from '../../src/db/checkouts.js';
import { upsertContact } from '../../src/db/contacts.js';
import { messages, messageSkips, shops, type AutomationTrigger, type Contact, type Shop } from '../../src/db/schema.js';
import { getShopByDomain, markShopUninstalled, upsertShop } from '../../src/db/shops.js';
import { createLogger } from '../../src/logger.js';
import { analyzeSms, estimateCost } from '../../src/messages/encoding.js';
import { ABANDONED_CHECKOUT_DUE, evaluateAutomation, type AutomationDispatch } from '../../src/automations/evaluate.js';
import { processAutomation, type AutomationsJobDeps } from '../../src/queue/processors/automations.js';
import { contactInputFrom, forwardedContext } from '../../src/shopify/eventContact.js';
import { jobIdFrom, newRequestId, parseJobData, type JobData } from '../../src/queue/queues.js';
import { normalizeEventContext } from '../../src/shopify/normalize.js';
import { waitForJobState } from '../helpers/jobs.js';
import { DB_KINDS, startTestSystem, type DbKind, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook } from '../helpers/webhooks.js';

const ALL_STATES: JobType[] = ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed', 'waiting-children'];
const silent = createLogger({ level: 'silent' });
const HOUR = 3_600_000;
const NY = 'America/New_York';
const UTM = 'utm_source=sms&utm_medium=sms&utm_campaign=abandoned_checkout';

let shopSeq = 0;
const newShop = () => `auto-${Date.now().toString(36)}-${++shopSeq}.myshopify.com`;
const shopLabel = (domain: string) => domain.replace(/\.myshopify\.com$/, '');

/** The wall-clock time `hh:mm` in `zone` nearest to the real clock (within 12 h), so database `now()` stays close. */
function localTimeNear(zone: string, hour: number, minute: number): Date {
  const real = DateTime.now().setZone(zone);
  let t = real.set({ hour, minute, second: 0, millisecond: 0 });
  if (t.diff(real).as('hours') > 12) t = t.minus({ days: 1 });
  if (t.diff(real).as('hours') < -12) t = t.plus({ days: 1 });
  return t.toJSDate();
}

/** The last time it was `hour:minute` in `zone`: never in the future, where the consent ledger would clamp times to now. */
function localTimeBefore(zone: string, hour: number, minute: number): Date {
  const real = DateTime.now().setZone(zone);
  const t = real.set({ hour, minute, second: 0, millisecond: 0 });
  return (t > real ? t.minus({ days: 1 }) : t).toJSDate();
}

type Consent = 'subscribed' | 'not_subscribed' | 'unsubscribed' | 'pending';

/** orders-paid.json for another order, with the customer's SMS consent set as given. */
function orderBody(opts: { orderId?: number; consent?: Consent; consentAt?: string; checkoutToken?: string } = {}) {
  const body = fixture('orders-paid') as Record<string, any>;
  if (opts.orderId) body.id = opts.orderId;
  if (opts.checkoutToken) body.checkout_token = opts.checkoutToken;
  if (opts.consent) {
    body.customer.sms_marketing_consent = {
      ...body.customer.sms_marketing_consent,
      state: opts.consent,
      consent_updated_at: opts.consentAt ?? body.customer.sms_marketing_consent.consent_updated_at,
    };
  }
  return body;
}

/** checkouts-update-abandoned.json with its own token, recent timestamps and (by default) a subscribed customer. */
function checkoutBody(opts: { token?: string; updatedAt?: Date; totalPrice?: string; consent?: Consent | 'as_fixture' } = {}) {
  const body = fixture('checkouts-update-abandoned') as Record<string, any>;
  const updated = opts.updatedAt ?? new Date();
  body.token = opts.token ?? randomUUID().replace(/-/g, '');
  body.created_at = new Date(updated.getTime() - 6 * 60_000).toISOString();
  body.updated_at = updated.toISOString();
  body.abandoned_checkout_url = `https://blossom-demo.myshopify.com/64512345678/checkouts/${body.token}/recover?key=5a6b7c8d9e0f1a2b`;
  if (opts.totalPrice) body.total_price = opts.totalPrice;
  if (opts.consent !== 'as_fixture') {
    body.customer.sms_marketing_consent = {
      ...body.customer.sms_marketing_consent,
      state: opts.consent ?? 'subscribed',
      consent_updated_at: '2024-01-01T00:00:00Z',
    };
  }
  return body;
}

describe.each(DB_KINDS)('automations on %s', (kind: DbKind) => {
  let sys: TestSystem;

  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: ['events', 'automations'] });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  const db = () => sys.db.db;

  function deps(now?: Date): AutomationsJobDeps {
    return { db: db(), queues: sys.queues, logger: silent, renderer: sys.services.renderer, sms: sys.config.sms, ...(now ? { now: () => now } : {}) };
  }

  /**
   * What the events processor does with a webhook, without the queue: normalise, sync the contact, build the
   * `automations:evaluate` data. Nothing is enqueued, so the running worker never sees it.
   */
  async function eventJob(shopDomain: string, topic: string, raw: Record<string, unknown>) {
    const requestId = newRequestId();
    const context = normalizeEventContext(topic, raw, shopDomain);
    const { shop } = await upsertShop(db(), shopDomain);
    const input = contactInputFrom(context, shop, new Date());
    const sync = input ? await upsertContact(db(), shop.id, input, { requestId }) : null;
    const data = parseJobData('automations', 'evaluate', {
      trigger: topic,
      shopId: shopDomain,
      context: forwardedContext(context, sync),
      originalEvent: { topic, webhookId: randomUUID(), objectId: context.objectId },
      requestId,
      enqueuedAt: new Date().toISOString(),
    });
    return { data, shop, contact: sync?.contact as Contact };
  }

  /** The delayed evaluation an abandoned checkout's update schedules. */
  const dueData = (data: JobData<'automations'>): JobData<'automations'> => ({ ...data, trigger: ABANDONED_CHECKOUT_DUE });

  /** Posts a signed webhook and waits for its `events` job and the `automations` job it forwards to. */
  async function deliver(topic: string, body: Record<string, unknown>, shop: string) {
    const webhookId = randomUUID();
    const res = await postWebhook(sys.app!, { topic, body, shop, webhookId });
    expect(res.statusCode, res.body).toBe(200);
    await waitForJobState(sys.queues.get('events'), jobIdFrom('wh', shop, webhookId), 'completed', 15_000);
    const evaluated = await waitForJobState(sys.queues.get('automations'), jobIdFrom('evt', webhookId), 'completed', 15_000);
    return { webhookId, evaluated, outcomes: evaluated.returnvalue as Array<Record<string, unknown>> };
  }

  async function shopRow(domain: string): Promise<Shop> {
    const s = await getShopByDomain(db(), domain);
    expect(s, `shop ${domain}`).toBeDefined();
    return s!;
  }

  const messagesOf = (shopId: number) => db().select().from(messages).where(eq(messages.shopId, shopId)).orderBy(messages.id);
  const skipsOf = (shopId: number) => db().select().from(messageSkips).where(eq(messageSkips.shopId, shopId)).orderBy(messageSkips.id);

  async function automationId(shopId: number, trigger: AutomationTrigger): Promise<number> {
    const a = await getAutomationByTrigger(db(), shopId, trigger);
    expect(a, trigger).toBeDefined();
    return a!.id;
  }

  async function deliveryJobsFor(messageId: number): Promise<Job[]> {
    const jobs = await sys.queues.get('delivery').getJobs(ALL_STATES);
    return jobs.filter((j) => j?.data?.messageId === messageId);
  }

  async function delayedChecksFor(token: string): Promise<Job[]> {
    const jobs = await sys.queues.get('automations').getJobs(['delayed']);
    return jobs.filter((j) => j?.data?.trigger === ABANDONED_CHECKOUT_DUE && j.data.context?.checkout?.token === token);
  }

  const dedupeId = (shopId: number, token: string) => jobIdFrom('ac', shopId, token);

  // ---------------------------------------------------------------------------------------------------------------

  it("a shop's first event creates the five default automations once, even when two evaluations race", async () => {
    const shop = newShop();
    const { data } = await eventJob(shop, 'orders/paid', orderBody({ consent: 'not_subscribed' }));
    // eventJob created the shop row; no automation exists until the first evaluation.
    const s = await shopRow(shop);
    expect(await listAutomations(db(), s.id)).toHaveLength(0);

    const other = { ...data, requestId: newRequestId() };
    await Promise.all([processAutomation(data, deps()), processAutomation(other, deps())]);

    const autos = await listAutomations(db(), s.id);
    expect(autos.map((a) => a.trigger).sort()).toEqual(['abandoned_checkout', 'fulfillment_update', 'order_created', 'order_paid', 'welcome']);
    const by = Object.fromEntries(autos.map((a) => [a.trigger, a]));
    expect(by.order_paid).toMatchObject({ enabled: true, transactional: true, delayMinutes: 0 });
    expect(by.order_created).toMatchObject({ enabled: false, transactional: true });
    expect(by.abandoned_checkout).toMatchObject({ enabled: true, transactional: false, delayMinutes: 30 });
    expect(by.fulfillment_update).toMatchObject({ enabled: true, transactional: true });
    expect(by.welcome).toMatchObject({ enabled: true, transactional: false });
    for (const a of autos) sys.services.renderer.validate(a.template);
    expect(await ensureDefaultAutomations(db(), s.id)).toBe(0);
    expect(await db().select().from(shops).where(eq(shops.domain, shop))).toHaveLength(1);

    // Two evaluations of one order, whoever wins: one message.
    const sent = await messagesOf(s.id);
    expect(sent).toHaveLength(1);
  });

  it('the evaluation knows no queue: it hands a queued message and a checkout to evaluate later to its dispatch', async () => {
    const shop = newShop();
    const handed: Array<{ op: string; arg: unknown; delayMs: number }> = [];
    const dispatch: AutomationDispatch = {
      deliver: async (arg, delayMs) => void handed.push({ op: 'deliver', arg, delayMs }),
      evaluateCheckoutLater: async (arg, delayMs) => void handed.push({ op: 'evaluateCheckoutLater', arg, delayMs }),
    };
    const domainDeps = { db: db(), logger: silent, renderer: sys.services.renderer, sms: sys.config.sms, dispatch };
    const event = (data: JobData<'automations'>) => ({ shopDomain: data.shopId, trigger: data.trigger, context: data.context, requestId: data.requestId });

    const order = await eventJob(shop, 'orders/paid', orderBody({ consent: 'not_subscribed' }));
    const [queued] = await evaluateAutomation(event(order.data), domainDeps);
    expect(queued).toMatchObject({ trigger: 'order_paid', action: 'queued' });
    const messageId = (queued as { messageId: number }).messageId;
    expect(handed).toEqual([
      {
        op: 'deliver',
        arg: { messageId, shopDomain: shop, contactId: order.contact.id, automationId: await automationId(order.shop.id, 'order_paid'), requestId: order.data.requestId },
        delayMs: 0,
      },
    ]);
    expect(await deliveryJobsFor(messageId)).toHaveLength(0);

    const checkout = await eventJob(shop, 'checkouts/update', checkoutBody());
    const token = (checkout.data.context as { checkout: { token: string } }).checkout.token;
    // The checkout subscribes the customer, so a welcome is queued beside it.
    expect(await evaluateAutomation(event(checkout.data), domainDeps)).toContainEqual({ trigger: 'abandoned_checkout', action: 'scheduled', delayMinutes: 30 });
    expect(handed).toContainEqual({ op: 'evaluateCheckoutLater', arg: { shopId: checkout.shop.id, token }, delayMs: 30 * 60_000 });
    expect(await delayedChecksFor(token)).toHaveLength(0);
  });

  it('orders/paid via the real workers: one rendered transactional message and one delivery job; the same job again adds nothing', async () => {
    const shop = newShop();
    const { evaluated, outcomes } = await deliver('orders/paid', fixture('orders-paid'), shop);
    const s = await shopRow(shop);
    const orderPaidId = await automationId(s.id, 'order_paid');

    const rows = (await messagesOf(s.id)).filter((m) => m.trigger === 'order_paid');
    expect(rows).toHaveLength(1);
    const m = rows[0]!;
    expect(outcomes).toContainEqual({ trigger: 'order_paid', action: 'queued', messageId: m.id });
    const statusUrl = (fixture('orders-paid') as { order_status_url: string }).order_status_url;
    const body = `${shopLabel(shop)}: Thanks for your order #1042, Jane! Total $79.43. Details: ${statusUrl}`;
    const sms = analyzeSms(body);
    expect(m).toMatchObject({
      status: 'queued',
      kind: 'transactional',
      automationId: orderPaidId,
      idempotencyKey: `auto-${orderPaidId}-order-5812345678901`,
      toPhone: '+12015550123',
      sender: sys.config.sms.sender,
      body,
      encoding: 'GSM-7',
      segments: sms.segments,
      scheduledFor: null,
      requestId: evaluated.data.requestId,
    });
    expect(sms.segments).toBeGreaterThanOrEqual(2);
    expect(Number(m.costEstimate)).toBeCloseTo(estimateCost(sms.segments, sys.config.sms.costPerSegment), 4);
    expect(m.body).not.toContain('Reply STOP');

    const jobs = await deliveryJobsFor(m.id);
    expect(jobs.map((j) => j.id)).toEqual([`msg-${m.id}`]);
    expect(jobs[0]!.data).toMatchObject({ shopId: shop, messageId: m.id, automationId: orderPaidId, requestId: evaluated.data.requestId });
    expect(jobs[0]!.opts.delay ?? 0).toBe(0);

    // The same job data again (a retry, a stalled job run twice): no second message, no second delivery job.
    const data = parseJobData('automations', 'evaluate', evaluated.data);
    const again = await processAutomation(data, deps());
    expect(again).toContainEqual({ trigger: 'order_paid', action: 'queued', messageId: m.id });
    expect((await messagesOf(s.id)).filter((x) => x.trigger === 'order_paid')).toHaveLength(1);
    expect(await deliveryJobsFor(m.id)).toHaveLength(1);

    // The same order in another webhook (new request): recorded as a duplicate, still one message.
    const redelivered = await processAutomation({ ...data, requestId: newRequestId() }, deps());
    expect(redelivered).toContainEqual({ trigger: 'order_paid', action: 'duplicate', messageId: m.id });
    expect((await messagesOf(s.id)).filter((x) => x.trigger === 'order_paid')).toHaveLength(1);
    expect((await skipsOf(s.id)).filter((k) => k.reason === 'duplicate' && k.automationId === orderPaidId)).toHaveLength(1);
  });

  it('a retry after the delivery job was lost enqueues it again (a queued message is never stranded)', async () => {
    const shop = newShop();
    const { data, shop: s, contact } = await eventJob(shop, 'checkouts/update', checkoutBody());
    const now = localTimeNear(NY, 12, 0);
    const [first] = await processAutomation(dueData(data), deps(now));
    expect(first).toMatchObject({ trigger: 'abandoned_checkout', action: 'queued' });
    const id = (first as { messageId: number }).messageId;
    // As if the worker died between the message insert and the enqueue.
    await sys.queues.get('delivery').remove(`msg-${id}`);
    expect(await deliveryJobsFor(id)).toHaveLength(0);

    const retry = await processAutomation(dueData(data), deps(now));
    expect(retry).toEqual([{ trigger: 'abandoned_checkout', action: 'queued', messageId: id }]);
    expect(await deliveryJobsFor(id)).toHaveLength(1);
    expect((await messagesOf(s.id)).filter((m) => m.contactId === contact.id)).toHaveLength(1);
    expect(await skipsOf(s.id)).toEqual([]);
  });

  it('consent: not_subscribed still gets transactional; unsubscribed gets nothing and an opted_out skip; marketing needs subscribed', async () => {
    const shop = newShop();
    const notSub = await eventJob(shop, 'orders/paid', orderBody({ orderId: 5812345670001, consent: 'not_subscribed' }));
    expect(notSub.contact.smsConsent).toBe('not_subscribed');
    expect(await processAutomation(notSub.data, deps())).toEqual([{ trigger: 'order_paid', action: 'queued', messageId: expect.any(Number) }]);

    const optedOut = await eventJob(shop, 'orders/paid', orderBody({ orderId: 5812345670002, consent: 'unsubscribed', consentAt: new Date().toISOString() }));
    expect(optedOut.contact.smsConsent).toBe('unsubscribed');
    expect(await processAutomation(optedOut.data, deps())).toEqual([
      { trigger: 'order_paid', action: 'skipped', reason: 'opted_out', detail: expect.any(String) },
    ]);

    const s = optedOut.shop;
    const orderPaidId = await automationId(s.id, 'order_paid');
    const rows = await messagesOf(s.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ trigger: 'order_paid', kind: 'transactional', idempotencyKey: `auto-${orderPaidId}-order-5812345670001` });
    expect(await skipsOf(s.id)).toEqual([
      expect.objectContaining({
        contactId: optedOut.contact.id,
        automationId: orderPaidId,
        trigger: 'order_paid',
        objectId: '5812345670002',
        reason: 'opted_out',
        requestId: optedOut.data.requestId,
      }),
    ]);

    // Marketing (the abandoned-checkout reminder): the unsubscribed contact and a pending one are skipped.
    const now = localTimeNear(NY, 12, 0);
    const pending = await eventJob(shop, 'checkouts/update', checkoutBody({ consent: 'as_fixture' }));
    expect(pending.contact.smsConsent).toBe('pending');
    expect(await processAutomation(dueData(pending.data), deps(now))).toEqual([
      { trigger: 'abandoned_checkout', action: 'skipped', reason: 'not_subscribed', detail: expect.any(String) },
    ]);
    const never = await eventJob(shop, 'checkouts/update', checkoutBody({ consent: 'not_subscribed' }));
    const [r] = await processAutomation(dueData(never.data), deps(now));
    expect(r).toMatchObject({ action: 'skipped', reason: 'not_subscribed' });
    expect(await messagesOf(s.id)).toHaveLength(1);
  });

  it('orders/create: order_created is off by default, so a disabled skip is recorded', async () => {
    const shop = newShop();
    const { data, contact } = await eventJob(shop, 'orders/create', orderBody({ consent: 'not_subscribed' }));
    expect(await processAutomation(data, deps())).toEqual([{ trigger: 'order_created', action: 'skipped', reason: 'disabled' }]);
    const s = await shopRow(shop);
    expect(await messagesOf(s.id)).toHaveLength(0);
    expect(await skipsOf(s.id)).toEqual([
      expect.objectContaining({ contactId: contact.id, automationId: await automationId(s.id, 'order_created'), trigger: 'order_created', reason: 'disabled' }),
    ]);
  });

  it('welcome: a contact turning subscribed gets one welcome, ever', async () => {
    const shop = newShop();
    const body = fixture('customers-marketing_consent_update') as Record<string, any>;
    const first = await eventJob(shop, 'customers_marketing_consent/update', body);
    expect(first.data.context).toMatchObject({ consentChange: { to: 'subscribed' } });
    const now = localTimeNear('UTC', 12, 0);
    const [w] = await processAutomation(first.data, deps(now));
    expect(w).toEqual({ trigger: 'welcome', action: 'queued', messageId: expect.any(Number) });

    const s = first.shop;
    const welcomeId = await automationId(s.id, 'welcome');
    const [m, ...more] = await messagesOf(s.id);
    expect(more).toHaveLength(0);
    expect(m).toMatchObject({
      kind: 'marketing',
      trigger: 'welcome',
      idempotencyKey: `auto-${welcomeId}-contact-${first.contact.id}`,
      toPhone: '+33612345678',
      body: `Welcome to ${shopLabel(shop)}, friend! You'll be the first to hear about our offers.\nReply STOP to unsubscribe`,
      scheduledFor: null,
    });
    expect(await deliveryJobsFor(m!.id)).toHaveLength(1);

    // Out, then in again: a second opt-in of the same contact does not send another welcome.
    const stamp = (iso: string, state: Consent) => ({ ...body, sms_marketing_consent: { ...body.sms_marketing_consent, state, consent_updated_at: iso } });
    const out = await eventJob(shop, 'customers_marketing_consent/update', stamp('2024-10-01T00:00:00Z', 'unsubscribed'));
    expect(out.data.context).toMatchObject({ consentChange: { to: 'unsubscribed' } });
    expect(await processAutomation(out.data, deps(now))).toEqual([]);
    const back = await eventJob(shop, 'customers_marketing_consent/update', stamp('2024-10-02T00:00:00Z', 'subscribed'));
    expect(back.data.context).toMatchObject({ consentChange: { from: 'unsubscribed', to: 'subscribed' } });
    expect(await processAutomation(back.data, deps(now))).toEqual([{ trigger: 'welcome', action: 'duplicate', messageId: m!.id }]);
    expect(await messagesOf(s.id)).toHaveLength(1);
    expect(await skipsOf(s.id)).toEqual([expect.objectContaining({ automationId: welcomeId, reason: 'duplicate', contactId: first.contact.id })]);
  });

  it('quiet hours: at 23:30 local a marketing message is reserved for 08:00 and its job delayed; transactional goes now', async () => {
    const shop = newShop();
    // A new subscribed contact in New Jersey: order_paid (transactional) and welcome (marketing) in one evaluation.
    const { data, shop: s, contact } = await eventJob(shop, 'orders/paid', orderBody());
    expect(contact).toMatchObject({ countryCode: 'US', provinceCode: 'NJ', timezone: null });
    const now = localTimeNear(NY, 23, 30);
    const eight = DateTime.fromJSDate(now, { zone: NY }).plus({ days: 1 }).set({ hour: 8, minute: 0 }).toJSDate();

    const outcomes = await processAutomation(data, deps(now));
    expect(outcomes).toHaveLength(2);
    const rows = await messagesOf(s.id);
    const paid = rows.find((m) => m.trigger === 'order_paid')!;
    const welcome = rows.find((m) => m.trigger === 'welcome')!;
    expect(outcomes).toContainEqual({ trigger: 'order_paid', action: 'queued', messageId: paid.id });
    expect(outcomes).toContainEqual({ trigger: 'welcome', action: 'queued', messageId: welcome.id, deferredUntil: expect.any(String) });

    expect(paid.scheduledFor).toBeNull();
    const [paidJob] = await deliveryJobsFor(paid.id);
    expect(paidJob!.opts.delay ?? 0).toBe(0);
    expect(await paidJob!.getState()).toBe('waiting');

    expect(welcome.scheduledFor?.toISOString()).toBe(eight.toISOString());
    expect(DateTime.fromJSDate(welcome.scheduledFor!, { zone: NY }).toFormat('HH:mm')).toBe('08:00');
    const [welcomeJob] = await deliveryJobsFor(welcome.id);
    expect(welcomeJob!.id).toBe(`msg-${welcome.id}`);
    expect(welcomeJob!.opts.delay).toBe(eight.getTime() - now.getTime());
    expect(await welcomeJob!.getState()).toBe('delayed');
  });

  it('frequency cap 1/24h holds under 50 concurrent evaluations for one contact', async () => {
    const shop = newShop();
    const { data, shop: s, contact } = await eventJob(shop, 'checkouts/update', checkoutBody());
    expect(contact.smsConsent).toBe('subscribed');
    const now = localTimeNear(NY, 12, 0);
    const runs = Array.from({ length: 50 }, (_, i) => {
      const token = `cap${i}${randomUUID().replace(/-/g, '').slice(0, 16)}`;
      const context = { ...data.context, objectId: token, checkout: { ...(data.context.checkout as object), token } };
      return processAutomation({ ...dueData(data), context, requestId: newRequestId() }, deps(now));
    });
    const outcomes = (await Promise.all(runs)).flat();
    expect(outcomes).toHaveLength(50);
    expect(outcomes.filter((o) => o.action === 'queued')).toHaveLength(1);
    expect(outcomes.filter((o) => o.action === 'skipped' && o.reason === 'frequency_capped')).toHaveLength(49);

    const rows = await messagesOf(s.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ kind: 'marketing', trigger: 'abandoned_checkout', contactId: contact.id });
    const skips = await skipsOf(s.id);
    expect(skips).toHaveLength(49);
    expect(new Set(skips.map((k) => k.reason))).toEqual(new Set(['frequency_capped']));
  });

  it("the cap follows the shop's setting: with none, two reminders within the day both go", async () => {
    const shop = newShop();
    const { shop: s } = await upsertShop(db(), shop);
    await db().update(shops).set({ settings: { frequencyCap: null } }).where(eq(shops.id, s.id));
    const now = localTimeNear(NY, 12, 0);
    const a = await eventJob(shop, 'checkouts/update', checkoutBody());
    const b = await eventJob(shop, 'checkouts/update', checkoutBody());
    expect(b.contact.id).toBe(a.contact.id);
    const [ra] = await processAutomation(dueData(a.data), deps(now));
    const [rb] = await processAutomation(dueData(b.data), deps(now));
    expect([ra?.action, rb?.action]).toEqual(['queued', 'queued']);
  });

  it('48 h count from the last update, and a quiet-hour deferral may not carry a reminder past them', async () => {
    // The opt-in these checkouts carry would send a welcome first, and the welcome takes the day's marketing slot.
    const withoutWelcome = async (domain: string) => {
      const { shop: s } = await upsertShop(db(), domain);
      await ensureDefaultAutomations(db(), s.id);
      await updateAutomation(db(), s.id, await automationId(s.id, 'welcome'), { enabled: false });
      return domain;
    };
    const shop = await withoutWelcome(newShop());
    const now = localTimeNear(NY, 12, 0);
    // Started three days ago, touched again 40 minutes ago: a fresh abandonment.
    const body = checkoutBody({ updatedAt: new Date(now.getTime() - 40 * 60_000) });
    body.created_at = new Date(now.getTime() - 72 * HOUR).toISOString();
    const fresh = await eventJob(shop, 'checkouts/update', body);
    expect(await processAutomation(fresh.data, deps(now))).toEqual([
      { trigger: 'abandoned_checkout', action: 'scheduled', delayMinutes: 30 },
      { trigger: 'welcome', action: 'skipped', reason: 'disabled' },
    ]);
    const [sent] = await processAutomation(dueData(fresh.data), deps(now));
    expect(sent).toMatchObject({ action: 'queued' });
    // The row names its checkout: delivery cancels it if the checkout completes, even from a job that does not.
    const [row] = await sys.db.query<{ checkout_token: string }>('SELECT checkout_token FROM messages WHERE id = $1', [(sent as { messageId: number }).messageId]);
    expect(row?.checkout_token).toBe(body.token);

    // Last touched 47 h before 23:30: quiet hours would hold it until 08:00, 55.5 h after; it is dropped instead.
    const other = await withoutWelcome(newShop());
    const late = localTimeNear(NY, 23, 30);
    const stale = await eventJob(other, 'checkouts/update', checkoutBody({ updatedAt: new Date(late.getTime() - 47 * HOUR) }));
    await processAutomation(stale.data, deps(late));
    expect(await processAutomation(dueData(stale.data), deps(late))).toEqual([
      { trigger: 'abandoned_checkout', action: 'skipped', reason: 'too_late', detail: expect.stringContaining('quiet hours') },
    ]);
    expect(await messagesOf(stale.shop.id)).toHaveLength(0);
  });

  it('abandoned checkout: consent given after the abandonment does not allow the reminder (consent_after_abandonment)', async () => {
    const shop = newShop();
    const { shop: s } = await upsertShop(db(), shop);
    await ensureDefaultAutomations(db(), s.id);
    await updateAutomation(db(), s.id, await automationId(s.id, 'welcome'), { enabled: false });
    // In the past: a consent time later than the real clock is taken as "now" by the ledger, after the abandonment.
    const now = localTimeBefore(NY, 12, 0);
    // Left the checkout two hours ago; subscribed an hour later (say, through a pop-up).
    const body = checkoutBody({ updatedAt: new Date(now.getTime() - 2 * HOUR) });
    body.customer.sms_marketing_consent.consent_updated_at = new Date(now.getTime() - HOUR).toISOString();
    const late = await eventJob(shop, 'checkouts/update', body);
    await processAutomation(late.data, deps(now));
    expect(await processAutomation(dueData(late.data), deps(now))).toEqual([
      { trigger: 'abandoned_checkout', action: 'skipped', reason: 'consent_after_abandonment', detail: expect.any(String) },
    ]);
    expect(await messagesOf(s.id)).toHaveLength(0);

    // Ticked at the checkout itself: stamped when the webhook arrived, a minute after the checkout's time. Allowed.
    const other = newShop();
    const { shop: o } = await upsertShop(db(), other);
    await ensureDefaultAutomations(db(), o.id);
    await updateAutomation(db(), o.id, await automationId(o.id, 'welcome'), { enabled: false });
    const atCheckout = checkoutBody({ updatedAt: new Date(now.getTime() - 40 * 60_000) });
    atCheckout.customer.sms_marketing_consent.consent_updated_at = new Date(now.getTime() - 39 * 60_000).toISOString();
    const ticked = await eventJob(other, 'checkouts/update', atCheckout);
    await processAutomation(ticked.data, deps(now));
    expect(await processAutomation(dueData(ticked.data), deps(now))).toEqual([expect.objectContaining({ trigger: 'abandoned_checkout', action: 'queued' })]);
  });

  it('conditions: order.totalPrice gt 100 skips a 79.43 order with conditions_not_met', async () => {
    const shop = newShop();
    const { shop: s } = await upsertShop(db(), shop);
    await ensureDefaultAutomations(db(), s.id);
    const id = await automationId(s.id, 'order_paid');
    await updateAutomation(db(), s.id, id, { rules: { conditions: { path: 'order.totalPrice', op: 'gt', value: 100 } } });

    const { data } = await eventJob(shop, 'orders/paid', orderBody({ consent: 'not_subscribed' }));
    expect(await processAutomation(data, deps())).toEqual([{ trigger: 'order_paid', action: 'skipped', reason: 'conditions_not_met' }]);
    expect(await messagesOf(s.id)).toHaveLength(0);
    expect(await skipsOf(s.id)).toEqual([expect.objectContaining({ automationId: id, reason: 'conditions_not_met', objectId: '5812345678901' })]);

    // The same condition met: sent.
    await updateAutomation(db(), s.id, id, { rules: { conditions: { path: 'order.totalPrice', op: 'gt', value: 50 } } });
    const [ok] = await processAutomation({ ...data, requestId: newRequestId() }, deps());
    expect(ok).toMatchObject({ action: 'queued' });
  });

  it('an uninstalled shop sends nothing and records shop_uninstalled', async () => {
    const shop = newShop();
    const { data, shop: s } = await eventJob(shop, 'orders/paid', orderBody());
    await markShopUninstalled(db(), shop, new Date());
    const outcomes = await processAutomation(data, deps());
    expect(outcomes).toHaveLength(2);
    for (const o of outcomes) expect(o).toMatchObject({ action: 'skipped', reason: 'shop_uninstalled' });
    expect(await messagesOf(s.id)).toHaveLength(0);
    const skips = await skipsOf(s.id);
    expect(skips.map((k) => k.reason)).toEqual(['shop_uninstalled', 'shop_uninstalled']);
  });

  // ---- abandoned checkout through the real workers ----

  describe('abandoned checkout', () => {
    /** A shop whose customer (Amelia, the checkout fixture's) is already subscribed, so no welcome competes for the cap. */
    async function shopWithSubscriber(): Promise<{ shop: string; s: Shop; contact: Contact }> {
      const shop = newShop();
      const { shop: s } = await upsertShop(db(), shop);
      const sync = await upsertContact(db(), s.id, {
        shopifyCustomerId: '7234567892345',
        phone: '+447400123456',
        firstName: 'Amelia',
        lastName: 'Clarke',
        email: null,
        tags: null,
        countryCode: 'GB',
        provinceCode: null,
        consent: { state: 'subscribed', optInLevel: 'single_opt_in', updatedAt: new Date('2024-01-01T00:00:00Z'), source: 'test', origin: 'shopify' },
      });
      return { shop, s, contact: sync!.contact };
    }

    it('an update schedules one delayed evaluation; a later update replaces it with the newer data', async () => {
      const { shop, s } = await shopWithSubscriber();
      const token = randomUUID().replace(/-/g, '');
      const first = await deliver('checkouts/update', checkoutBody({ token, totalPrice: '26.99' }), shop);
      expect(first.outcomes).toEqual([{ trigger: 'abandoned_checkout', action: 'scheduled', delayMinutes: 30 }]);

      const firstId = await sys.queues.get('automations').getDeduplicationJobId(dedupeId(s.id, token));
      expect(firstId).toBeTruthy();
      const job = await waitForJobState(sys.queues.get('automations'), firstId!, 'delayed');
      expect(job.opts.delay).toBe(30 * 60_000);
      expect(job.timestamp + job.opts.delay! - Date.now()).toBeGreaterThan(29 * 60_000);
      expect(job.data).toMatchObject({ trigger: ABANDONED_CHECKOUT_DUE, shopId: shop, context: { checkout: { token, totalPrice: '26.99' } } });
      expect(await getCheckout(db(), s.id, token)).toMatchObject({ completedAt: null });

      const second = await deliver('checkouts/update', checkoutBody({ token, totalPrice: '48.99' }), shop);
      expect(second.outcomes).toEqual([{ trigger: 'abandoned_checkout', action: 'scheduled', delayMinutes: 30 }]);
      const secondId = await sys.queues.get('automations').getDeduplicationJobId(dedupeId(s.id, token));
      expect(secondId).toBeTruthy();
      expect(secondId).not.toBe(firstId);
      expect(await sys.queues.get('automations').getJob(firstId!)).toBeUndefined();
      const delayed = await delayedChecksFor(token);
      expect(delayed.map((j) => j.id)).toEqual([secondId]);
      expect(delayed[0]!.data.context).toMatchObject({ checkout: { totalPrice: '48.99' } });
      expect(delayed[0]!.opts.delay).toBe(30 * 60_000);
      expect(await messagesOf(s.id)).toHaveLength(0);
    });

    it('a completed checkout schedules nothing', async () => {
      const shop = newShop();
      const body = fixture('checkouts-update-completed');
      const { outcomes } = await deliver('checkouts/update', body, shop);
      expect(outcomes).toEqual([{ trigger: 'abandoned_checkout', action: 'skipped', reason: 'checkout_completed' }]);
      const s = await shopRow(shop);
      const token = (body as { token: string }).token;
      expect(await sys.queues.get('automations').getDeduplicationJobId(dedupeId(s.id, token))).toBeFalsy();
      expect(await delayedChecksFor(token)).toHaveLength(0);
      expect((await getCheckout(db(), s.id, token))?.completedAt).toBeInstanceOf(Date);
    });

    it('the due evaluation sends the recovery link with UTM tags and the opt-out footer', async () => {
      const { shop, s, contact } = await shopWithSubscriber();
      const token = randomUUID().replace(/-/g, '');
      await deliver('checkouts/update', checkoutBody({ token }), shop);
      const id = await sys.queues.get('automations').getDeduplicationJobId(dedupeId(s.id, token));
      const job = await waitForJobState(sys.queues.get('automations'), id!, 'delayed');
      await job.promote();
      const done = await waitForJobState(sys.queues.get('automations'), id!, 'completed', 15_000);
      const [outcome] = done.returnvalue as Array<{ action: string; messageId: number }>;
      expect(outcome).toMatchObject({ trigger: 'abandoned_checkout', action: 'queued' });

      const [m, ...more] = await messagesOf(s.id);
      expect(more).toHaveLength(0);
      const url = `https://blossom-demo.myshopify.com/64512345678/checkouts/${token}/recover?key=5a6b7c8d9e0f1a2b&${UTM}`;
      expect(m).toMatchObject({
        id: outcome!.messageId,
        kind: 'marketing',
        trigger: 'abandoned_checkout',
        contactId: contact.id,
        toPhone: '+447400123456',
        idempotencyKey: `auto-${await automationId(s.id, 'abandoned_checkout')}-checkout-${token}`,
        body: `${shopLabel(shop)}: Hi Amelia, you left something in your cart. Complete your order here: ${url}\nReply STOP to unsubscribe`,
      });
      expect(await deliveryJobsFor(m!.id)).toHaveLength(1);
    });

    it('an order carrying the checkout token before the due evaluation cancels it: checkout_completed', async () => {
      const { shop, s, contact } = await shopWithSubscriber();
      const token = randomUUID().replace(/-/g, '');
      await deliver('checkouts/update', checkoutBody({ token }), shop);
      const id = await sys.queues.get('automations').getDeduplicationJobId(dedupeId(s.id, token));
      const job = await waitForJobState(sys.queues.get('automations'), id!, 'delayed');

      const order = await deliver('orders/create', orderBody({ checkoutToken: token, consent: 'not_subscribed' }), shop);
      expect(order.outcomes).toEqual([{ trigger: 'order_created', action: 'skipped', reason: 'disabled' }]);
      expect((await getCheckout(db(), s.id, token))?.completedAt).toBeInstanceOf(Date);

      await job.promote();
      const done = await waitForJobState(sys.queues.get('automations'), id!, 'completed', 15_000);
      expect(done.returnvalue).toEqual([{ trigger: 'abandoned_checkout', action: 'skipped', reason: 'checkout_completed' }]);
      expect((await messagesOf(s.id)).filter((m) => m.trigger === 'abandoned_checkout')).toHaveLength(0);
      const skips = await db()
        .select()
        .from(messageSkips)
        .where(and(eq(messageSkips.shopId, s.id), eq(messageSkips.reason, 'checkout_completed')));
      expect(skips).toEqual([expect.objectContaining({ contactId: contact.id, trigger: 'abandoned_checkout' })]);
    });

    it('a due evaluation more than 48 h after the abandonment is too_late', async () => {
      const { shop, s } = await shopWithSubscriber();
      const token = randomUUID().replace(/-/g, '');
      await deliver('checkouts/update', checkoutBody({ token, updatedAt: new Date(Date.now() - 49 * HOUR) }), shop);
      const id = await sys.queues.get('automations').getDeduplicationJobId(dedupeId(s.id, token));
      const job = await waitForJobState(sys.queues.get('automations'), id!, 'delayed');
      await job.promote();
      const done = await waitForJobState(sys.queues.get('automations'), id!, 'completed', 15_000);
      expect(done.returnvalue).toEqual([{ trigger: 'abandoned_checkout', action: 'skipped', reason: 'too_late', detail: expect.stringContaining('48h') }]);
      expect(await messagesOf(s.id)).toHaveLength(0);
      expect((await skipsOf(s.id)).map((k) => k.reason)).toEqual(['too_late']);
    });
  });
});
