/**
 * Named database operations on `shop_tokens` (migration 0009). The columns hold ciphertext only: callers encrypt and
 * decrypt (src/shopify/tokens.ts), so nothing here ever sees a usable token.
 */
import { sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { rowsOf } from './rows.js';

export interface StoredShopToken {
  shopId: number;
  /** Ciphertext (`<key id>:<iv>:<tag>:<data>`). */
  accessToken: string;
  scope: string | null;
  /** Null for a non-expiring offline token. */
  expiresAt: Date | null;
  refreshToken: string | null;
  refreshExpiresAt: Date | null;
}

interface Row {
  shop_id: string | number;
  access_token: string;
  scope: string | null;
  expires_at: string | Date | null;
  refresh_token: string | null;
  refresh_expires_at: string | Date | null;
}

const date = (v: string | Date | null) => (v === null ? null : new Date(v));

export async function getShopToken(db: Db, shopId: number): Promise<StoredShopToken | undefined> {
  const [row] = await rowsOf<Row>(db, sql`SELECT * FROM shop_tokens WHERE shop_id = ${shopId}`);
  return row && {
    shopId: Number(row.shop_id),
    accessToken: row.access_token,
    scope: row.scope,
    expiresAt: date(row.expires_at),
    refreshToken: row.refresh_token,
    refreshExpiresAt: date(row.refresh_expires_at),
  };
}

export async function hasShopToken(db: Db, shopId: number): Promise<boolean> {
  const rows = await rowsOf(db, sql`SELECT 1 FROM shop_tokens WHERE shop_id = ${shopId}`);
  return rows.length > 0;
}

export async function saveShopToken(db: Db, token: StoredShopToken): Promise<void> {
  await db.execute(sql`
    INSERT INTO shop_tokens (shop_id, access_token, scope, expires_at, refresh_token, refresh_expires_at)
    VALUES (${token.shopId}, ${token.accessToken}, ${token.scope}, ${token.expiresAt?.toISOString() ?? null},
            ${token.refreshToken}, ${token.refreshExpiresAt?.toISOString() ?? null})
    ON CONFLICT (shop_id) DO UPDATE SET
      access_token = EXCLUDED.access_token, scope = EXCLUDED.scope, expires_at = EXCLUDED.expires_at,
      refresh_token = EXCLUDED.refresh_token, refresh_expires_at = EXCLUDED.refresh_expires_at, updated_at = now()`);
}

/** Returns whether a token was deleted. */
export async function deleteShopToken(db: Db, shopId: number): Promise<boolean> {
  const rows = await rowsOf(db, sql`DELETE FROM shop_tokens WHERE shop_id = ${shopId} RETURNING shop_id`);
  return rows.length > 0;
}

/** Domains of installed shops that hold a token: the weekly reconcile re-syncs each. */
export async function listSyncableShops(db: Db): Promise<string[]> {
  const rows = await rowsOf<{ domain: string }>(
    db,
    sql`SELECT s.domain FROM shops s JOIN shop_tokens t ON t.shop_id = s.id WHERE s.uninstalled_at IS NULL ORDER BY s.id`,
  );
  return rows.map((r) => r.domain);
}
