/**
 * A shop's sync from the GraphQL Admin API: the shop's details, then every customer with a phone through a bulk
 * operation whose JSONL result is streamed, a page at a time, into set-based upserts. Knows nothing about BullMQ.
 *
 * Resumable and idempotent: `shop_syncs` records the bulk operation started (a resumed sync polls it again instead of
 * starting another) and the JSONL lines already upserted (skipped on resume). Re-upserting a page is harmless: the
 * unique indexes on (shop, customer id) and (shop, phone) keep one contact per customer, and consent goes through the
 * ledger as origin `shopify` with Shopify's own `consentUpdatedAt`, so a record already applied is ignored the second
 * time and a STOP received here is never overwritten by an older Shopify state.
 */
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { setTimeout as wait } from 'node:timers/promises';
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import { upsertContactsBatch, type ContactInput } from '../db/contacts.js';
import type { ConsentState } from '../db/schema.js';
import { applyShopifyOrderStats, beginShopSync, getShopSync, updateShopSync, type ShopSync } from '../db/shopSyncs.js';
import { getShopByDomain, updateShopFacts, updateShopPlan } from '../db/shops.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { isValidTimezone } from '../rules/quietHours.js';
import { AdminGraphqlClient, type FetchLike } from '../shopify/adminClient.js';
import { pickCountry, toE164 } from '../shopify/phone.js';
import { accessTokenFor } from './accessToken.js';
import type { BulkFinishWaiter } from './bulkFinish.js';
import type { SyncReason } from './enqueue.js';

/** The shop's details. */
export const SHOP_QUERY = `query ShopDetails {
  shop { name ianaTimezone currencyCode plan { displayName } }
}`;

/**
 * The customers a sync reads. `phone:*` asks Shopify for customers that have a phone; a customer without a valid one is
 * skipped on arrival anyway, so the filter only saves transfer.
 */
export const CUSTOMERS_BULK_QUERY = `{
  customers(query: "phone:*") {
    edges {
      node {
        id firstName lastName email phone tags numberOfOrders
        amountSpent { amount currencyCode }
        defaultAddress { countryCodeV2 provinceCode }
        smsMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt consentCollectedFrom }
      }
    }
  }
}`;

export const RUN_BULK_MUTATION = `mutation RunCustomersBulk($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message }
  }
}`;

export const BULK_STATUS_QUERY = `query BulkStatus($id: ID!) {
  node(id: $id) { ... on BulkOperation { id status errorCode objectCount url partialDataUrl } }
}`;

export const CURRENT_BULK_QUERY = `query CurrentBulk {
  currentBulkOperation(type: QUERY) { id status }
}`;

/** Every GraphQL document the sync sends (a test checks each against Shopify's published schema). */
export const SYNC_DOCUMENTS = { SHOP_QUERY, CUSTOMERS_BULK_QUERY, RUN_BULK_MUTATION, BULK_STATUS_QUERY, CURRENT_BULK_QUERY } as const;

export interface SyncDeps {
  db: Db;
  config: Pick<Config, 'shopify' | 'shopifyAdmin'>;
  logger: Logger;
  fetch?: FetchLike;
  sleep?: (ms: number) => Promise<void>;
  /**
   * Opens a waiter woken by the `bulk_operations/finish` webhook (src/sync/bulkFinish.ts), used between two status
   * queries of the bulk operation instead of sleeping; without it the sync only polls.
   */
  bulkFinishWaiter?: () => BulkFinishWaiter;
  /** Reports progress (0-100 and the row): the processor forwards it to `job.updateProgress`. */
  progress?: (percent: number, sync: Pick<ShopSync, 'status' | 'linesDone' | 'customersSynced' | 'objectCount'>) => Promise<void>;
  /** Called after each page is stored, with the lines done so far (fault injection in tests). */
  afterPage?: (linesDone: number) => Promise<void>;
  requestId?: string;
}

