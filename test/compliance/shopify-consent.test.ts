/**
 * Compliance — Shopify consent, every version (issue 11, item 1). Shopify reports SMS consent on
 * `customers_marketing_consent/update` (API 2025-01 removed it from customer payloads); older versions still embed
 * it. Shopify's published 2025-01 samples for every handled topic, signed as Shopify signs them, go through the real
 * intake and each leaves the shop, contact and consent it should.
 */
import fs from 'node:fs';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contacts, events } from '../../src/db/schema.js';
import { PRIVACY_TOPICS, SUBSCRIBED_TOPICS } from '../../src/shopify/topics.js';
import { validateWithShopifyLibrary } from '../helpers/shopifyLibrary.js';
import { SHOPIFY_SECRET } from '../helpers/system.js';
import { fixture, webhookRequest } from '../helpers/webhooks.js';
import { consentUpdate, newShop, nyPhone, paidOrder, startCompliance, type Compliance } from './harness.js';

let h: Compliance;
beforeAll(async () => {
  h = await startCompliance();
});
afterAll(async () => {
  await h?.close();
});

const contactOf = async (shop: string, customerId: number) => {
  const s = await h.shop(shop);
  const [c] = await h.sys.db.db.select().from(contacts).where(eq(contacts.shopifyCustomerId, String(customerId)));
  return c && c.shopId === s.id ? c : undefined;
};

describe('Shopify consent reaches the contact', () => {
  it('customers_marketing_consent/update subscribes (welcome sent) and unsubscribes (nothing more sent)', async () => {
    const shop = newShop('consent');
    const phone = nyPhone();
    const customerId = 91_000_001;
    // Welcome messages respect quiet hours: off for this shop, so the test does not depend on the hour.
    await h.webhook('orders/paid', paidOrder({ orderId: 5001, customerId, phone }), { shop });
    await h.api(shop, 'PATCH', '/api/settings', { quietHours: { enabled: false } });
    await h.settleMessages(phone);
    const confirmations = h.received(phone).length;
    expect(confirmations).toBe(1);
    expect((await contactOf(shop, customerId))?.smsConsent).toBe('not_subscribed');

    await h.webhook('customers_marketing_consent/update', consentUpdate({ customerId, phone, state: 'subscribed', at: '2026-01-05T10:00:00Z' }), { shop });
    await h.settleMessages(phone);
    expect(await contactOf(shop, customerId)).toMatchObject({ smsConsent: 'subscribed', smsConsentSource: 'shopify:customers_marketing_consent/update' });
    expect(h.received(phone).slice(confirmations).map((m) => m.text)).toEqual([expect.stringMatching(/^Welcome to /)]);

    await h.webhook('customers_marketing_consent/update', consentUpdate({ customerId, phone, state: 'unsubscribed', at: '2026-01-06T10:00:00Z' }), { shop });
    expect(await contactOf(shop, customerId)).toMatchObject({ smsConsent: 'unsubscribed' });
    await h.webhook('orders/paid', paidOrder({ orderId: 5002, customerId, phone }), { shop });
    await h.settleMessages(phone);
    // The unsubscribe stands for every message, the order confirmation included.
    expect(h.received(phone)).toHaveLength(confirmations + 1);
  });

  it('a 2025-01 customers/update (no consent field) leaves consent alone; an older version\'s embedded consent is still read', async () => {
    const shop = newShop('versions');
    const phone = nyPhone();
    const customerId = 91_000_002;
    await h.webhook('customers_marketing_consent/update', consentUpdate({ customerId, phone, state: 'subscribed', at: '2026-01-05T10:00:00Z' }), { shop });
    const current = { ...fixture('published/customers-update'), id: customerId, phone, first_name: 'Grace' };
    await h.webhook('customers/update', current, { shop, apiVersion: '2025-07' });
    expect(await contactOf(shop, customerId)).toMatchObject({ smsConsent: 'subscribed', firstName: 'Grace' });

    const legacy = {
      ...current,
      sms_marketing_consent: { state: 'unsubscribed', opt_in_level: 'single_opt_in', consent_updated_at: '2026-01-07T10:00:00Z', consent_collected_from: 'SHOPIFY' },
    };
    await h.webhook('customers/update', legacy, { shop, apiVersion: '2024-10' });
    expect(await contactOf(shop, customerId)).toMatchObject({ smsConsent: 'unsubscribed', smsConsentSource: 'shopify:customers/update' });
  });

  it('shop/update gives the shop its zone, name, country and currency', async () => {
    const shop = newShop('zone');
    await h.webhook('shop/update', { ...fixture('published/shop-update'), iana_timezone: 'America/Chicago' }, { shop });
    expect(await h.shop(shop)).toMatchObject({ timezone: 'America/Chicago', name: 'Super Toys', countryCode: 'US', currency: 'USD' });
    const settings = await h.api(shop, 'GET', '/api/settings');
    expect(settings.body).toMatchObject({ timezone: 'America/Chicago', name: 'Super Toys' });
  });
});

describe("Shopify's published 2025-01 samples through the real intake", () => {
  const dir = new URL('../fixtures/shopify/published/', import.meta.url);
  const file = (topic: string) => topic.replace('/', '-');
  const topics = [...SUBSCRIBED_TOPICS, ...PRIVACY_TOPICS];

  it('there is a published sample for every topic the app subscribes to', () => {
    for (const topic of topics) expect(fs.existsSync(new URL(`${file(topic)}.json`, dir)), topic).toBe(true);
  });

  it.each(topics)('%s: signed as Shopify signs it, accepted, and processed without failure', async (topic) => {
    const shop = newShop('sample');
    const raw = fs.readFileSync(new URL(`${file(topic)}.json`, dir));
    // The privacy samples name the shop with a placeholder; the body names the shop it is sent for.
    const text = raw.toString('utf8').replaceAll('{shop}.myshopify.com', shop);
    const body = Buffer.from(JSON.stringify(JSON.parse(text)));
    const req = webhookRequest({ topic, body, shop, headers: { 'x-shopify-api-version': '2025-01' } });
    // The reference library agrees the request is what Shopify sends.
    const verdict = await validateWithShopifyLibrary(body, SHOPIFY_SECRET, req.headers);
    expect(verdict.valid, JSON.stringify(verdict)).toBe(true);
    const res = await h.sys.app!.inject(req);
    expect(res.statusCode, res.body).toBe(200);
    const webhookId = req.headers['x-shopify-webhook-id']!;
    await expect
      .poll(async () => (await h.sys.db.db.select().from(events).where(eq(events.webhookId, webhookId)))[0]?.status, { timeout: 15_000, interval: 25 })
      .toMatch(/^(processed|ignored)$/);
  });

  it('the published consent sample (state null) changes no consent; the published order (no phone) texts nobody', async () => {
    const shop = newShop('sample-effects');
    const consent = fixture('published/customers_marketing_consent-update') as Record<string, any>;
    await h.webhook('customers_marketing_consent/update', consent, { shop });
    const customerId = consent.id as number;
    const stored = await contactOf(shop, customerId);
    expect(stored === undefined || stored.smsConsent === 'not_subscribed').toBe(true);
    const before = h.sys.sandbox!.stats().accepted;
    await h.webhook('orders/paid', fixture('published/orders-paid'), { shop });
    expect(h.sys.sandbox!.stats().accepted).toBe(before);
  });
});
