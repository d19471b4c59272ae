/** Named database operations on `inbound_messages` and `sender_opt_outs`, and the sender → shop lookups replies need. */
import { and, eq, inArray, isNull, or, sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { contacts, inboundMessages, senderOptOuts, shops, type Contact, type InboundMessageRow, type Shop } from './schema.js';

export interface NewInbound {
  fromRaw: string;
  toNumber: string;
  text: string;
  keyword: string | null;
  providerMessageId: string | null;
  requestId: string;
}

/**
 * Stores an inbound message before anything acts on it. A provider's retry of a message already handled (same
 * provider id, outcome no longer `received`) comes back as `duplicate`; one whose first handling failed is handled
 * again.
 */
export async function recordInbound(db: Db, m: NewInbound): Promise<{ row: InboundMessageRow; duplicate: boolean }> {
  const [inserted] = await db.insert(inboundMessages).values(m).onConflictDoNothing().returning();
  if (inserted) return { row: inserted, duplicate: false };
  const [existing] = await db.select().from(inboundMessages).where(eq(inboundMessages.providerMessageId, m.providerMessageId!));
  if (!existing) throw new Error('inbound message vanished between insert and select');
  return { row: existing, duplicate: existing.outcome !== 'received' };
}

export async function settleInbound(db: Db, id: number, outcome: string, fields: { shopId?: number | null; fromPhone?: string | null } = {}): Promise<void> {
  await db
    .update(inboundMessages)
    .set({ outcome, ...(fields.shopId !== undefined ? { shopId: fields.shopId } : {}), ...(fields.fromPhone !== undefined ? { fromPhone: fields.fromPhone } : {}) })
    .where(eq(inboundMessages.id, id));
}

/** The shop whose own sender this is (a sender belongs to one shop at most). */
export async function shopOwningSender(db: Db, sender: string): Promise<Shop | undefined> {
  const [shop] = await db
    .select()
    .from(shops)
    .where(sql`${shops.settings}->>'sender' = ${sender}`)
    .limit(1);
  return shop;
}

/**
 * The contacts with this phone in every shop that sends from the platform's shared sender (no sender of its own),
 * with their shops, in shop id order.
 */
export async function contactsOnSharedSender(db: Db, phone: string, sharedSender: string): Promise<Array<{ shop: Shop; contact: Contact }>> {
  const rows = await db
    .select({ shop: shops, contact: contacts })
    .from(contacts)
    .innerJoin(shops, eq(shops.id, contacts.shopId))
    .where(and(eq(contacts.phone, phone), or(isNull(sql`${shops.settings}->>'sender'`), sql`${shops.settings}->>'sender' = ${sharedSender}`)))
    .orderBy(shops.id);
  return rows;
}

export async function addSenderOptOut(db: Db, o: { sender: string; phone: string; at: Date; source: string; requestId: string | null }): Promise<void> {
  await db
    .insert(senderOptOuts)
    .values({ sender: o.sender, phone: o.phone, optedOutAt: o.at, source: o.source, requestId: o.requestId })
    .onConflictDoUpdate({ target: [senderOptOuts.sender, senderOptOuts.phone], set: { optedOutAt: o.at, source: o.source, requestId: o.requestId } });
}

/** Lifts a number-wide opt-out (the person texted START/UNSTOP to that number). True when there was one. */
export async function removeSenderOptOut(db: Db, sender: string, phone: string): Promise<boolean> {
  const rows = await db
    .delete(senderOptOuts)
    .where(and(eq(senderOptOuts.sender, sender), eq(senderOptOuts.phone, phone)))
    .returning({ phone: senderOptOuts.phone });
  return rows.length > 0;
}

/** Erases a person's inbound messages (customer redaction): those routed to the shop, and those routed nowhere. */
export async function deleteInboundFrom(db: Db, phones: string[], shopId: number | null): Promise<number> {
  if (phones.length === 0) return 0;
  const rows = await db
    .delete(inboundMessages)
    .where(
      and(
        inArray(inboundMessages.fromPhone, phones),
        shopId === null ? undefined : or(eq(inboundMessages.shopId, shopId), isNull(inboundMessages.shopId)),
      ),
    )
    .returning({ id: inboundMessages.id });
  return rows.length;
}
