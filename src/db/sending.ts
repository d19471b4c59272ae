/**
 * Delivery's read at send time, in one statement: the message, whether its shop is still installed, its contact, and
 * every number-wide STOP recorded for the recipient's number. What the send-time checks decide from it is delivery's;
 * this module only fetches. Prepared once per database handle (src/db/prepared.ts).
 */
import { eq, sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { param, perHandle } from './prepared.js';
import { contacts, messages, shops, type Contact, type Message } from './schema.js';

/** A number-wide STOP on the recipient's number, through the sender it was sent to. */
export interface RecipientOptOut {
  sender: string;
  optedOutAt: Date;
}

export interface SendingView {
  message: Message;
  /** Null while the shop is installed. */
  shopUninstalledAt: Date | null;
  /** The message's contact (same shop), if it has one and it still exists. */
  contact: Contact | undefined;
  /** Every STOP on the recipient's number, whichever sender it names (usually none). */
  optOuts: RecipientOptOut[];
}

const readStatement = perHandle((db) =>
  db
    .select({
      message: messages,
      shopUninstalledAt: shops.uninstalledAt,
      contact: contacts,
      optOuts: sql<Array<{ sender: string; at: string }>>`(
        SELECT coalesce(json_agg(json_build_object('sender', o.sender, 'at', o.opted_out_at)), '[]'::json)
          FROM sender_opt_outs o WHERE o.phone = ${messages.toPhone})`,
    })
    .from(messages)
    .innerJoin(shops, eq(shops.id, messages.shopId))
    .leftJoin(contacts, sql`${contacts.id} = ${messages.contactId} AND ${contacts.shopId} = ${messages.shopId}`)
    .where(eq(messages.id, param('id')))
    .prepare('sending_read'),
);

export async function readForSending(db: Db, messageId: number): Promise<SendingView | undefined> {
  const [row] = await readStatement(db).execute({ id: messageId });
  if (!row) return undefined;
  return {
    message: row.message,
    shopUninstalledAt: row.shopUninstalledAt,
    contact: row.contact ?? undefined,
    optOuts: (row.optOuts ?? []).map((o) => ({ sender: o.sender, optedOutAt: new Date(o.at) })),
  };
}
