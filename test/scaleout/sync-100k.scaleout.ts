/**
 * The install sync at a real merchant's size (issue 17, "Done when": tested with the sandbox at 100,000 customers): on
 * a fresh PostgreSQL schema, a merchant's first request alone leads to every sandbox customer with a phone being a
 * contact with Shopify's consent and the shop's time zone set; `GET /api/contacts` lists them all, a segment preview
 * counts exactly the subscribed, and a campaign's audience is exactly them. (Sending to them is proven at 2,000 in
 * test/integration/shop-sync-merchant.test.ts; 30,000 sends would add minutes and prove nothing more.)
 *
 * The expected figures are the Shopify sandbox's own (`GET /__sandbox/stats`). SYNC_TEST_CUSTOMERS sets the size.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { getShopSync } from '../../src/db/shopSyncs.js';
import { getShopByDomain } from '../../src/db/shops.js';
import { startShopifySandbox, type ShopifySandbox, type ShopifySandboxStats } from '../../src/sandbox/shopify/server.js';
import { listAllContacts, merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { uniqueShop } from '../helpers/messages.js';
import { SHOPIFY_SECRET, startTestSystem, type TestSystem } from '../helpers/system.js';

const CUSTOMERS = Number(process.env.SYNC_TEST_CUSTOMERS ?? 100_000);
const TIMEZONE = 'America/Chicago';

describe(`the install sync of ${CUSTOMERS} customers on PostgreSQL`, () => {
  let shopify: ShopifySandbox;
  let sys: TestSystem;

  beforeAll(async () => {
    shopify = await startShopifySandbox({ customers: CUSTOMERS, secret: SHOPIFY_SECRET, apiKey: SHOPIFY_API_KEY, timezone: TIMEZONE, bulkDelayMs: 100 });
    sys = await startTestSystem('postgres', {
      workers: ['sync'],
      env: { SHOPIFY_API_KEY, SHOPIFY_ADMIN_BASE_URL: shopify.url, SYNC_POLL_MAX_MS: '500' },
    });
  }, 120_000);
  afterAll(async () => {
    await sys?.teardown();
    await shopify?.close();
  });

  it('every customer with a phone becomes a contact with its consent; the list, a segment preview and a campaign audience show exactly them', { timeout: 600_000 }, async () => {
    const stats = (await (await fetch(`${shopify.url}/__sandbox/stats`)).json()) as ShopifySandboxStats;
    expect(stats).toMatchObject({ customers: CUSTOMERS, ianaTimezone: TIMEZONE });
    const byState = Object.fromEntries(Object.entries(stats.byState).filter(([, n]) => n > 0).map(([state, n]) => [state.toLowerCase(), n]));

    const domain = uniqueShop('sync100k');
    const auth = await merchantHeaders(domain, { expiresIn: 1200 });
    const api = async (method: 'GET' | 'POST', url: string, payload?: object) => {
      const res = await sys.app!.inject({ method, url, headers: auth, ...(payload ? { payload } : {}) });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBeLessThan(300);
      return res.json();
    };

    // The first request, and nothing else, sets off the token exchange and the sync.
    await api('GET', '/api/contacts');
    const shop = (await getShopByDomain(sys.db.db, domain))!;
    const sync = await vi.waitFor(
      async () => {
        const s = await getShopSync(sys.db.db, shop.id);
        if (s?.status !== 'done') throw new Error(`sync is ${s?.status ?? 'not started'} (${s?.linesDone ?? 0} lines; ${s?.error ?? ''})`);
        return s;
      },
      { timeout: 500_000, interval: 250 },
    );
    expect(sync).toMatchObject({ reason: 'install', customersSynced: stats.withPhone, error: null });
    expect((await api('GET', '/api/settings')).timezone).toBe(TIMEZONE);

    // Every contact through the merchant's list, page by page: each once, with the sandbox's consent counts.
    const listed = await listAllContacts((url) => api('GET', url));
    expect(listed).toEqual({ count: stats.withPhone, byState });

    expect((await api('POST', '/api/segments/preview', { filter: { consent: 'subscribed' }, sample: 0 })).count).toBe(stats.subscribed);
    const campaign = await api('POST', '/api/campaigns', { name: 'Everyone', body: 'Hi {{ customer.firstName }}!', filter: { hasPhone: true } });
    expect(await api('GET', `/api/campaigns/${campaign.id}/estimate`)).toMatchObject({ matching: stats.withPhone, recipients: stats.subscribed });
  });
});