export interface SyncResult {
  outcome: 'done' | 'skipped';
  reason?: 'shop_unknown' | 'shop_uninstalled';
  customers?: number;
  lines?: number;
  resumedFromLine?: number;
  throttledMs?: number;
  /** What found the bulk operation completed: a status query woken by its finish webhook, or polling alone. */
  finishedBy?: 'webhook' | 'polling';
}

interface BulkOperation {
  id: string;
  status: 'CREATED' | 'RUNNING' | 'COMPLETED' | 'CANCELING' | 'CANCELED' | 'FAILED' | 'EXPIRED';
  errorCode?: string | null;
  objectCount?: string | number | null;
  url?: string | null;
}

export async function runShopSync(input: { shopDomain: string; reason: SyncReason }, deps: SyncDeps): Promise<SyncResult> {
  const shop = await getShopByDomain(deps.db, input.shopDomain);
  if (!shop) return { outcome: 'skipped', reason: 'shop_unknown' };
  if (shop.uninstalledAt) return { outcome: 'skipped', reason: 'shop_uninstalled' };
  const accessToken = await accessTokenFor(shop, deps);
  const client = new AdminGraphqlClient({ shopDomain: shop.domain, accessToken, baseUrl: deps.config.shopifyAdmin.baseUrl, fetch: deps.fetch, sleep: deps.sleep });
  let sync = await beginShopSync(deps.db, shop.id, input.reason);
  const resumedFromLine = sync.linesDone;
  try {
    if (sync.status === 'queued' || sync.status === 'shop') {
      await updateShopSync(deps.db, shop.id, { status: 'shop' });
      await syncShopDetails(shop.id, client, deps.db);
      await updateShopSync(deps.db, shop.id, { status: 'bulk_running' });
      await deps.progress?.(1, { ...sync, status: 'bulk_running' });
    }
    const { operation, finishedBy } = await completedOperation(shop, sync.bulkOperationId, client, deps);
    const objectCount = operation.objectCount === null || operation.objectCount === undefined ? 0 : Number(operation.objectCount);
    await updateShopSync(deps.db, shop.id, { status: 'importing', objectCount });
    sync = (await getShopSync(deps.db, shop.id))!;
    const imported = operation.url ? await importResult(shop.id, operation.url, sync, objectCount, deps) : { lines: 0, customers: sync.customersSynced };
    await updateShopSync(deps.db, shop.id, { status: 'done', linesDone: imported.lines, customersSynced: imported.customers, error: null });
    await deps.progress?.(100, { status: 'done', linesDone: imported.lines, customersSynced: imported.customers, objectCount });
    deps.logger.info({ shopId: shop.domain, customers: imported.customers, lines: imported.lines, resumedFromLine, throttledMs: client.throttledMs, finishedBy }, 'Shop sync done');
    return { outcome: 'done', customers: imported.customers, lines: imported.lines, resumedFromLine, throttledMs: client.throttledMs, finishedBy };
  } catch (err) {
    // A permanent failure ends this sync (the next one starts afresh); anything else leaves it to resume on retry.
    if (err instanceof AppError && err.permanent) await updateShopSync(deps.db, shop.id, { status: 'failed', error: `${err.code}: ${err.message}` });
    throw err;
  }
}

async function syncShopDetails(shopId: number, client: AdminGraphqlClient, db: Db): Promise<void> {
  const { shop } = await client.request<{ shop: { name: string | null; ianaTimezone: string | null; currencyCode: string | null; plan: { displayName: string | null } | null } }>(SHOP_QUERY, {}, 5);
  await updateShopFacts(db, shopId, {
    name: shop.name,
    timezone: shop.ianaTimezone && isValidTimezone(shop.ianaTimezone) ? shop.ianaTimezone : null,
    countryCode: null,
    currency: shop.currencyCode,
  });
  if (shop.plan?.displayName) await updateShopPlan(db, shopId, shop.plan.displayName);
}

/**
 * Starts the bulk operation (or adopts the one recorded, or already running) and polls it, with back-off, to its end.
 * Between two status queries it waits for the operation's finish webhook, at most the back-off.
 */
