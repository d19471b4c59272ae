/**
 * What a merchant sees after the install sync (issue 17, "Done when"), through the merchant API only: on a fresh
 * database, the merchant's first request leads, with nothing else done, to every sandbox customer with a phone as a
 * contact with Shopify's consent and the shop's time zone; `GET /api/contacts` lists them all, a segment preview counts
 * exactly the subscribed ones, and a campaign to everyone reaches exactly those at the Mitto sandbox.
 *
 * The expected figures are the Shopify sandbox's own (`GET /__sandbox/stats`), not recomputed here.
 */
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { rowsOf } from '../../src/db/rows.js';
import { getShopSync } from '../../src/db/shopSyncs.js';
import { getShopByDomain } from '../../src/db/shops.js';
import { startShopifySandbox, type ShopifySandbox, type ShopifySandboxStats } from '../../src/sandbox/shopify/server.js';
import { listAllContacts, merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, SHOPIFY_SECRET, startTestSystem, type TestSystem } from '../helpers/system.js';

const CUSTOMERS = 2000;
const TIMEZONE = 'Australia/Adelaide';

describe.each(DB_KINDS)('what a merchant sees after the install sync on %s (issue 17)', (dbKind) => {
  let shopify: ShopifySandbox;
  let sys: TestSystem;

  beforeAll(async () => {
    shopify = await startShopifySandbox({ customers: CUSTOMERS, secret: SHOPIFY_SECRET, apiKey: SHOPIFY_API_KEY, timezone: TIMEZONE, bulkDelayMs: 100 });
    sys = await startTestSystem(dbKind, {
      workers: ['sync', 'campaigns', 'delivery'],
      listen: true,
      env: {
        SMS_PROVIDER: 'sandbox',
        SHOPIFY_API_KEY,
        SHOPIFY_ADMIN_BASE_URL: shopify.url,
        SYNC_POLL_MAX_MS: '200',
        CAMPAIGN_BATCH_SIZE: '250',
        CAMPAIGN_MAX_BACKLOG: '1000',
        CAMPAIGN_POLL_MS: '50',
        DELIVERY_CONCURRENCY: '10',
      },
    });
  }, 60_000);
  afterAll(async () => {
    await sys?.teardown();
    await shopify?.close();
  });

  it('the first request leads to every customer with a phone as a contact with its consent; the contacts list, a segment preview and a campaign show exactly them', async () => {
    const stats = (await (await fetch(`${shopify.url}/__sandbox/stats`)).json()) as ShopifySandboxStats;
    expect(stats).toMatchObject({ customers: CUSTOMERS, ianaTimezone: TIMEZONE });
    expect(stats.subscribed).toBeGreaterThan(0);
    expect(stats.subscribed).toBeLessThan(stats.withPhone);
    const byState = Object.fromEntries(Object.entries(stats.byState).filter(([, n]) => n > 0).map(([state, n]) => [state.toLowerCase(), n]));

    const domain = uniqueShop('merchant');
    const auth = await merchantHeaders(domain, { expiresIn: 600 });
    const api = async (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object) => {
      const res = await sys.app!.inject({ method, url, headers: auth, ...(payload ? { payload } : {}) });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBeLessThan(300);
      return res.json();
    };

    // The first request: nothing else is called to set off the token exchange and the sync.
    const first = await api('GET', '/api/contacts');
    expect(first.items).toEqual([]);
    const shop = (await getShopByDomain(sys.db.db, domain))!;
    const sync = await vi.waitFor(
      async () => {
        const s = await getShopSync(sys.db.db, shop.id);
        if (s?.status !== 'done') throw new Error(`sync is ${s?.status ?? 'not started'} (${s?.error ?? ''})`);
        return s;
      },
      { timeout: 60_000, interval: 50 },
    );
    expect(sync).toMatchObject({ reason: 'install', customersSynced: stats.withPhone, error: null });

    // The shop's time zone, as the merchant's settings show it.
    const settings = await api('GET', '/api/settings');
    expect(settings.timezone).toBe(TIMEZONE);

    // Every contact, page by page, with its consent: the sandbox's counts by state.
    const listed = await listAllContacts((url) => api('GET', url));
    expect(listed).toEqual({ count: stats.withPhone, byState });

    // A segment of the subscribed, saved and previewed; a preview of everyone counts every contact.
    const segment = await api('POST', '/api/segments', { name: 'SMS subscribers', filter: { consent: 'subscribed' } });
    expect((await api('POST', '/api/segments/preview', { segmentId: segment.id, sample: 5 })).count).toBe(stats.subscribed);
    expect((await api('POST', '/api/segments/preview', { filter: { hasPhone: true }, sample: 0 })).count).toBe(stats.withPhone);

    // A campaign to every contact: the consent rule leaves exactly the subscribed. Quiet hours off, so the count
    // does not depend on the hour in Adelaide.
    await api('PATCH', '/api/settings', { quietHours: { enabled: false }, frequencyCap: null });
    sys.sandbox!.reset();
    const campaign = await api('POST', '/api/campaigns', { name: 'Welcome', body: 'Hi {{ customer.firstName }}, welcome to our texts!', filter: { hasPhone: true } });
    expect(await api('GET', `/api/campaigns/${campaign.id}/estimate`)).toMatchObject({ matching: stats.withPhone, recipients: stats.subscribed });
    await api('POST', `/api/campaigns/${campaign.id}/send`);
    const progress = await vi.waitFor(
      async () => {
        const p = await api('GET', `/api/campaigns/${campaign.id}/progress`);
        if (p.status !== 'sent') throw new Error(`campaign is ${p.status}`);
        return p;
      },
      { timeout: 60_000, interval: 100 },
    );
    expect(progress).toMatchObject({ total: stats.withPhone, enqueued: stats.subscribed, sent: stats.subscribed, failed: 0 });
    expect(progress.skipped).toBe(stats.withPhone - stats.subscribed);

    const atMitto = sys.sandbox!.messages();
    expect(atMitto).toHaveLength(stats.subscribed);
    const subscribedPhones = (
      await rowsOf<{ phone: string }>(sys.db.db, sql`SELECT phone FROM contacts WHERE shop_id = ${shop.id} AND sms_consent = 'subscribed'`)
    ).map((r) => r.phone);
    expect(new Set(atMitto.map((m) => m.to))).toEqual(new Set(subscribedPhones));
  }, 120_000);
});
