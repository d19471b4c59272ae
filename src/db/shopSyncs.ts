/** Named database operations on `shop_syncs` (migration 0009): each shop's latest customer sync and its progress. */
import { sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { rowsOf } from './rows.js';

export type SyncStatus = 'queued' | 'shop' | 'bulk_running' | 'importing' | 'done' | 'failed';

export interface ShopSync {
  shopId: number;
  status: SyncStatus;
  /** `install`, `manual` or `reconcile`. */
  reason: string;
  bulkOperationId: string | null;
  objectCount: number | null;
  /** JSONL lines of the bulk result already upserted (skipped when a sync resumes). */
  linesDone: number;
  customersSynced: number;
  error: string | null;
  startedAt: Date;
  finishedAt: Date | null;
}

interface Row {
  shop_id: string | number;
  status: SyncStatus;
  reason: string;
  bulk_operation_id: string | null;
  object_count: string | number | null;
  lines_done: string | number;
  customers_synced: string | number;
  error: string | null;
  started_at: string | Date;
  finished_at: string | Date | null;
}

function fromRow(row: Row): ShopSync {
  return {
    shopId: Number(row.shop_id),
    status: row.status,
    reason: row.reason,
    bulkOperationId: row.bulk_operation_id,
    objectCount: row.object_count === null ? null : Number(row.object_count),
    linesDone: Number(row.lines_done),
    customersSynced: Number(row.customers_synced),
    error: row.error,
    startedAt: new Date(row.started_at),
    finishedAt: row.finished_at === null ? null : new Date(row.finished_at),
  };
}

export async function getShopSync(db: Db, shopId: number): Promise<ShopSync | undefined> {
  const [row] = await rowsOf<Row>(db, sql`SELECT * FROM shop_syncs WHERE shop_id = ${shopId}`);
  return row && fromRow(row);
}

/**
 * Starts a new sync of the shop, unless one is under way (not done nor failed): that one is returned as it is, so a
 * retried or resumed job continues where it stopped.
 */
export async function beginShopSync(db: Db, shopId: number, reason: string): Promise<ShopSync> {
  const [row] = await rowsOf<Row>(
    db,
    sql`INSERT INTO shop_syncs (shop_id, status, reason) VALUES (${shopId}, 'queued', ${reason})
        ON CONFLICT (shop_id) DO UPDATE SET
          status = 'queued', reason = EXCLUDED.reason, bulk_operation_id = NULL, object_count = NULL, lines_done = 0,
          customers_synced = 0, error = NULL, started_at = now(), finished_at = NULL, updated_at = now()
        WHERE shop_syncs.status IN ('done', 'failed')
        RETURNING *`,
  );
  if (row) return fromRow(row);
  const current = await getShopSync(db, shopId);
  if (!current) throw new Error(`shop_syncs row of shop ${shopId} vanished`);
  return current;
}

export interface ShopSyncUpdate {
  status?: SyncStatus;
  bulkOperationId?: string | null;
  objectCount?: number | null;
  linesDone?: number;
  customersSynced?: number;
  error?: string | null;
}

export async function updateShopSync(db: Pick<Db, 'execute'>, shopId: number, u: ShopSyncUpdate): Promise<void> {
  const finished = u.status === 'done' || u.status === 'failed';
  await db.execute(sql`
    UPDATE shop_syncs SET
      status = COALESCE(${u.status ?? null}, status),
      bulk_operation_id = ${u.bulkOperationId === undefined ? sql`bulk_operation_id` : u.bulkOperationId},
      object_count = ${u.objectCount === undefined ? sql`object_count` : u.objectCount},
      lines_done = COALESCE(${u.linesDone ?? null}::bigint, lines_done),
      customers_synced = COALESCE(${u.customersSynced ?? null}::bigint, customers_synced),
      error = ${u.error === undefined ? sql`error` : u.error},
      finished_at = ${finished ? sql`now()` : sql`finished_at`},
      updated_at = now()
    WHERE shop_id = ${shopId}`);
}

/**
 * Order statistics as Shopify counts them (`numberOfOrders`, `amountSpent`), set on the contacts of a synced page by
 * customer id: one statement per page.
 */
export async function applyShopifyOrderStats(db: Db, shopId: number, stats: ReadonlyArray<{ customerId: string; orders: number; spent: string }>): Promise<void> {
  if (!stats.length) return;
  await db.execute(sql`
    UPDATE contacts c SET orders_count = v.orders, total_spent = v.spent, updated_at = now()
    FROM jsonb_to_recordset(${JSON.stringify(stats.map((s) => ({ customer_id: s.customerId, orders: s.orders, spent: s.spent })))}::jsonb)
      AS v(customer_id text, orders integer, spent numeric)
    WHERE c.shop_id = ${shopId} AND c.shopify_customer_id = v.customer_id
      AND (c.orders_count IS DISTINCT FROM v.orders OR c.total_spent IS DISTINCT FROM v.spent)`);
}