async function completedOperation(
  shop: { id: number; domain: string },
  recorded: string | null,
  client: AdminGraphqlClient,
  deps: SyncDeps,
): Promise<{ operation: BulkOperation; finishedBy: 'webhook' | 'polling' }> {
  const sleep = deps.sleep ?? ((ms: number) => wait(ms));
  const waiter = deps.bulkFinishWaiter?.();
  try {
    let id = recorded ?? (await startBulkOperation(client));
    if (id !== recorded) await updateShopSync(deps.db, shop.id, { bulkOperationId: id, linesDone: 0, customersSynced: 0 });
    let delay = 250;
    let woken = false;
    for (let restarts = 0; ; ) {
      const { node } = await client.request<{ node: BulkOperation | null }>(BULK_STATUS_QUERY, { id }, 2);
      const op = node;
      if (op?.status === 'COMPLETED') return { operation: op, finishedBy: woken ? 'webhook' : 'polling' };
      if (!op || op.status === 'CANCELED' || op.status === 'EXPIRED') {
        // The recorded operation is gone (cancelled, or its result expired before a resume): run the query again, once.
        if (restarts++ > 0) throw new AppError('SHOPIFY_GRAPHQL_FAILED', `bulk operation ${id} ended ${op?.status ?? 'unknown'}`);
        id = await startBulkOperation(client);
        await updateShopSync(deps.db, shop.id, { bulkOperationId: id, linesDone: 0, customersSynced: 0 });
        continue;
      }
      if (op.status === 'FAILED') throw new AppError('SHOPIFY_GRAPHQL_FAILED', `bulk operation failed (${op.errorCode ?? 'no error code'})`);
      if (waiter) woken = await waiter.wait(shop.domain, id, delay);
      else await sleep(delay);
      delay = Math.min(delay * 2, deps.config.shopifyAdmin.pollMaxMs);
    }
  } finally {
    await waiter?.close();
  }
}

async function startBulkOperation(client: AdminGraphqlClient): Promise<string> {
  const { bulkOperationRunQuery: run } = await client.request<{
    bulkOperationRunQuery: { bulkOperation: { id: string } | null; userErrors: Array<{ field: string[] | null; message: string }> };
  }>(RUN_BULK_MUTATION, { query: CUSTOMERS_BULK_QUERY }, 10);
  if (run.bulkOperation) return run.bulkOperation.id;
  // One bulk query per shop and app at a time: one already running is ours (a sync that lost its record), adopt it.
  const { currentBulkOperation: current } = await client.request<{ currentBulkOperation: { id: string; status: string } | null }>(CURRENT_BULK_QUERY, {}, 2);
  if (current && (current.status === 'CREATED' || current.status === 'RUNNING')) return current.id;
  throw new AppError('SHOPIFY_GRAPHQL_FAILED', `bulkOperationRunQuery: ${run.userErrors.map((e) => e.message).join('; ') || 'no operation started'}`);
}

/** Streams the JSONL result: never the whole file in memory, one page of upserts at a time. */
async function importResult(shopId: number, url: string, sync: ShopSync, objectCount: number, deps: SyncDeps): Promise<{ lines: number; customers: number }> {
  let res: Response;
  try {
    res = await (deps.fetch ?? fetch)(url);
  } catch (err) {
    throw new AppError('SHOPIFY_ADMIN_UNAVAILABLE', 'bulk operation result: unreachable', { cause: err });
  }
  if (!res.ok || !res.body) throw new AppError('SHOPIFY_ADMIN_UNAVAILABLE', `bulk operation result: answered ${res.status}`);
  const input = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
  const lines = createInterface({ input, crlfDelay: Infinity });
  const pageSize = deps.config.shopifyAdmin.syncPageSize;
  let line = 0;
  let customers = sync.customersSynced;
  let page: ShopifyCustomer[] = [];
  const flush = async () => {
    if (page.length) customers += await storePage(shopId, page, deps);
    page = [];
    await updateShopSync(deps.db, shopId, { linesDone: line, customersSynced: customers });
    await deps.progress?.(objectCount ? Math.min(99, 2 + Math.floor((line / objectCount) * 97)) : 99, { status: 'importing', linesDone: line, customersSynced: customers, objectCount });
    await deps.afterPage?.(line);
  };
  try {
    for await (const text of lines) {
      if (text.trim() === '') continue;
      line++;
      if (line <= sync.linesDone) continue;
      page.push(JSON.parse(text) as ShopifyCustomer);
      if (page.length >= pageSize) await flush();
    }
    if (page.length || line > sync.linesDone) await flush();
  } finally {
    // On a failure part-way, the rest of the download is abandoned (and its connection closed), not read to the end.
    lines.close();
    input.destroy();
  }
  return { lines: line, customers };
}

