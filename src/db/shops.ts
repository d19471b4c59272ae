/** Named database operations on `shops`. */
import { eq, sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { shopChanged } from './changes.js';
import { param, perHandle } from './prepared.js';
import { shops, type Shop } from './schema.js';

/**
 * Returns the shop for a domain, creating it on first sight. A shop seen again after `app/uninstalled` is not
 * re-installed here: only an explicit install does that.
 */
export async function upsertShop(db: Db, domain: string): Promise<{ shop: Shop; created: boolean }> {
  // Read first: every event names its shop, and all but the first find it; an insert attempt per event is a write.
  const [existing] = await shopByDomain(db).execute({ domain });
  if (existing) return { shop: existing, created: false };
  const inserted = await db.insert(shops).values({ domain }).onConflictDoNothing({ target: shops.domain }).returning();
  if (inserted[0]) return { shop: inserted[0], created: true };
  const [shop] = await db.select().from(shops).where(eq(shops.domain, domain));
  if (!shop) throw new Error(`shop ${domain} vanished between insert and select`);
  return { shop, created: false };
}

export async function getShopById(db: Db, id: number): Promise<Shop | undefined> {
  const [shop] = await db.select().from(shops).where(eq(shops.id, id));
  return shop;
}

const shopByDomain = perHandle((db) => db.select().from(shops).where(eq(shops.domain, param('domain'))).prepare('shop_by_domain'));

export async function getShopByDomain(db: Db, domain: string): Promise<Shop | undefined> {
  const [shop] = await shopByDomain(db).execute({ domain });
  return shop;
}

export async function markShopUninstalled(db: Db, domain: string, at: Date): Promise<boolean> {
  const rows = await db
    .update(shops)
    .set({ uninstalledAt: at, updatedAt: sql`now()` })
    .where(eq(shops.domain, domain))
    .returning({ id: shops.id });
  shopChanged({ domain });
  return rows.length > 0;
}

export async function markShopInstalled(db: Db, domain: string, at: Date): Promise<void> {
  await db
    .insert(shops)
    .values({ domain, installedAt: at })
    .onConflictDoUpdate({ target: shops.domain, set: { installedAt: at, uninstalledAt: null, updatedAt: sql`now()` } });
  shopChanged({ domain });
}

export interface ShopSettingsUpdate {
  /** New IANA zone for the `timezone` column; undefined leaves it. */
  timezone?: string;
  /** Top-level keys of `settings` to set (shallow: a nested object replaces the stored one). */
  set?: Record<string, unknown>;
  /** Top-level keys of `settings` to remove (back to the default). */
  unset?: string[];
}

/** Updates a shop's time zone and settings in one statement (concurrent updates of other keys are not lost). */
export async function updateShopSettings(db: Db, shopId: number, update: ShopSettingsUpdate): Promise<Shop | undefined> {
  const set = JSON.stringify(update.set ?? {});
  const unset = update.unset ?? [];
  const [row] = await db
    .update(shops)
    .set({
      ...(update.timezone !== undefined ? { timezone: update.timezone } : {}),
      settings: unset.length
        ? sql`(${shops.settings} || ${set}::jsonb) - ${sql.raw(`ARRAY[${unset.map((k) => `'${k.replace(/'/g, "''")}'`).join(',')}]::text[]`)}`
        : sql`${shops.settings} || ${set}::jsonb`,
      updatedAt: sql`now()`,
    })
    .where(eq(shops.id, shopId))
    .returning();
  shopChanged({ shopId });
  return row;
}

/** What `shop/update` reports; null fields leave the stored value alone. */
export interface ShopFacts {
  name: string | null;
  /** A valid IANA zone, or null. */
  timezone: string | null;
  countryCode: string | null;
  currency: string | null;
}

/** Stores the shop's own facts from Shopify (`shop/update`): name, time zone, country and currency. */
export async function updateShopFacts(db: Db, shopId: number, facts: ShopFacts): Promise<void> {
  const set = {
    ...(facts.name ? { name: facts.name } : {}),
    ...(facts.timezone ? { timezone: facts.timezone } : {}),
    ...(facts.countryCode ? { countryCode: facts.countryCode } : {}),
    ...(facts.currency ? { currency: facts.currency } : {}),
  };
  if (Object.keys(set).length === 0) return;
  await db
    .update(shops)
    .set({ ...set, updatedAt: sql`now()` })
    .where(eq(shops.id, shopId));
  shopChanged({ shopId });
}

/** Stores the shop's Shopify plan name (`plan { displayName }`, read by the sync); `shops.plan_name`, migration 0009. */
export async function updateShopPlan(db: Db, shopId: number, planName: string): Promise<void> {
  await db.execute(sql`UPDATE shops SET plan_name = ${planName}, updated_at = now() WHERE id = ${shopId}`);
  shopChanged({ shopId });
}
