/**
 * Named database operations on `segments`, the audience queries compiled from them, and the contact order statistics
 * they filter on (`contact_orders`, `contacts.orders_count|total_spent|last_order_at`).
 */
import { and, desc, eq, sql } from 'drizzle-orm';
import { compileSegment, MARKETING_CONSENT_SQL, type SegmentFilter } from './segmentFilter.js';
import type { Db } from './client.js';
import { contacts, segments, type Contact, type Segment } from './schema.js';

export async function createSegment(db: Db, shopId: number, name: string, filter: SegmentFilter): Promise<Segment> {
  const [row] = await db.insert(segments).values({ shopId, name, filter }).returning();
  return row!;
}

export async function updateSegment(db: Db, shopId: number, id: number, patch: { name?: string; filter?: SegmentFilter }): Promise<Segment | undefined> {
  const [row] = await db
    .update(segments)
    .set({ ...patch, updatedAt: sql`now()` })
    .where(and(eq(segments.shopId, shopId), eq(segments.id, id)))
    .returning();
  return row;
}

export async function getSegment(db: Db, shopId: number, id: number): Promise<Segment | undefined> {
  const [row] = await db.select().from(segments).where(and(eq(segments.shopId, shopId), eq(segments.id, id)));
  return row;
}

export async function listSegments(db: Db, shopId: number): Promise<Segment[]> {
  return db.select().from(segments).where(eq(segments.shopId, shopId)).orderBy(desc(segments.id));
}

export async function deleteSegment(db: Db, shopId: number, id: number): Promise<boolean> {
  const rows = await db.delete(segments).where(and(eq(segments.shopId, shopId), eq(segments.id, id))).returning({ id: segments.id });
  return rows.length > 0;
}

export interface AudienceQuery {
  shopId: number;
  filter: SegmentFilter;
  now: Date;
  /** Only contacts a marketing message may go to. */
  marketingConsent?: boolean;
}

function audienceWhere(q: AudienceQuery) {
  return and(eq(contacts.shopId, q.shopId), compileSegment(q.filter, { now: q.now }), q.marketingConsent ? MARKETING_CONSENT_SQL : undefined);
}

export async function countAudience(db: Db, q: AudienceQuery): Promise<number> {
  const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(contacts).where(audienceWhere(q));
  return Number(row?.n ?? 0);
}

/** The first `limit` matching contacts in id order. */
export async function sampleAudience(db: Db, q: AudienceQuery, limit: number): Promise<Contact[]> {
  return db.select().from(contacts).where(audienceWhere(q)).orderBy(contacts.id).limit(limit);
}

export interface OrderStat {
  orderId: string;
  total: number;
  orderedAt: Date;
}

/**
 * Counts an order toward the contact's statistics, once per order: a second webhook for the same order (orders/create
 * then orders/paid, or a retry) finds its `contact_orders` row and changes nothing. One statement, so a crash cannot
 * count the order without recording it or the other way round.
 */
export async function recordContactOrder(db: Db, shopId: number, contactId: number, o: OrderStat): Promise<boolean> {
  const total = Number.isFinite(o.total) ? o.total.toFixed(2) : '0';
  const rows = await db.execute(sql`
    WITH ins AS (
      INSERT INTO contact_orders (shop_id, order_id, contact_id, total, ordered_at)
      VALUES (${shopId}, ${o.orderId}, ${contactId}, ${total}::numeric, ${o.orderedAt.toISOString()}::timestamptz)
      ON CONFLICT (shop_id, order_id) DO NOTHING
      RETURNING contact_id, total, ordered_at
    )
    UPDATE contacts SET
      orders_count = contacts.orders_count + 1,
      total_spent = contacts.total_spent + ins.total,
      last_order_at = greatest(contacts.last_order_at, ins.ordered_at),
      updated_at = now()
    FROM ins WHERE contacts.id = ins.contact_id
    RETURNING contacts.id`);
  const list = Array.isArray(rows) ? rows : ((rows as { rows?: unknown[] }).rows ?? []);
  return list.length > 0;
}