/** One JSONL line of the customers bulk query. */
interface ShopifyCustomer {
  id: string;
  firstName?: string | null;
  lastName?: string | null;
  email?: string | null;
  phone?: string | null;
  tags?: string[] | null;
  numberOfOrders?: string | number | null;
  amountSpent?: { amount?: string | null } | null;
  defaultAddress?: { countryCodeV2?: string | null; provinceCode?: string | null } | null;
  smsMarketingConsent?: {
    marketingState?: string | null;
    marketingOptInLevel?: string | null;
    consentUpdatedAt?: string | null;
    consentCollectedFrom?: string | null;
  } | null;
}

const STATES: Readonly<Record<string, ConsentState>> = {
  SUBSCRIBED: 'subscribed',
  NOT_SUBSCRIBED: 'not_subscribed',
  UNSUBSCRIBED: 'unsubscribed',
  PENDING: 'pending',
  REDACTED: 'redacted',
};

/**
 * A consent record without `consentUpdatedAt` is older than anything on record (the epoch): it fills in a contact
 * we knew nothing of, and never overrides a stored consent, a STOP above all.
 */
const UNDATED = new Date(0);

/** A customer line as a contact; null when it has no valid phone (no SMS can reach it). */
export function contactFromCustomer(c: ShopifyCustomer): ContactInput | null {
  const countryCode = pickCountry(c.defaultAddress?.countryCodeV2);
  const phone = toE164(c.phone, countryCode);
  if (!phone) return null;
  const consent = c.smsMarketingConsent;
  const state = consent?.marketingState ? STATES[consent.marketingState] : undefined;
  const at = consent?.consentUpdatedAt ? new Date(consent.consentUpdatedAt) : null;
  return {
    shopifyCustomerId: /\/(\d+)$/.exec(c.id)?.[1] ?? c.id,
    phone,
    firstName: c.firstName ?? null,
    lastName: c.lastName ?? null,
    email: c.email ?? null,
    tags: Array.isArray(c.tags) ? c.tags : null,
    countryCode,
    provinceCode: c.defaultAddress?.provinceCode ?? null,
    consent: state
      ? {
          state,
          optInLevel: consent?.marketingOptInLevel ? consent.marketingOptInLevel.toLowerCase() : null,
          updatedAt: at && !Number.isNaN(at.getTime()) ? at : UNDATED,
          source: 'shopify:sync',
          origin: 'shopify',
        }
      : null,
  };
}

async function storePage(shopId: number, page: readonly ShopifyCustomer[], deps: SyncDeps): Promise<number> {
  const inputs: ContactInput[] = [];
  const stats: Array<{ customerId: string; orders: number; spent: string }> = [];
  for (const c of page) {
    const input = contactFromCustomer(c);
    if (!input) continue;
    inputs.push(input);
    stats.push({ customerId: input.shopifyCustomerId!, orders: Number(c.numberOfOrders ?? 0) || 0, spent: c.amountSpent?.amount ?? '0' });
  }
  if (!inputs.length) return 0;
  await upsertContactsBatch(deps.db, shopId, inputs, { requestId: deps.requestId ?? null });
  await applyShopifyOrderStats(deps.db, shopId, stats);
  return inputs.length;
}
