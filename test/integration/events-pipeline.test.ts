/**
 * The whole `events` path on real Redis and a real database (PostgreSQL and PGlite): a signed webhook through
 * `app.inject()`, the `events` worker, the shop and contact upserts, consent history, and the forward to `automations`.
 * Waits on BullMQ's QueueEvents and on database state, never on fixed sleeps.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { QueueEvents, type Job, type JobType } from 'bullmq';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listConsentChanges } from '../../src/db/contacts.js';
import { getEvent } from '../../src/db/events.js';
import { contacts, deadLetters, shops } from '../../src/db/schema.js';
import { getShopByDomain } from '../../src/db/shops.js';
import { createLogger } from '../../src/logger.js';
import { processEvent } from '../../src/events/process.js';
import { jobIdFrom, parseJobData, QueueRegistry } from '../../src/queue/queues.js';
import { getRedisConnection } from '../../src/queue/redis.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook } from '../helpers/webhooks.js';

const ALL_STATES: JobType[] = ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed', 'waiting-children'];
const silent = createLogger({ level: 'silent' });

let shopSeq = 0;
const newShop = () => `pipeline-${Date.now().toString(36)}-${++shopSeq}.myshopify.com`;

describe.each(DB_KINDS)('events pipeline on %s', (kind) => {
  let sys: TestSystem;
  let queueEvents: QueueEvents;

  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: ['events'] });
    const url = new URL(sys.config.redis.url);
    queueEvents = new QueueEvents('events', { connection: { host: url.hostname, port: Number(url.port || 6379) }, prefix: sys.config.redis.prefix });
    await queueEvents.waitUntilReady();
  });
  afterAll(async () => {
    await queueEvents?.close();
    await sys?.teardown();
  });

  /** Posts a signed webhook and waits until its `events` job has finished (or failed). */
  async function deliver(topic: string, body: Record<string, unknown>, opts: { shop?: string; headers?: Record<string, string> } = {}) {
    const shop = opts.shop ?? newShop();
    const webhookId = randomUUID();
    const res = await postWebhook(sys.app!, { topic, body, shop, webhookId, headers: opts.headers });
    expect(res.statusCode, res.body).toBe(200);
    const requestId = (res.json() as { requestId: string }).requestId;
    const job = await sys.queues.get('events').getJob(jobIdFrom('wh', shop, webhookId));
    expect(job, 'events job').toBeDefined();
    const settled = await job!.waitUntilFinished(queueEvents, 15_000).then(
      (value: unknown) => ({ ok: true as const, value }),
      (error: Error) => ({ ok: false as const, error }),
    );
    return { shop, webhookId, requestId, job: job!, settled };
  }

  async function automationsJobsFor(webhookId: string): Promise<Job[]> {
    const jobs = await sys.queues.get('automations').getJobs(ALL_STATES);
    return jobs.filter((j) => j?.data?.originalEvent?.webhookId === webhookId);
  }

  async function contactsOf(shop: string) {
    const s = await getShopByDomain(sys.db.db, shop);
    if (!s) return [];
    return sys.db.db.select().from(contacts).where(eq(contacts.shopId, s.id));
  }

  it('orders/paid: event processed, shop and contact stored, consent recorded, one evaluate job with the request id and no raw PII', async () => {
    const body = fixture('orders-paid');
    const { shop, webhookId, requestId, settled } = await deliver('orders/paid', body);
    expect(settled).toEqual({ ok: true, value: expect.objectContaining({ outcome: 'forwarded' }) });

    const event = await getEvent(sys.db.db, shop, webhookId);
    expect(event).toMatchObject({ status: 'processed', outcome: 'forwarded', error: null });
    expect(event!.processedAt).toBeInstanceOf(Date);

    const shopRow = await getShopByDomain(sys.db.db, shop);
    expect(shopRow).toMatchObject({ domain: shop, uninstalledAt: null });

    const [contact, ...others] = await contactsOf(shop);
    expect(others).toHaveLength(0);
    expect(contact).toMatchObject({
      shopifyCustomerId: '7234567890123',
      phone: '+12015550123',
      firstName: 'Jane',
      lastName: 'Doe',
      email: 'jane.doe@example.com',
      countryCode: 'US',
      provinceCode: 'NJ',
      tags: ['VIP', 'newsletter'],
      smsConsent: 'subscribed',
      smsConsentOptInLevel: 'single_opt_in',
      smsConsentSource: 'shopify:orders/paid',
      optedOutAt: null,
    });
    expect(contact!.smsConsentUpdatedAt?.toISOString()).toBe(new Date('2024-05-14T10:20:58-04:00').toISOString());
    const changes = await listConsentChanges(sys.db.db, contact!.id);
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ previousState: null, newState: 'subscribed', source: 'shopify:orders/paid', requestId });

    const jobs = await automationsJobsFor(webhookId);
    expect(jobs).toHaveLength(1);
    const evaluate = jobs[0]!;
    expect(evaluate.name).toBe('evaluate');
    expect(evaluate.id).toBe(jobIdFrom('evt', webhookId));
    expect(evaluate.data).toMatchObject({
      trigger: 'orders/paid',
      shopId: shop,
      requestId,
      originalEvent: { topic: 'orders/paid', webhookId, objectId: '5812345678901' },
      enqueuedAt: expect.any(String),
    });
    const context = evaluate.data.context;
    expect(context).toMatchObject({
      kind: 'order',
      topic: 'orders/paid',
      shopId: shop,
      objectId: '5812345678901',
      contactId: contact!.id,
      consentChange: { from: 'not_subscribed', to: 'subscribed' },
      order: { id: '5812345678901', name: '#1042', number: 1042, totalPrice: '79.43', currency: 'USD', statusUrl: body.order_status_url },
      customer: { shopifyId: '7234567890123', firstName: 'Jane', phone: null, email: null },
    });
    const serialised = JSON.stringify(evaluate.data);
    for (const pii of ['jane.doe@example.com', '555-0123', '5550123', '555-0147', '123 Example Street']) {
      expect(serialised).not.toContain(pii);
    }
  });

  it('carries a caller-given X-Request-Id from the webhook to the evaluate job', async () => {
    const requestId = `trace-${randomUUID()}`;
    const { webhookId, settled } = await deliver('orders/paid', fixture('orders-paid'), { headers: { 'x-request-id': requestId } });
    expect(settled.ok).toBe(true);
    const [evaluate] = await automationsJobsFor(webhookId);
    expect(evaluate?.data.requestId).toBe(requestId);
  });

  it('customers/update: syncs the contact and forwards nothing', async () => {
    const { shop, webhookId, settled } = await deliver('customers/update', fixture('customers-update'));
    expect(settled).toEqual({ ok: true, value: expect.objectContaining({ outcome: 'synced' }) });
    expect(await getEvent(sys.db.db, shop, webhookId)).toMatchObject({ status: 'processed', outcome: 'synced' });
    const [contact] = await contactsOf(shop);
    expect(contact).toMatchObject({
      shopifyCustomerId: '7234567893456',
      phone: '+14155552671',
      email: 'noah.williams@example.com',
      tags: ['wholesale', 'repeat-buyer', 'sms-club'],
      smsConsent: 'unsubscribed',
    });
    expect(contact!.optedOutAt?.toISOString()).toBe(new Date('2024-09-10T08:44:18-04:00').toISOString());
    expect(await automationsJobsFor(webhookId)).toHaveLength(0);
    expect(await sys.queues.get('automations').getJob(jobIdFrom('evt', webhookId))).toBeUndefined();
  });

  it('customers_marketing_consent/update turning subscribed: forwarded with the consent change', async () => {
    const { shop, webhookId, requestId, settled } = await deliver('customers_marketing_consent/update', fixture('customers-marketing_consent_update'));
    expect(settled).toEqual({ ok: true, value: expect.objectContaining({ outcome: 'forwarded' }) });
    expect(await getEvent(sys.db.db, shop, webhookId)).toMatchObject({ status: 'processed', outcome: 'forwarded' });
    const [contact] = await contactsOf(shop);
    expect(contact).toMatchObject({ shopifyCustomerId: '7234567894567', phone: '+33612345678', smsConsent: 'subscribed', smsConsentOptInLevel: 'confirmed_opt_in' });
    const jobs = await automationsJobsFor(webhookId);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.data).toMatchObject({
      trigger: 'customers_marketing_consent/update',
      shopId: shop,
      requestId,
      context: { kind: 'customer', consentChange: { from: 'not_subscribed', to: 'subscribed' }, customer: { phone: null } },
    });
    expect(JSON.stringify(jobs[0]!.data)).not.toContain('612345678');
  });

  it('customers_marketing_consent/update that changes nothing is not forwarded again', async () => {
    const shop = newShop();
    const first = await deliver('customers_marketing_consent/update', fixture('customers-marketing_consent_update'), { shop });
    expect(first.settled.ok).toBe(true);
    const again = await deliver('customers_marketing_consent/update', fixture('customers-marketing_consent_update'), { shop });
    expect(again.settled).toEqual({ ok: true, value: expect.objectContaining({ outcome: 'synced' }) });
    expect(await automationsJobsFor(again.webhookId)).toHaveLength(0);
  });

  it('an unknown topic is stored and marked ignored', async () => {
    const { shop, webhookId, settled } = await deliver('products/update', { id: 8812345678901, title: 'Lavender Candle' });
    expect(settled).toEqual({ ok: true, value: expect.objectContaining({ outcome: 'ignored' }) });
    const event = await getEvent(sys.db.db, shop, webhookId);
    expect(event).toMatchObject({ status: 'ignored', outcome: 'ignored', topic: 'products/update', objectId: '8812345678901' });
    expect(event!.payload).toMatchObject({ title: 'Lavender Candle' });
    expect(await automationsJobsFor(webhookId)).toHaveLength(0);
    expect(await contactsOf(shop)).toHaveLength(0);
  });

  it('app/uninstalled marks a known shop uninstalled', async () => {
    const shop = newShop();
    expect((await deliver('customers/update', fixture('customers-update'), { shop })).settled.ok).toBe(true);
    expect((await getShopByDomain(sys.db.db, shop))?.uninstalledAt).toBeNull();
    const { webhookId, settled } = await deliver('app/uninstalled', fixture('app-uninstalled'), { shop });
    expect(settled).toEqual({ ok: true, value: { outcome: 'shop_uninstalled' } });
    expect((await getShopByDomain(sys.db.db, shop))?.uninstalledAt).toBeInstanceOf(Date);
    expect(await getEvent(sys.db.db, shop, webhookId)).toMatchObject({ status: 'processed', outcome: 'shop_uninstalled' });
  });

  it('app/uninstalled for a shop never seen before still records the uninstall', async () => {
    const { shop, settled } = await deliver('app/uninstalled', fixture('app-uninstalled'));
    expect(settled.ok).toBe(true);
    const [row] = await sys.db.db.select().from(shops).where(eq(shops.domain, shop));
    expect(row?.uninstalledAt).toBeInstanceOf(Date);
  });

  it.each([
    ['customers/redact', 'customers-redact'],
    ['customers/data_request', 'customers-data_request'],
    ['shop/redact', 'shop-redact'],
  ])('%s is recorded and not forwarded', async (topic, name) => {
    // The signed body names the shop it is about; intake refuses one that names another shop than the header.
    const named = newShop();
    const { shop, webhookId, settled } = await deliver(topic, { ...fixture(name), shop_domain: named }, { shop: named });
    expect(settled).toEqual({ ok: true, value: { outcome: 'privacy_recorded' } });
    expect(await getEvent(sys.db.db, shop, webhookId)).toMatchObject({ status: 'processed', outcome: 'privacy_recorded' });
    expect(await automationsJobsFor(webhookId)).toHaveLength(0);
  });

  it('an invalid phone leaves the contact without a phone and the event still processes', async () => {
    const body = { ...fixture('customers-update'), phone: '12' };
    const { shop, webhookId, settled } = await deliver('customers/update', body);
    expect(settled.ok).toBe(true);
    expect(await getEvent(sys.db.db, shop, webhookId)).toMatchObject({ status: 'processed' });
    const [contact, ...others] = await contactsOf(shop);
    expect(others).toHaveLength(0);
    expect(contact).toMatchObject({ shopifyCustomerId: '7234567893456', phone: null, email: 'noah.williams@example.com' });
  });

  it('running processEvent twice on the same data forwards once', async () => {
    const shop = newShop();
    const webhookId = randomUUID();
    const data = parseJobData('events', 'orders/paid', {
      topic: 'orders/paid',
      shopId: shop,
      objectId: '5812345678901',
      raw: fixture('orders-paid'),
      webhookId,
      requestId: `req_${Date.now()}_twice`,
      enqueuedAt: new Date().toISOString(),
    });
    const deps = { db: sys.db.db, queues: sys.queues, logger: silent };
    const first = await processEvent(data, deps, 'job-1');
    const second = await processEvent(data, deps, 'job-1');
    expect(first).toMatchObject({ outcome: 'forwarded' });
    expect(second).toMatchObject({ outcome: 'forwarded' });
    expect(first.outcome === 'forwarded' && second.outcome === 'forwarded' && first.automationsJobId === second.automationsJobId).toBe(true);
    expect(await automationsJobsFor(webhookId)).toHaveLength(1);
    expect(await contactsOf(shop)).toHaveLength(1);
    const [contact] = await contactsOf(shop);
    expect(await listConsentChanges(sys.db.db, contact!.id)).toHaveLength(1);
  });

  it('a retry after the forward failed still forwards an opt-in the first run already stored', async () => {
    const shop = newShop();
    const webhookId = randomUUID();
    const data = parseJobData('events', 'customers_marketing_consent/update', {
      topic: 'customers_marketing_consent/update',
      shopId: shop,
      objectId: '7234567894567',
      raw: fixture('customers-marketing_consent_update'),
      webhookId,
      requestId: `req_${Date.now()}_retry`,
      enqueuedAt: new Date().toISOString(),
    });

    // First attempt: the database work succeeds, then Redis is gone when the forward is enqueued.
    const deadConnection = getRedisConnection({ url: sys.config.redis.url }, 'producer');
    deadConnection.on('error', () => undefined);
    await once(deadConnection, 'ready');
    const deadQueues = new QueueRegistry({ connection: deadConnection, prefix: sys.config.redis.prefix, logger: silent });
    const ended = once(deadConnection, 'end');
    deadConnection.disconnect();
    await ended;
    try {
      await expect(processEvent(data, { db: sys.db.db, queues: deadQueues, logger: silent }, 'job-r')).rejects.toThrow();
    } finally {
      await deadQueues.close();
    }
    const [stored] = await contactsOf(shop);
    expect(stored?.smsConsent).toBe('subscribed');
    expect(await automationsJobsFor(webhookId)).toHaveLength(0);

    // The retry: the contact is already subscribed, yet the opt-in must still reach automations, once.
    const retry = await processEvent(data, { db: sys.db.db, queues: sys.queues, logger: silent }, 'job-r');
    expect(retry).toMatchObject({ outcome: 'forwarded' });
    const jobs = await automationsJobsFor(webhookId);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.data.context).toMatchObject({ consentChange: { from: 'not_subscribed', to: 'subscribed' } });
    expect(await processEvent(data, { db: sys.db.db, queues: sys.queues, logger: silent }, 'job-r')).toMatchObject({ outcome: 'forwarded' });
    expect(await automationsJobsFor(webhookId)).toHaveLength(1);
  });

  it('a payload without its order id fails permanently after one attempt and is dead-lettered', async () => {
    const { id: _id, ...withoutId } = fixture('orders-paid');
    const { shop, webhookId, requestId, job, settled } = await deliver('orders/paid', withoutId);
    expect(settled.ok).toBe(false);
    const failed = await sys.queues.get('events').getJob(job.id!);
    expect(await failed!.getState()).toBe('failed');
    expect(failed!.attemptsMade).toBe(1);
    expect(failed!.failedReason).toContain('INVALID_PAYLOAD');

    const [letter, ...more] = await sys.db.db
      .select()
      .from(deadLetters)
      .where(and(eq(deadLetters.queue, 'events'), eq(deadLetters.jobId, job.id!)));
    expect(more).toHaveLength(0);
    expect(letter).toMatchObject({ jobName: 'orders/paid', errorCode: 'INVALID_PAYLOAD', shopId: shop, requestId, attemptsMade: 1 });
    expect(letter!.errorMessage).toContain('id');

    expect(await getEvent(sys.db.db, shop, webhookId)).toMatchObject({ status: 'failed', error: expect.stringContaining('INVALID_PAYLOAD') });
    expect(await automationsJobsFor(webhookId)).toHaveLength(0);
  });
});
