/** Named database operations on `checkouts`: abandonments and their recovery. */
import { and, eq, sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { nullable, param, perHandle } from './prepared.js';
import { checkouts, type Checkout } from './schema.js';

/**
 * Records a checkout update. The first sighting fixes `abandoned_at` (when the checkout was started); `last_seen_at`
 * only moves forward and is the customer's last activity, which the 48 h limit on reminders counts from.
 */
export async function upsertCheckout(
  db: Db,
  shopId: number,
  c: {
    token: string;
    contactId: number | null;
    recoveryUrl: string | null;
    /** When the checkout was created; default `seenAt`. */
    startedAt?: Date | null;
    /** When it was last updated (the update being recorded). */
    seenAt: Date;
    completedAt: Date | null;
  },
): Promise<Checkout> {
  const [row] = await db
    .insert(checkouts)
    .values({
      shopId,
      token: c.token,
      contactId: c.contactId,
      recoveryUrl: c.recoveryUrl,
      abandonedAt: c.startedAt ?? c.seenAt,
      lastSeenAt: c.seenAt,
      completedAt: c.completedAt,
    })
    .onConflictDoUpdate({
      target: [checkouts.shopId, checkouts.token],
      set: {
        contactId: sql`coalesce(excluded.contact_id, ${checkouts.contactId})`,
        recoveryUrl: sql`coalesce(excluded.recovery_url, ${checkouts.recoveryUrl})`,
        lastSeenAt: sql`greatest(excluded.last_seen_at, ${checkouts.lastSeenAt})`,
        completedAt: sql`coalesce(${checkouts.completedAt}, excluded.completed_at)`,
      },
    })
    .returning();
  return row!;
}

/** Marks a checkout recovered (an order carried its token); creates the row if the order came first. */
const checkoutCompleted = perHandle((db) =>
  db
    .insert(checkouts)
    .values({
      shopId: param('shopId'),
      token: param('token'),
      abandonedAt: nullable('at', 'timestamptz'),
      lastSeenAt: nullable('at', 'timestamptz'),
      completedAt: nullable('at', 'timestamptz'),
    })
    .onConflictDoUpdate({
      target: [checkouts.shopId, checkouts.token],
      set: { completedAt: sql`coalesce(${checkouts.completedAt}, excluded.completed_at)` },
    })
    .prepare('checkout_completed'),
);

export async function completeCheckout(db: Db, shopId: number, token: string, at: Date): Promise<void> {
  await checkoutCompleted(db).execute({ shopId, token, at: at.toISOString() });
}

export async function getCheckout(db: Db, shopId: number, token: string): Promise<Checkout | undefined> {
  const [row] = await db
    .select()
    .from(checkouts)
    .where(and(eq(checkouts.shopId, shopId), eq(checkouts.token, token)));
  return row;
}
