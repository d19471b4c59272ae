/**
 * Install and sync end to end (issue 17) on real Redis and PostgreSQL (and the embedded PGlite) against the bundled Shopify Admin sandbox: a
 * merchant's first request leads to an access token (token exchange, stored encrypted) and a sync job whose bulk
 * operation's JSONL lands as contacts with Shopify's consent, under the ledger (a STOP received before is kept); a
 * sync cut off mid-download resumes without duplicates; operators re-sync; app/uninstalled deletes the token.
 */
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { upsertContact } from '../../src/db/contacts.js';
import { registerHousekeepingSchedules, removeHousekeepingSchedules, SYNC_RECONCILE_SCHEDULE, SYNC_RECONCILE_SCHEDULER_ID } from '../../src/housekeeping/schedules.js';
import { createLogger } from '../../src/logger.js';
import { rowsOf } from '../../src/db/rows.js';
import { getShopSync } from '../../src/db/shopSyncs.js';
import { getShopToken, hasShopToken } from '../../src/db/shopTokens.js';
import { getShopByDomain, upsertShop } from '../../src/db/shops.js';
import { customerAt } from '../../src/sandbox/shopify/customers.js';
import { startShopifySandbox, type ShopifySandbox } from '../../src/sandbox/shopify/server.js';
import { decryptToken } from '../../src/shopify/tokens.js';
import { accessTokenFor } from '../../src/sync/accessToken.js';
import { syncShopCommand } from '../../src/sync/cli.js';
import { waitForJobState } from '../helpers/jobs.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { uniqueShop } from '../helpers/messages.js';
import { ADMIN_TOKEN, DB_KINDS, SHOPIFY_SECRET, startTestSystem, type TestSystem } from '../helpers/system.js';
import { postWebhook } from '../helpers/webhooks.js';

const CUSTOMERS = 3000;
const TIMEZONE = 'Europe/Berlin';

/** What the sandbox's customers with a phone say, by state: what the contacts must say after a sync. */
function expectedConsent(): { withPhone: number; byState: Record<string, number>; subscribedPhones: string[] } {
  const byState: Record<string, number> = {};
  const subscribedPhones: string[] = [];
  let withPhone = 0;
  for (let n = 1; n <= CUSTOMERS; n++) {
    const c = customerAt(n, 'USD');
    if (!c.phone) continue;
    withPhone++;
    const state = (c.smsMarketingConsent?.marketingState ?? 'NOT_SUBSCRIBED').toLowerCase();
    byState[state] = (byState[state] ?? 0) + 1;
    if (state === 'subscribed') subscribedPhones.push(c.phone);
  }
  return { withPhone, byState, subscribedPhones };
}

