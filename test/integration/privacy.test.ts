/**
 * Shopify's privacy webhooks and app/uninstalled end to end on real Redis and a real database (PostgreSQL and PGlite):
 * signed webhooks through intake and the events worker, orders sent through automations and delivery to the bundled
 * sandbox, then the export, the erasure, the shop's deletion, and nothing sent after an uninstall until a reinstall.
 */
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ensureDefaultAutomations, getAutomationByTrigger, updateAutomation } from '../../src/db/automations.js';
import { getEvent } from '../../src/db/events.js';
import { listSkips } from '../../src/db/messages.js';
import { contacts, events, messages, privacyRequests, shops } from '../../src/db/schema.js';
import { getShopByDomain } from '../../src/db/shops.js';
import { jobIdFrom } from '../../src/queue/queues.js';
import { waitForJobState } from '../helpers/jobs.js';
import { seedMessage, uniquePhone, uniqueShop } from '../helpers/messages.js';
import { ADMIN_TOKEN, DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook } from '../helpers/webhooks.js';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
let orderSeq = 0;

describe.each(DB_KINDS)('privacy on %s', (kind) => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem(kind, {
      workers: ['events', 'automations', 'delivery'],
      listen: true,
      env: { SMS_PROVIDER: 'sandbox', HOUSEKEEPING_SCHEDULES: 'false' },
    });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  /** Posts a signed webhook and waits until the events worker has processed it. */
  async function deliver(topic: string, body: Record<string, unknown>, shop: string, headers: Record<string, string> = {}): Promise<string> {
    const webhookId = randomUUID();
    const res = await postWebhook(sys.app!, { topic, body, shop, webhookId, headers });
    expect(res.statusCode, res.body).toBe(200);
    await vi.waitFor(
      async () => {
        const e = await getEvent(sys.db.db, shop, webhookId);
        if (e?.status !== 'processed' && e?.status !== 'ignored') throw new Error(`event ${topic} is ${e?.status}`);
      },
      { timeout: 15_000, interval: 25 },
    );
    return webhookId;
  }

  /** orders-paid.json for a new order of `customerId`, with a phone of its own. */
  function order(customerId: number, phone: string, orderId = 5_900_000_000_000 + ++orderSeq) {
    const body = fixture('orders-paid') as Record<string, any>;
    body.id = orderId;
    body.admin_graphql_api_id = `gid://shopify/Order/${orderId}`;
    body.customer.id = customerId;
    body.customer.phone = phone;
    body.customer.email = `c${customerId}@example.com`;
    body.email = body.customer.email;
    return body;
  }

  async function sentMessages(shopDomain: string, n = 1) {
    return vi.waitFor(
      async () => {
        const shop = await getShopByDomain(sys.db.db, shopDomain);
        const rows = shop ? await sys.db.db.select().from(messages).where(eq(messages.shopId, shop.id)) : [];
        // Order confirmations only: a new subscriber's welcome may be held by quiet hours, depending on the hour.
        const sent = rows.filter((m) => m.trigger === 'order_paid' && (m.status === 'sent' || m.status === 'delivered'));
        if (sent.length < n) throw new Error(`${sent.length} of ${n} messages sent for ${shopDomain}`);
        return sent;
      },
      { timeout: 15_000, interval: 25 },
    );
  }

  const requestsOf = async (shop: string) => {
    const res = await sys.app!.inject({ method: 'GET', url: `/admin/privacy/requests?shop=${shop}`, headers: auth });
    expect(res.statusCode).toBe(200);
    return res.json().items as Array<Record<string, any>>;
  };

  it('customers/data_request exports everything stored about the customer for an operator to retrieve', async () => {
    const shop = uniqueShop('export');
    const phone = uniquePhone();
    const body = order(7234567890123, phone);
    await deliver('orders/paid', body, shop);
    const [message] = await sentMessages(shop);

    await deliver('customers/data_request', { ...fixture('customers-data_request'), shop_domain: shop, customer: { id: 7234567890123, email: body.email, phone } }, shop);
    const [item, ...more] = await requestsOf(shop);
    expect(more).toHaveLength(0);
    expect(item).toMatchObject({ topic: 'customers/data_request', shopifyCustomerId: '7234567890123', status: 'completed', hasExport: true });
    expect(item!.rowCounts.contacts).toBe(1);
    expect(item!.rowCounts.messages).toBeGreaterThanOrEqual(1);
    expect(item!.rowCounts.consentChanges).toBeGreaterThanOrEqual(1);
    expect(item).not.toHaveProperty('export');

    const res = await sys.app!.inject({ method: 'GET', url: `/admin/privacy/requests/${item!.id}`, headers: auth });
    expect(res.statusCode).toBe(200);
    const { export: exported } = res.json();
    expect(exported).toMatchObject({ shopDomain: shop, shopifyCustomerId: '7234567890123', dataRequestId: '9912345' });
    expect(exported.contacts).toEqual([expect.objectContaining({ phone, email: body.email, first_name: 'Jane', shopify_customer_id: '7234567890123' })]);
    expect(exported.messages).toContainEqual(expect.objectContaining({ id: message!.id, body: message!.body, to_phone: phone }));
    expect(exported.consentChanges[0]).toMatchObject({ new_state: 'subscribed' });

    expect((await sys.app!.inject({ method: 'GET', url: `/admin/privacy/requests/${item!.id}` })).statusCode).toBe(401);
    expect((await sys.app!.inject({ method: 'GET', url: `/admin/privacy/requests/999999999`, headers: auth })).json().error.code).toBe('NOT_FOUND');
  });

  it('customers/redact erases the customer personal data, keeps anonymous counts, and clears payloads, exports and jobs about them', async () => {
    const shop = uniqueShop('redact');
    const phone = uniquePhone();
    const customerId = 7234567893456;
    const body = order(customerId, phone, 5812345680001);
    const orderWebhook = await deliver('orders/paid', body, shop);
    const other = order(1111, uniquePhone());
    await deliver('orders/paid', other, shop);
    const [sent] = await sentMessages(shop, 2).then((rows) => rows.filter((m) => m.toPhone === phone));
    await deliver('customers/data_request', { ...fixture('customers-data_request'), shop_domain: shop, customer: { id: customerId, email: body.email, phone } }, shop);
    expect(await sys.queues.get('events').getJob(jobIdFrom('wh', shop, orderWebhook))).toBeDefined();

    const redactHook = await deliver('customers/redact', { ...fixture('customers-redact'), shop_domain: shop, customer: { id: customerId, email: body.email, phone } }, shop);

    const [shopRow] = await sys.db.db.select().from(shops).where(eq(shops.domain, shop));
    const rows = await sys.db.db.select().from(contacts).where(eq(contacts.shopId, shopRow!.id));
    const redacted = rows.find((c) => c.shopifyCustomerId === null)!;
    expect(redacted).toMatchObject({ phone: null, email: null, firstName: null, lastName: null, tags: [], smsConsent: 'redacted' });
    expect(rows.find((c) => c.shopifyCustomerId === '1111')).toMatchObject({ phone: other.customer.phone, smsConsent: 'subscribed' });
    // The message row stays (counts, delivery rate), without its text or number.
    const [msg] = await sys.db.db.select().from(messages).where(eq(messages.id, sent!.id));
    expect(msg).toMatchObject({ body: null, toPhone: null, contactId: redacted.id });
    expect(['sent', 'delivered']).toContain(msg!.status);
    for (const m of await sys.db.db.select().from(messages).where(eq(messages.contactId, redacted.id))) expect(m).toMatchObject({ body: null, toPhone: null });
    expect((await getEvent(sys.db.db, shop, orderWebhook))?.payload).toBeNull();
    expect((await getEvent(sys.db.db, shop, redactHook))?.payload).toBeNull();
    expect(await sys.queues.get('events').getJob(jobIdFrom('wh', shop, orderWebhook))).toBeUndefined();

    const items = await requestsOf(shop);
    const redact = items.find((i) => i.topic === 'customers/redact')!;
    expect(redact.rowCounts.contacts).toBe(1);
    expect(redact.rowCounts.messages).toBeGreaterThanOrEqual(1);
    expect(redact.rowCounts.events).toBeGreaterThanOrEqual(3);
    expect(redact.rowCounts.exports).toBe(1);
    expect(items.find((i) => i.topic === 'customers/data_request')).toMatchObject({ hasExport: false });
    const stored = JSON.stringify(await sys.db.query(`SELECT * FROM events WHERE shop_domain = $1`, [shop]));
    expect(stored).not.toContain(phone);
    expect(stored).not.toContain(body.email);
  });

  it('shop/redact deletes all of the shop data and records what went', async () => {
    const shop = uniqueShop('gone');
    const keep = uniqueShop('stays');
    await deliver('orders/paid', order(42, uniquePhone()), shop);
    await deliver('orders/paid', order(43, uniquePhone()), keep);
    await sentMessages(shop);
    await sentMessages(keep);

    const hook = await deliver('shop/redact', { ...fixture('shop-redact'), shop_domain: shop }, shop);
    expect(await getShopByDomain(sys.db.db, shop)).toBeUndefined();
    expect((await sys.db.db.select().from(events).where(eq(events.shopDomain, shop))).map((e) => e.webhookId)).toEqual([hook]);
    const [record] = await sys.db.db.select().from(privacyRequests).where(eq(privacyRequests.shopDomain, shop));
    expect(record).toMatchObject({ topic: 'shop/redact', status: 'completed', webhookId: hook });
    expect(record!.rowCounts).toMatchObject({ shops: 1, contacts: 1, automations: 5 });
    expect(record!.rowCounts.messages).toBeGreaterThanOrEqual(1);
    expect(record!.rowCounts.events).toBeGreaterThanOrEqual(1);
    // Nothing of it left in the queues either; the other shop is untouched.
    const leftovers = (await sys.queues.get('events').getJobs(['completed', 'failed', 'waiting', 'delayed']))
      // The shop/redact job itself was running; its payload is the shop's id and domain only.
      .filter((j) => j.data?.shopId === shop && j.data?.webhookId !== hook);
    expect(leftovers).toEqual([]);
    expect(await getShopByDomain(sys.db.db, keep)).toBeDefined();
    expect(await sentMessages(keep)).toHaveLength(1);
  });

  it('app/uninstalled cancels pending work, and nothing is sent for the shop until it is installed again', async () => {
    const shop = uniqueShop('uninstall');
    // Pending work: a message whose delivery is an hour away, and an abandoned-checkout evaluation waiting its delay.
    const queued = await seedMessage(sys.db.db, { shop });
    await sys.queues.enqueueJob('delivery', 'send', { shopId: shop, messageId: queued.message.id }, { jobId: jobIdFrom('msg', queued.message.id), delay: 3_600_000 });
    const checkout = fixture('checkouts-update-abandoned') as Record<string, any>;
    checkout.token = randomUUID().replace(/-/g, '');
    checkout.updated_at = new Date().toISOString();
    checkout.customer.sms_marketing_consent = { ...checkout.customer.sms_marketing_consent, state: 'subscribed' };
    // No welcome for the new subscriber: whether it would be held by quiet hours depends on the hour of the run.
    await ensureDefaultAutomations(sys.db.db, queued.shop.id);
    const welcome = (await getAutomationByTrigger(sys.db.db, queued.shop.id, 'welcome'))!;
    await updateAutomation(sys.db.db, queued.shop.id, welcome.id, { enabled: false });
    const checkoutHook = await deliver('checkouts/update', checkout, shop);
    const automations = sys.queues.get('automations');
    await waitForJobState(automations, jobIdFrom('evt', checkoutHook), 'completed', 15_000);
    expect((await automations.getDelayed()).filter((j) => j.data.shopId === shop)).toHaveLength(1);

    const uninstalledAt = new Date();
    await deliver('app/uninstalled', fixture('app-uninstalled'), shop, { 'x-shopify-triggered-at': uninstalledAt.toISOString() });
    expect((await getShopByDomain(sys.db.db, shop))?.uninstalledAt).toEqual(uninstalledAt);
    expect((await automations.getDelayed()).filter((j) => j.data.shopId === shop)).toEqual([]);
    expect(await sys.queues.get('delivery').getJob(jobIdFrom('msg', queued.message.id))).toBeUndefined();
    const [q] = await sys.db.db.select().from(messages).where(eq(messages.id, queued.message.id));
    expect(q).toMatchObject({ status: 'cancelled', errorCode: 'shop_uninstalled' });
    const [record] = await sys.db.db.select().from(privacyRequests).where(eq(privacyRequests.shopDomain, shop));
    expect(record).toMatchObject({ topic: 'app/uninstalled' });
    expect(record!.rowCounts).toMatchObject({ messagesCancelled: 1, jobs_automations: 1, jobs_delivery: 1 });

    // Shopify retrying an order from before the uninstall: taken in, nothing sent.
    const late = order(77, uniquePhone());
    await deliver('orders/paid', late, shop, { 'x-shopify-triggered-at': new Date(uninstalledAt.getTime() - 60_000).toISOString() });
    const shopRow = (await getShopByDomain(sys.db.db, shop))!;
    expect(shopRow.uninstalledAt).not.toBeNull();
    await vi.waitFor(async () => expect((await listSkips(sys.db.db, shopRow.id)).map((s) => s.reason)).toContain('shop_uninstalled'), { timeout: 10_000 });
    const afterUninstall = await sys.db.db.select().from(messages).where(eq(messages.shopId, shopRow.id));
    expect(afterUninstall.filter((m) => m.createdAt.getTime() >= uninstalledAt.getTime() && m.status !== 'cancelled')).toEqual([]);
    expect(afterUninstall.filter((m) => m.status === 'queued')).toEqual([]);
    expect(sys.sandbox!.messages().filter((m) => m.to === late.customer.phone)).toEqual([]);

    // An order placed after the uninstall can only come from an installed app: installed again, and it is sent.
    const again = order(78, uniquePhone());
    await deliver('orders/paid', again, shop);
    expect((await getShopByDomain(sys.db.db, shop))?.uninstalledAt).toBeNull();
    const sent = await sentMessages(shop);
    expect(sent.map((m) => m.toPhone)).toEqual([again.customer.phone]);
  });
});
