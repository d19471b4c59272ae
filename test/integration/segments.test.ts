/**
 * Segments on real databases (PostgreSQL and PGlite): every operator of the compiled filter selects exactly the right
 * contacts; preview and estimate over the HTTP API; order statistics maintained from order webhooks, once per order.
 */
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { SegmentFilter } from '../../src/campaigns/segments.js';
import { upsertContact } from '../../src/db/contacts.js';
import { contacts, type Shop } from '../../src/db/schema.js';
import { countAudience, recordContactOrder, sampleAudience } from '../../src/db/segments.js';
import { upsertShop } from '../../src/db/shops.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook } from '../helpers/webhooks.js';
import { uniquePhone, uniqueShop } from '../helpers/messages.js';

const DAY = 86_400_000;

interface Seed {
  name: string;
  consent?: 'subscribed' | 'not_subscribed' | 'unsubscribed' | 'pending';
  tags?: string[];
  country?: string;
  phone?: boolean;
  createdDaysAgo?: number;
  orders?: Array<{ daysAgo: number; total: number }>;
}

const PEOPLE: Seed[] = [
  { name: 'ann', consent: 'subscribed', tags: ['vip', 'sale'], country: 'CH', orders: [{ daysAgo: 5, total: 120 }, { daysAgo: 40, total: 30 }] },
  { name: 'bob', consent: 'subscribed', tags: ['sale'], country: 'DE', orders: [{ daysAgo: 200, total: 15 }] },
  { name: 'cat', consent: 'not_subscribed', tags: ['vip'], country: 'CH', createdDaysAgo: 100 },
  { name: 'dan', consent: 'unsubscribed', tags: [], country: 'AT', orders: [{ daysAgo: 1, total: 500 }] },
  { name: 'eve', consent: 'pending', tags: ['vip', 'new'], country: 'de', phone: false },
];