describe.each(DB_KINDS)('install and sync on %s (issue 17)', (dbKind) => {
  let sandbox: ShopifySandbox;
  let sys: TestSystem;
  const expected = expectedConsent();

  beforeAll(async () => {
    sandbox = await startShopifySandbox({ customers: CUSTOMERS, secret: SHOPIFY_SECRET, apiKey: SHOPIFY_API_KEY, timezone: TIMEZONE, bulkDelayMs: 100 });
    sys = await startTestSystem(dbKind, {
      workers: ['sync', 'events'],
      env: { SHOPIFY_API_KEY, SHOPIFY_ADMIN_BASE_URL: sandbox.url, SYNC_PAGE_SIZE: '250', SYNC_POLL_MAX_MS: '200' },
    });
  }, 60_000);
  afterAll(async () => {
    await sys?.teardown();
    await sandbox?.close();
  });

  const db = () => sys.db.db;
  const app = () => sys.app!;
  const waitForSync = (shopId: number, timeout = 60_000) =>
    vi.waitFor(
      async () => {
        const s = await getShopSync(db(), shopId);
        if (s?.status !== 'done') throw new Error(`sync is ${s?.status ?? 'not started'} (${s?.error ?? ''})`);
        return s;
      },
      { timeout, interval: 50 },
    );
  const consentCounts = async (shopId: number) =>
    Object.fromEntries(
      (await rowsOf<{ sms_consent: string; n: string }>(db(), sql`SELECT sms_consent, count(*) AS n FROM contacts WHERE shop_id = ${shopId} GROUP BY sms_consent`)).map((r) => [
        r.sms_consent,
        Number(r.n),
      ]),
    );
  const contactTotals = async (shopId: number) => {
    const [r] = await rowsOf<{ n: string; customers: string; phones: string }>(
      db(),
      sql`SELECT count(*) AS n, count(DISTINCT shopify_customer_id) AS customers, count(DISTINCT phone) AS phones FROM contacts WHERE shop_id = ${shopId}`,
    );
    return { n: Number(r!.n), customers: Number(r!.customers), phones: Number(r!.phones) };
  };

  it("a merchant's first request leads to an encrypted token, then every customer with a phone as a contact with Shopify's consent, the STOP received before kept, and the shop's time zone", async () => {
    const domain = uniqueShop('install');
    // A STOP received here before the app ever synced: the customer is SUBSCRIBED in Shopify, with an older date.
    const { shop: before } = await upsertShop(db(), domain);
    const stopped = expected.subscribedPhones[3]!;
    await upsertContact(db(), before.id, {
      shopifyCustomerId: null,
      phone: stopped,
      firstName: null,
      lastName: null,
      email: null,
      tags: null,
      countryCode: 'US',
      provinceCode: null,
      consent: { state: 'unsubscribed', optInLevel: null, updatedAt: null, source: 'sms:inbound', origin: 'customer' },
    });

    const headers = await merchantHeaders(domain);
    const first = await app().inject({ method: 'GET', url: '/api/contacts', headers });
    expect(first.statusCode).toBe(200);

    const shop = (await getShopByDomain(db(), domain))!;
    const sync = await waitForSync(shop.id);
    expect(sync).toMatchObject({ reason: 'install', customersSynced: expected.withPhone, error: null });
    expect(sync.linesDone).toBe(sync.objectCount);

    expect((await getShopByDomain(db(), domain))!.timezone).toBe(TIMEZONE);
    const totals = await contactTotals(shop.id);
    expect(totals).toEqual({ n: expected.withPhone, customers: expected.withPhone, phones: expected.withPhone });
    const counts = await consentCounts(shop.id);
    expect(counts).toEqual({ ...expected.byState, subscribed: expected.byState.subscribed! - 1, unsubscribed: (expected.byState.unsubscribed ?? 0) + 1 });
    const [kept] = await rowsOf<{ sms_consent: string; source: string; customer: string | null }>(
      db(),
      sql`SELECT sms_consent, sms_consent_source AS source, shopify_customer_id AS customer FROM contacts WHERE shop_id = ${shop.id} AND phone = ${stopped}`,
    );
    expect(kept).toMatchObject({ sms_consent: 'unsubscribed', source: 'sms:inbound' });
    expect(kept!.customer).not.toBeNull();

    // The merchant API shows them.
    const listed = await app().inject({ method: 'GET', url: '/api/contacts?limit=200', headers });
    expect(listed.statusCode).toBe(200);
    expect(listed.json().items).toHaveLength(200);

    // The token: ciphertext in the table, never the token itself, and it opens with the configured key.
    const [raw] = await rowsOf<{ access_token: string; refresh_token: string | null }>(db(), sql`SELECT access_token, refresh_token FROM shop_tokens WHERE shop_id = ${shop.id}`);
    expect(raw!.access_token).not.toMatch(/shp[a-z]{2}_/);
    expect(raw!.refresh_token ?? '').not.toMatch(/shp[a-z]{2}_/);
    const stored = (await getShopToken(db(), shop.id))!;
    const keys = { current: sys.config.shopifyAdmin.tokenKey };
    expect(decryptToken(stored.accessToken, keys)).toMatch(/^shpat_/);
    expect(stored.expiresAt).not.toBeNull();
  }, 90_000);

  it('a sync cut off mid-download resumes where it stopped, with no duplicate contacts and the same bulk operation', async () => {
    const domain = uniqueShop('resume');
    const bulkBefore = sandbox.stats().bulkOperations;
    // The first download is cut off after half its lines: the job fails its attempt and BullMQ runs it again.
    sandbox.setFaults({ downloadFailures: 1 });
    await app().inject({ method: 'GET', url: '/api/settings', headers: await merchantHeaders(domain) });
    const shop = (await getShopByDomain(db(), domain))!;
    const sync = await waitForSync(shop.id);
    expect(sync.linesDone).toBe(sync.objectCount);
    expect(sandbox.faults().downloadFailures).toBe(0);
    expect(sandbox.stats().bulkOperations - bulkBefore).toBe(1);
    const queue = sys.queues.get('sync');
    const id = (await queue.getJobs(['active', 'completed'])).find((j) => j.data.shopId === domain)!.id!;
    const job = await waitForJobState(queue, id, 'completed');
    expect(job.attemptsMade).toBe(2);
    expect(job.returnvalue.resumedFromLine).toBeGreaterThan(0);
    expect(job.returnvalue.resumedFromLine).toBeLessThan(sync.objectCount!);
    expect(await contactTotals(shop.id)).toEqual({ n: expected.withPhone, customers: expected.withPhone, phones: expected.withPhone });
    expect(await consentCounts(shop.id)).toEqual(expected.byState);
  }, 90_000);

  it('operators re-sync a shop (idempotent: nothing doubles); unknown shops and shops without a token are refused', async () => {
    const domain = uniqueShop('resync');
    await app().inject({ method: 'GET', url: '/api/settings', headers: await merchantHeaders(domain) });
    const shop = (await getShopByDomain(db(), domain))!;
    await waitForSync(shop.id);
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    // Shopify throttles the next two calls: the sync waits for the bucket and carries on.
    const throttledBefore = sandbox.stats().throttled;
    sandbox.setFaults({ graphqlThrottled: 2 });
    const res = await app().inject({ method: 'POST', url: `/admin/shops/${domain}/sync`, headers: auth });
    expect(res.statusCode).toBe(202);
    const job = await waitForJobState(sys.queues.get('sync'), res.json().jobId, 'completed', 60_000);
    expect(job.data).toMatchObject({ shopId: domain, reason: 'manual' });
    expect(job.returnvalue).toMatchObject({ outcome: 'done', customers: expected.withPhone });
    expect(sandbox.stats().throttled - throttledBefore).toBe(2);
    expect(job.returnvalue.throttledMs).toBeGreaterThan(0);
    expect(await contactTotals(shop.id)).toEqual({ n: expected.withPhone, customers: expected.withPhone, phones: expected.withPhone });
    const status = await app().inject({ method: 'GET', url: `/admin/shops/${domain}/sync`, headers: auth });
    expect(status.json()).toMatchObject({ status: 'done', reason: 'manual' });

    // The CLI's `smsblossom shop sync --shop X` queues the same job.
    const printed = await syncShopCommand(sys, domain);
    const cliJobId = /sync job (\S+);/.exec(printed)![1]!;
    expect((await waitForJobState(sys.queues.get('sync'), cliJobId, 'completed', 60_000)).returnvalue).toMatchObject({ outcome: 'done' });
    await expect(syncShopCommand(sys, 'not a shop')).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });

    const unknown = await app().inject({ method: 'POST', url: `/admin/shops/${uniqueShop('nobody')}/sync`, headers: auth });
    expect(unknown.statusCode).toBe(404);
    const noToken = uniqueShop('notoken');
    await upsertShop(db(), noToken);
    const refused = await app().inject({ method: 'POST', url: `/admin/shops/${noToken}/sync`, headers: auth });
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error.code).toBe('NO_ACCESS_TOKEN');
    expect((await app().inject({ method: 'POST', url: `/admin/shops/${domain}/sync` })).statusCode).toBe(401);
  }, 120_000);

  it('an expiring token close to its end is refreshed before use and stored again, encrypted', async () => {
    const domain = uniqueShop('refresh');
    await app().inject({ method: 'GET', url: '/api/settings', headers: await merchantHeaders(domain) });
    const shop = (await getShopByDomain(db(), domain))!;
    await waitForSync(shop.id);
    const keys = { current: sys.config.shopifyAdmin.tokenKey };
    const before = (await getShopToken(db(), shop.id))!;
    const inAnHour = new Date(before.expiresAt!.getTime() - 60_000);
    const token = await accessTokenFor(shop, { db: db(), config: sys.config }, inAnHour);
    const after = (await getShopToken(db(), shop.id))!;
    expect(token).not.toBe(decryptToken(before.accessToken, keys));
    expect(decryptToken(after.accessToken, keys)).toBe(token);
    expect(after.refreshToken).not.toBe(before.refreshToken);
    // The refreshed token works: a sync with it completes.
    const res = await app().inject({ method: 'POST', url: `/admin/shops/${domain}/sync`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    await waitForJobState(sys.queues.get('sync'), res.json().jobId, 'completed', 60_000);
  }, 90_000);

  it('the weekly reconcile is a scheduler of the sync queue, and its run queues a sync of every installed shop holding a token', async () => {
    await registerHousekeepingSchedules(sys.queues, createLogger({ level: 'silent' }));
    const queue = sys.queues.get('sync');
    const [scheduler] = await queue.getJobSchedulers(0, -1, true);
    expect(scheduler).toMatchObject({ key: SYNC_RECONCILE_SCHEDULER_ID, pattern: SYNC_RECONCILE_SCHEDULE });
    await removeHousekeepingSchedules(sys.queues);
    expect(await queue.getJobSchedulersCount()).toBe(0);

    const [row] = await rowsOf<{ n: string }>(db(), sql`SELECT count(*) AS n FROM shop_tokens t JOIN shops s ON s.id = t.shop_id WHERE s.uninstalled_at IS NULL`);
    const n = row!.n;
    const id = await sys.queues.enqueueJob('sync', 'reconcile', { reason: 'reconcile' });
    const job = await waitForJobState(queue, id, 'completed', 30_000);
    expect(job.returnvalue).toEqual({ queued: Number(n) });
    expect(Number(n)).toBeGreaterThan(0);
  }, 120_000);

  it('app/uninstalled deletes the access token', async () => {
    const domain = uniqueShop('uninstall');
    await app().inject({ method: 'GET', url: '/api/settings', headers: await merchantHeaders(domain) });
    const shop = (await getShopByDomain(db(), domain))!;
    await vi.waitFor(async () => expect(await hasShopToken(db(), shop.id)).toBe(true), { timeout: 30_000, interval: 50 });
    const hook = await postWebhook(app(), { topic: 'app/uninstalled', shop: domain, body: { id: 1, domain } });
    expect(hook.statusCode).toBe(200);
    await vi.waitFor(async () => expect(await hasShopToken(db(), shop.id)).toBe(false), { timeout: 30_000, interval: 50 });
  }, 60_000);
});
