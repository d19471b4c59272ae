/**
 * Shopify's `bulk_operations/finish` webhook wakes the install sync waiting on its bulk operation (issue 17), on real
 * Redis and PostgreSQL (and PGlite): the Shopify sandbox posts the signed webhook to the service's intake, the events
 * worker announces the finish on Redis, and the sync, blocked on it between two status queries, asks again at once
 * instead of at its next poll. Without the webhook, polling still finds the end.
 *
 * The sandbox's bulk operation takes 5 s and the sync's back-off polls at 3.75 s and 7.75 s (SYNC_POLL_MAX_MS is
 * long): a sync that found the end after a wake-up was woken by the webhook, not by its poll timer.
 */
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { rowsOf } from '../../src/db/rows.js';
import { getShopSync } from '../../src/db/shopSyncs.js';
import { getShopByDomain } from '../../src/db/shops.js';
import { getRedisConnection } from '../../src/queue/redis.js';
import { startShopifySandbox, type ShopifySandbox } from '../../src/sandbox/shopify/server.js';
import { announceBulkFinish, bulkFinishWaiter } from '../../src/sync/bulkFinish.js';
import type { SyncResult } from '../../src/sync/customers.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, SHOPIFY_SECRET, startTestSystem, type TestSystem } from '../helpers/system.js';

const CUSTOMERS = 500;

describe.each(DB_KINDS)('bulk_operations/finish wakes the sync on %s (issue 17)', (dbKind) => {
  let shopify: ShopifySandbox;
  let sys: TestSystem;

  beforeAll(async () => {
    shopify = await startShopifySandbox({ customers: CUSTOMERS, secret: SHOPIFY_SECRET, apiKey: SHOPIFY_API_KEY, bulkDelayMs: 5000 });
    sys = await startTestSystem(dbKind, {
      workers: ['sync', 'events'],
      listen: true,
      env: { SHOPIFY_API_KEY, SHOPIFY_ADMIN_BASE_URL: shopify.url, SYNC_POLL_MAX_MS: '60000' },
    });
  }, 60_000);
  afterAll(async () => {
    await sys?.teardown();
    await shopify?.close();
  });

  /** Installs a new shop (its merchant's first request) and returns its sync job's result once the sync is done. */
  async function install(): Promise<{ domain: string; result: SyncResult }> {
    const domain = uniqueShop('bulkhook');
    expect((await sys.app!.inject({ method: 'GET', url: '/api/settings', headers: await merchantHeaders(domain) })).statusCode).toBe(200);
    const shop = (await getShopByDomain(sys.db.db, domain))!;
    await vi.waitFor(
      async () => {
        const s = await getShopSync(sys.db.db, shop.id);
        if (s?.status !== 'done') throw new Error(`sync is ${s?.status ?? 'not started'} (${s?.error ?? ''})`);
      },
      { timeout: 30_000, interval: 50 },
    );
    const result = await vi.waitFor(
      async () => {
        const job = (await sys.queues.get('sync').getJobs(['completed'])).find((j) => j.data.shopId === domain);
        if (!job) throw new Error('sync job not completed yet');
        return job.returnvalue as SyncResult;
      },
      { timeout: 10_000, interval: 20 },
    );
    return { domain, result };
  }

  it('the finish webhook, signed and sent by Shopify, wakes the waiting sync at once', async () => {
    shopify.setWebhookUrl(`${sys.url}/webhooks/shopify`);
    const sentBefore = shopify.stats().webhooks.sent;
    const { domain, result } = await install();
    expect(result).toMatchObject({ outcome: 'done', customers: shopify.stats().withPhone, finishedBy: 'webhook' });
    expect(shopify.stats().webhooks.sent - sentBefore).toBe(1);
    const hooks = await rowsOf<{ status: string; outcome: string }>(
      sys.db.db,
      sql`SELECT status, outcome FROM events WHERE shop_domain = ${domain} AND topic = 'bulk_operations/finish'`,
    );
    expect(hooks).toEqual([{ status: 'processed', outcome: 'bulk_finish_announced' }]);
  }, 60_000);

  it('without the webhook, polling finds the end', async () => {
    shopify.setWebhookUrl(undefined);
    const { result } = await install();
    expect(result).toMatchObject({ outcome: 'done', customers: shopify.stats().withPhone, finishedBy: 'polling' });
  }, 60_000);

  it('a finish announced before the sync waits is kept for it; one for another operation does not wake it', async () => {
    const domain = uniqueShop('bulkearly');
    const op = 'gid://shopify/BulkOperation/424242';
    const waiter = bulkFinishWaiter(() => getRedisConnection(sys.config.redis, 'worker'), sys.queues.prefix, (ms) => new Promise((r) => setTimeout(r, ms)));
    try {
      await announceBulkFinish(sys.queues.connection, sys.queues.prefix, domain, op);
      expect(await waiter.wait(domain, 'gid://shopify/BulkOperation/1', 100)).toBe(false);
      expect(await waiter.wait(uniqueShop('other'), op, 100)).toBe(false);
      expect(await waiter.wait(domain, op, 30_000)).toBe(true);
      // Taken once: the next wait on it times out.
      expect(await waiter.wait(domain, op, 100)).toBe(false);
    } finally {
      await waiter.close();
    }
  });
});
