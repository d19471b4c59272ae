/**
 * Delivery's read at send time, in one statement: the message, whether its shop is still installed, its contact, and
 * every number-wide STOP recorded for the recipient's number. What the send-time checks decide from it is delivery's;
 * this module only fetches. Prepared once per database handle (src/db/prepared.ts).
 */
import { eq, sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { idArray, param, perHandle } from './prepared.js';
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

/** The message with its shop, contact and STOPs; each statement below adds its WHERE. */
const viewOf = (db: Db) =>
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
    .leftJoin(contacts, sql`${contacts.id} = ${messages.contactId} AND ${contacts.shopId} = ${messages.shopId}`);

const readStatement = perHandle((db) => viewOf(db).where(eq(messages.id, param('id'))).prepare('sending_read'));

type ReadRow = Awaited<ReturnType<ReturnType<typeof readStatement>['execute']>>[number];

function toView(row: ReadRow): SendingView {
  return {
    message: row.message,
    shopUninstalledAt: row.shopUninstalledAt,
    contact: row.contact ?? undefined,
    optOuts: (row.optOuts ?? []).map((o) => ({ sender: o.sender, optedOutAt: new Date(o.at) })),
  };
}

export async function readForSending(db: Db, messageId: number): Promise<SendingView | undefined> {
  const [row] = await readStatement(db).execute({ id: messageId });
  return row ? toView(row) : undefined;
}

const readManyStatement = perHandle((db) =>
  viewOf(db).where(sql`${messages.id} = ANY(${param('ids')}::bigint[])`).orderBy(messages.id).prepare('sending_read_many'),
);

/** The same read for several messages (a campaign's send batch), in one statement. Missing ids are left out. */
export async function readManyForSending(db: Db, messageIds: readonly number[]): Promise<SendingView[]> {
  if (messageIds.length === 0) return [];
  const rows = await readManyStatement(db).execute({ ids: idArray(messageIds) });
  return rows.map(toView);
}