describe.each(DB_KINDS)('segments on %s', (kind) => {
  let sys: TestSystem;
  let shop: Shop;
  const ids = new Map<string, number>();
  const now = new Date();
  const select = async (filter: SegmentFilter) => {
    const rows = await sampleAudience(sys.db.db, { shopId: shop.id, filter, now }, 100);
    const count = await countAudience(sys.db.db, { shopId: shop.id, filter, now });
    const names = rows.map((r) => [...ids].find(([, id]) => id === r.id)?.[0]).sort();
    expect(count).toBe(names.length);
    return names;
  };

  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: ['events'], env: { SHOPIFY_API_KEY } });
    shop = (await upsertShop(sys.db.db, uniqueShop('seg'))).shop;
    // Another shop's contact matches everything and must never be selected.
    const other = (await upsertShop(sys.db.db, uniqueShop('other'))).shop;
    await upsertContact(sys.db.db, other.id, {
      shopifyCustomerId: null, phone: uniquePhone(), firstName: 'Zed', lastName: null, email: null, tags: ['vip', 'sale'],
      countryCode: 'CH', provinceCode: null, consent: { state: 'subscribed', optInLevel: null, updatedAt: new Date(), source: 'test', origin: 'shopify' },
    });
    for (const p of PEOPLE) {
      const r = await upsertContact(sys.db.db, shop.id, {
        shopifyCustomerId: `cust-${p.name}`,
        phone: p.phone === false ? null : uniquePhone(),
        firstName: p.name,
        lastName: null,
        email: null,
        tags: p.tags ?? [],
        countryCode: p.country ?? null,
        provinceCode: null,
        consent: p.consent ? { state: p.consent, optInLevel: null, updatedAt: new Date(), source: 'test', origin: 'shopify' } : null,
      });
      const id = r!.contact.id;
      ids.set(p.name, id);
      if (p.createdDaysAgo) await sys.db.db.update(contacts).set({ createdAt: new Date(now.getTime() - p.createdDaysAgo * DAY) }).where(eq(contacts.id, id));
      for (const [i, o] of (p.orders ?? []).entries()) {
        await recordContactOrder(sys.db.db, shop.id, id, { orderId: `${p.name}-${i}`, total: o.total, orderedAt: new Date(now.getTime() - o.daysAgo * DAY) });
      }
    }
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  it('consent', async () => {
    expect(await select({ consent: 'subscribed' })).toEqual(['ann', 'bob']);
    expect(await select({ consent: ['pending', 'unsubscribed'] })).toEqual(['dan', 'eve']);
  });

  it('tags any / all', async () => {
    expect(await select({ tags: { any: ['sale', 'new'] } })).toEqual(['ann', 'bob', 'eve']);
    expect(await select({ tags: { all: ['vip', 'sale'] } })).toEqual(['ann']);
  });

  it('country (case-insensitive)', async () => {
    expect(await select({ country: 'ch' })).toEqual(['ann', 'cat']);
    expect(await select({ country: ['DE', 'AT'] })).toEqual(['bob', 'dan', 'eve']);
  });

  it('created within', async () => {
    expect(await select({ createdWithin: { days: 30 } })).toEqual(['ann', 'bob', 'dan', 'eve']);
  });

  it('last order within N days, orders count, total spent', async () => {
    expect(await select({ lastOrderWithin: { days: 7 } })).toEqual(['ann', 'dan']);
    expect(await select({ ordersCount: { gte: 2 } })).toEqual(['ann']);
    expect(await select({ ordersCount: { eq: 0 } })).toEqual(['cat', 'eve']);
    expect(await select({ totalSpent: { gt: 100, lt: 200 } })).toEqual(['ann']);
    expect(await select({ totalSpent: { lte: 15 } })).toEqual(['bob', 'cat', 'eve']);
  });

  it('has phone', async () => {
    expect(await select({ hasPhone: false })).toEqual(['eve']);
  });

  it('and / or / not', async () => {
    expect(await select({ and: [{ tags: { any: ['vip'] } }, { not: { consent: 'subscribed' } }] })).toEqual(['cat', 'eve']);
    expect(await select({ or: [{ country: 'AT' }, { and: [{ consent: 'subscribed' }, { lastOrderWithin: { days: 30 } }] }] })).toEqual(['ann', 'dan']);
    // NOT of a NULL comparison (no last order) counts as "not matched", so the contact is selected.
    expect(await select({ not: { lastOrderWithin: { days: 30 } } })).toEqual(['bob', 'cat', 'eve']);
    expect(await select({ and: [] })).toEqual(['ann', 'bob', 'cat', 'dan', 'eve']);
    expect(await select({ or: [] })).toEqual([]);
  });

  it('saves segments, previews and estimates them over the API (no phone numbers in the answer)', async () => {
    const auth = await merchantHeaders(shop.domain);
    const created = await sys.app!.inject({ method: 'POST', url: '/api/segments', headers: auth, payload: { name: 'VIPs', filter: { tags: { any: ['vip'] } } } });
    expect(created.statusCode, created.body).toBe(201);
    const seg = created.json();
    const preview = await sys.app!.inject({ method: 'GET', url: `/api/segments/${seg.id}/preview`, headers: auth });
    expect(preview.json().count).toBe(3);
    expect(preview.body).not.toContain('+41');
    const estimate = await sys.app!.inject({
      method: 'POST', url: '/api/segments/estimate', headers: auth,
      payload: { segmentId: seg.id, body: 'Hi {{ customer.firstName }}, 20% off with {{ discountCode }}' },
    });
    expect(estimate.statusCode, estimate.body).toBe(200);
    // Only ann of the three VIPs is subscribed: cat is not, eve is pending and has no phone.
    expect(estimate.json()).toMatchObject({ matching: 3, recipients: 1, messages: 1, partsPerMessage: 1, parts: 1, encoding: 'GSM-7' });
    expect(estimate.json().cost).toBeCloseTo(0.03);

    const bad = await sys.app!.inject({ method: 'POST', url: '/api/segments/preview', headers: auth, payload: { filter: { colour: 'red' } } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('SEGMENT_INVALID');
    const listed = await sys.app!.inject({ method: 'GET', url: '/api/segments', headers: auth });
    expect(listed.json().items.map((s: { id: number }) => s.id)).toEqual([seg.id]);
    const noAuth = await sys.app!.inject({ method: 'GET', url: '/api/segments' });
    expect(noAuth.statusCode).toBe(401);
  });

  it('keeps order statistics from order webhooks, counting each order once', async () => {
    const domain = uniqueShop('orders');
    const body = fixture('orders-paid') as Record<string, any>;
    body.customer.id = 99_000_000 + Math.floor(Math.random() * 1_000_000);
    body.created_at = new Date(now.getTime() - 2 * DAY).toISOString();
    for (const topic of ['orders/create', 'orders/paid', 'orders/paid']) {
      const res = await postWebhook(sys.app!, { topic, shop: domain, body });
      expect(res.statusCode).toBe(200);
    }
    const second = { ...body, id: Number(body.id) + 1, total_price: '20.57', created_at: now.toISOString() };
    expect((await postWebhook(sys.app!, { topic: 'orders/paid', shop: domain, body: second })).statusCode).toBe(200);
    await vi.waitFor(
      async () => {
        const [row] = await sys.db.db.select().from(contacts).where(eq(contacts.shopifyCustomerId, String(body.customer.id)));
        expect(row).toBeDefined();
        expect(row!.ordersCount).toBe(2);
        expect(Number(row!.totalSpent)).toBeCloseTo(79.43 + 20.57);
        expect(Math.abs(row!.lastOrderAt!.getTime() - new Date(second.created_at).getTime())).toBeLessThan(1000);
      },
      { timeout: 15_000, interval: 50 },
    );
  });
});
