/**
 * Named database operations on `messages` and `message_skips`.
 *
 * The message row is the source of truth for "was this sent?": it is created (unique idempotency key) before any
 * send, claimed with a conditional UPDATE (`queued` → `sending`) so only one worker can send it, and only ever moves
 * forward (`delivered` is final).
 */
import { and, eq, gt, inArray, sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { idArray, nullable, param, perHandle } from './prepared.js';
import { rowsOf } from './rows.js';
import { contacts, messages, messageSkips, type Message, type MessageKind } from './schema.js';

export interface NewMessage {
  shopId: number;
  contactId: number | null;
  automationId?: number | null;
  campaignId?: string | null;
  kind: MessageKind;
  trigger: string | null;
  idempotencyKey: string;
  toPhone: string | null;
  sender: string | null;
  body: string;
  encoding: 'GSM-7' | 'UCS-2';
  segments: number;
  costEstimate: number;
  renderWarnings: string[];
  scheduledFor: Date | null;
  requestId: string | null;
  /** The checkout an abandoned-checkout reminder is about. */
  checkoutToken?: string | null;
}

export type ReserveResult =
  | { outcome: 'created'; message: Message }
  | { outcome: 'duplicate'; message: Message }
  | { outcome: 'capped'; recent: number };

/** Statuses that count toward a frequency cap: anything that was or may still be sent. */
const COUNTED = ['queued', 'sending', 'sent', 'delivered'] as const;

/**
 * Creates the message unless one with the same idempotency key exists, and — for capped messages — unless the contact
 * already has `cap.max` marketing messages in the window ending at the message's send time (`scheduledFor`, else
 * `now`). The contact row is locked for the transaction, so concurrent reservations for one contact are serialised and
 * the cap holds exactly. Without a contact, a concurrent insert of the same key is resolved by the unique index.
 */
export async function reserveMessage(
  db: Db,
  m: NewMessage,
  cap: { max: number; windowHours: number } | null,
  now: Date = new Date(),
): Promise<ReserveResult> {
  if (!cap) {
    // Nothing to count: the unique (shop, idempotency key) index alone makes the reservation exactly-once, in one
    // statement on the usual path.
    return insertUnlessKeyTaken(db, m);
  }
  return db.transaction(async (tx) => {
    if (m.contactId !== null) {
      await tx.select({ id: contacts.id }).from(contacts).where(eq(contacts.id, m.contactId)).for('update');
    }
    const [existing] = await tx
      .select()
      .from(messages)
      .where(and(eq(messages.shopId, m.shopId), eq(messages.idempotencyKey, m.idempotencyKey)));
    if (existing) return { outcome: 'duplicate', message: existing };
    if (m.contactId !== null) {
      const since = new Date((m.scheduledFor ?? now).getTime() - cap.windowHours * 3_600_000);
      const [row] = await tx
        .select({ n: sql<number>`count(*)::int` })
        .from(messages)
        .where(
          and(
            eq(messages.shopId, m.shopId),
            eq(messages.contactId, m.contactId),
            eq(messages.kind, 'marketing'),
            inArray(messages.status, [...COUNTED]),
            gt(sql`coalesce(${messages.scheduledFor}, ${messages.createdAt})`, since),
          ),
        );
      const recent = Number(row?.n ?? 0);
      if (recent >= cap.max) return { outcome: 'capped', recent };
    }
    return insertUnlessKeyTaken(tx, m);
  });
}

const insertMessage = perHandle((db) =>
  db
    .insert(messages)
    .values({
      shopId: param('shopId'),
      contactId: nullable('contactId', 'bigint'),
      automationId: nullable('automationId', 'bigint'),
      campaignId: nullable('campaignId', 'text'),
      kind: param('kind'),
      trigger: nullable('trigger', 'text'),
      idempotencyKey: param('idempotencyKey'),
      toPhone: nullable('toPhone', 'text'),
      sender: nullable('sender', 'text'),
      body: param('body'),
      encoding: param('encoding'),
      segments: param('segments'),
      costEstimate: param('costEstimate'),
      // A JSON list, unpacked in the statement: the same on `pg` and PGlite, whatever the warnings contain.
      renderWarnings: sql`ARRAY(SELECT jsonb_array_elements_text(${param('renderWarnings')}::jsonb))`,
      scheduledFor: nullable('scheduledFor', 'timestamptz'),
      requestId: nullable('requestId', 'text'),
      checkoutToken: nullable('checkoutToken', 'text'),
    })
    .onConflictDoNothing({ target: [messages.shopId, messages.idempotencyKey] })
    .returning()
    .prepare('message_insert'),
);

const messageByKey = perHandle((db) =>
  db
    .select()
    .from(messages)
    .where(and(eq(messages.shopId, param('shopId')), eq(messages.idempotencyKey, param('idempotencyKey'))))
    .prepare('message_by_key'),
);

/** Inserts the message, or returns the row that already holds its idempotency key (a retry, or a concurrent twin). */
async function insertUnlessKeyTaken(db: Db, m: NewMessage): Promise<ReserveResult> {
  const [created] = await insertMessage(db).execute({
    shopId: m.shopId,
    contactId: m.contactId,
    automationId: m.automationId ?? null,
    campaignId: m.campaignId ?? null,
    kind: m.kind,
    trigger: m.trigger,
    idempotencyKey: m.idempotencyKey,
    toPhone: m.toPhone,
    sender: m.sender,
    body: m.body,
    encoding: m.encoding,
    segments: m.segments,
    costEstimate: m.costEstimate.toFixed(4),
    renderWarnings: JSON.stringify(m.renderWarnings),
    scheduledFor: m.scheduledFor?.toISOString() ?? null,
    requestId: m.requestId,
    checkoutToken: m.checkoutToken ?? null,
  });
  if (created) return { outcome: 'created', message: created };
  const [winner] = await messageByKey(db).execute({ shopId: m.shopId, idempotencyKey: m.idempotencyKey });
  return { outcome: 'duplicate', message: winner! };
}

export async function getMessage(db: Db, id: number): Promise<Message | undefined> {
  const [row] = await db.select().from(messages).where(eq(messages.id, id));
  return row;
}

/** What a claim writes: `sending`, by which provider, since when, one more attempt. */
const claimedBy = () =>
  ({
    status: 'sending',
    provider: sql`${param('provider')}`,
    sendingAt: sql`now()`,
    sendAttempts: sql`${messages.sendAttempts} + 1`,
    updatedAt: sql`now()`,
  }) as const;

const claim = perHandle((db) =>
  db
    .update(messages)
    .set(claimedBy())
    .where(and(eq(messages.id, param('id')), eq(messages.status, 'queued')))
    .returning({ id: messages.id })
    .prepare('message_claim'),
);

/** `queued` → `sending`, for exactly one caller. True when this caller claimed it; false if it was not `queued`. */
export async function claimForSending(db: Db, id: number, provider: string): Promise<boolean> {
  const rows = await claim(db).execute({ id, provider });
  return rows.length > 0;
}

const claimMany = perHandle((db) =>
  db
    .update(messages)
    .set(claimedBy())
    .where(and(sql`${messages.id} = ANY(${param('ids')}::bigint[])`, eq(messages.status, 'queued')))
    .returning({ id: messages.id })
    .prepare('message_claim_many'),
);

/** {@link claimForSending} for several messages in one statement: the ids this caller claimed (the others were not `queued`). */
export async function claimManyForSending(db: Db, ids: readonly number[], provider: string): Promise<Set<number>> {
  if (ids.length === 0) return new Set();
  const rows = await claimMany(db).execute({ ids: idArray(ids), provider });
  return new Set(rows.map((r) => r.id));
}

/** Back to `queued` after a failure that certainly did not reach the provider, so a retry may send it. */
export async function releaseClaim(db: Db, id: number, error: { code: string; text: string }): Promise<void> {
  await db
    .update(messages)
    .set({ status: 'queued', errorCode: error.code, errorText: error.text, updatedAt: sql`now()` })
    .where(and(eq(messages.id, id), eq(messages.status, 'sending')));
}

const sent = perHandle((db) =>
  db
    .update(messages)
    .set({
      status: sql`CASE WHEN ${messages.status} IN ('delivered', 'failed') THEN ${messages.status} ELSE 'sent' END`,
      providerMessageId: sql`coalesce(${messages.providerMessageId}, ${param('providerMessageId')})`,
      sentAt: sql`coalesce(${messages.sentAt}, ${param('at')}::timestamptz)`,
      errorCode: null,
      errorText: null,
      updatedAt: sql`now()`,
    })
    .where(eq(messages.id, param('id')))
    .prepare('message_sent'),
);

export async function markSent(db: Db, id: number, providerMessageId: string, at: Date): Promise<void> {
  await sent(db).execute({ id, providerMessageId, at: at.toISOString() });
}

/**
 * {@link markSent} for several messages in one statement: each row's provider id and acceptance time travel as one
 * JSON parameter.
 */
export async function markManySent(db: Db, sends: ReadonlyArray<{ id: number; providerMessageId: string; at: Date }>): Promise<void> {
  if (sends.length === 0) return;
  const rows = JSON.stringify(sends.map((s) => ({ id: s.id, pid: s.providerMessageId, at: s.at.toISOString() })));
  await db.execute(sql`
    UPDATE messages m
       SET status = CASE WHEN m.status IN ('delivered', 'failed') THEN m.status ELSE 'sent' END,
           provider_message_id = coalesce(m.provider_message_id, s.pid),
           sent_at = coalesce(m.sent_at, s.at),
           error_code = NULL, error_text = NULL, updated_at = now()
      FROM json_to_recordset(${rows}::json) AS s(id bigint, pid text, at timestamptz)
     WHERE m.id = s.id`);
}

/** {@link releaseClaim} for several messages in one statement. */
export async function releaseClaims(db: Db, ids: readonly number[], error: { code: string; text: string }): Promise<void> {
  if (ids.length === 0) return;
  await db
    .update(messages)
    .set({ status: 'queued', errorCode: error.code, errorText: error.text, updatedAt: sql`now()` })
    .where(and(sql`${messages.id} = ANY(${idArray(ids)}::bigint[])`, eq(messages.status, 'sending')));
}

export async function markFailed(db: Db, id: number, error: { code: string; text: string }): Promise<void> {
  await db
    .update(messages)
    .set({ status: 'failed', errorCode: error.code, errorText: error.text, failedAt: sql`now()`, updatedAt: sql`now()` })
    .where(and(eq(messages.id, id), inArray(messages.status, ['queued', 'sending', 'sent'])));
}

/** A queued message that will not be sent (consent withdrawn, checkout recovered, shop uninstalled, ...). */
export async function markNotSent(db: Db, id: number, status: 'skipped' | 'cancelled', reason: string): Promise<boolean> {
  const rows = await db
    .update(messages)
    .set({ status, errorCode: reason, updatedAt: sql`now()` })
    .where(and(eq(messages.id, id), eq(messages.status, 'queued')))
    .returning({ id: messages.id });
  return rows.length > 0;
}

/** Error code of a message whose send may have reached the provider but that no delivery report ever confirmed. */
export const UNCONFIRMED = 'DELIVERY_UNCONFIRMED';

export interface DeliveryReportUpdate {
  providerMessageId: string | null;
  /** Our message id, echoed by the provider. */
  reference: string | null;
  status: 'delivered' | 'failed' | 'pending';
  errorCode: string | null;
  at: Date;
}

/** The statuses a report of each kind may move a message from (and a message failed as unconfirmed, from any). */
const REPORT_FROM = {
  delivered: ['sending', 'sent', 'failed'],
  failed: ['sending', 'sent'],
  pending: ['sending'],
} as const satisfies Record<DeliveryReportUpdate['status'], readonly Message['status'][]>;

type ReportResult = { message: Pick<Message, 'id' | 'status'>; changed: boolean } | undefined;

/**
 * Applies a delivery report. Reports only move a message forward: `delivered` is final, and a late `failed` never
 * overrides it. A report is also the reconciliation of an ambiguous send: a message still `sending` that gets a report
 * was accepted by the provider, and so was one failed as {@link UNCONFIRMED} whose report comes late. Returns
 * undefined when no message matches. One report is a batch of one: the rules live in {@link applyDeliveryReports}.
 */
export async function applyDeliveryReport(db: Db, provider: string, r: DeliveryReportUpdate): Promise<ReportResult> {
  const [result] = await applyDeliveryReports(db, provider, [r]);
  return result;
}

/**
 * Delivery reports, several in one statement (see {@link applyDeliveryReport} for the rules): each report moves its
 * message forward only, from the statuses its kind allows. Reports naming the same message are applied one after the
 * other in the order given (one UPDATE can change a row once): the first in this statement, each later one in the next.
 * Results in the order of `reports`.
 */
export async function applyDeliveryReports(db: Db, provider: string, reports: readonly DeliveryReportUpdate[]): Promise<ReportResult[]> {
  const out: ReportResult[] = new Array(reports.length).fill(undefined);
  let todo = reports.map((r, i) => ({ r, i }));
  while (todo.length > 0) {
    const rows = await settleReports(db, provider, todo);
    const again = new Set<number>();
    for (const row of rows) {
      if (row.nth > 1) again.add(row.i);
      else if (row.id !== null) {
        const id = Number(row.id);
        out[row.i] = row.updated !== null
          ? { message: { id, status: row.updated as Message['status'] }, changed: true }
          : { message: { id, status: row.current as Message['status'] }, changed: false };
      }
    }
    todo = todo.filter((t) => again.has(t.i));
  }
  return out;
}

const statusArray = (statuses: readonly string[]) => `{${statuses.join(',')}}`;

async function settleReports(db: Db, provider: string, todo: ReadonlyArray<{ r: DeliveryReportUpdate; i: number }>) {
  const items = JSON.stringify(
    todo.map(({ r, i }) => ({
      i,
      pid: r.providerMessageId,
      ref: r.reference && /^\d{1,18}$/.test(r.reference) ? r.reference : null,
      status: r.status,
      at: r.at.toISOString(),
      code: r.errorCode ?? 'DELIVERY_FAILED',
    })),
  );
  return rowsOf<{ i: number; nth: number; id: string | number | null; updated: string | null; current: string | null }>(
    db,
    sql`
    WITH found AS (
      SELECT r.*, (SELECT t.id FROM messages t
                    WHERE (t.provider = ${provider} AND t.provider_message_id = r.pid) OR t.id = r.ref LIMIT 1) AS target
        FROM json_to_recordset(${items}::json) AS r(i int, pid text, ref bigint, status text, at timestamptz, code text)
    ), r AS (
      SELECT found.*, CASE WHEN target IS NULL THEN 1 ELSE row_number() OVER (PARTITION BY target ORDER BY i)::int END AS nth FROM found
    ), u AS (
      UPDATE messages m SET
        status = CASE r.status WHEN 'delivered' THEN 'delivered' WHEN 'failed' THEN 'failed' ELSE 'sent' END,
        delivered_at = CASE WHEN r.status = 'delivered' THEN r.at ELSE m.delivered_at END,
        failed_at = CASE r.status WHEN 'failed' THEN r.at WHEN 'pending' THEN NULL ELSE m.failed_at END,
        sent_at = CASE WHEN r.status = 'failed' THEN m.sent_at ELSE coalesce(m.sent_at, r.at) END,
        error_code = CASE WHEN r.status = 'failed' THEN r.code END,
        error_text = CASE WHEN r.status = 'failed' THEN 'delivery report: failed' END,
        provider_message_id = coalesce(m.provider_message_id, r.pid),
        updated_at = now()
        FROM r
       WHERE m.id = r.target AND r.nth = 1
         AND (m.status = ANY(CASE r.status WHEN 'delivered' THEN ${statusArray(REPORT_FROM.delivered)}::text[]
                                           WHEN 'failed' THEN ${statusArray(REPORT_FROM.failed)}::text[]
                                           ELSE ${statusArray(REPORT_FROM.pending)}::text[] END)
              OR (m.status = 'failed' AND m.error_code = ${UNCONFIRMED}))
      RETURNING m.id, m.status
    )
    SELECT r.i, r.nth, r.target AS id, u.status AS updated, cur.status AS current
      FROM r LEFT JOIN u ON u.id = r.target AND r.nth = 1 LEFT JOIN messages cur ON cur.id = r.target`,
  );
}

export interface NewSkip {
  shopId: number;
  contactId: number | null;
  automationId?: number | null;
  campaignId?: string | null;
  messageId?: number | null;
  trigger: string | null;
  objectId: string | null;
  reason: string;
  detail?: string | null;
  requestId: string | null;
}

export async function recordSkip(db: Db, s: NewSkip): Promise<void> {
  await db.insert(messageSkips).values(s);
}

export async function listSkips(db: Db, shopId: number, contactId?: number) {
  return db
    .select()
    .from(messageSkips)
    .where(and(eq(messageSkips.shopId, shopId), contactId ? eq(messageSkips.contactId, contactId) : undefined))
    .orderBy(messageSkips.id);
}

export async function listMessagesForContact(db: Db, shopId: number, contactId: number): Promise<Message[]> {
  return db
    .select()
    .from(messages)
    .where(and(eq(messages.shopId, shopId), eq(messages.contactId, contactId)))
    .orderBy(messages.id);
}

/** Statuses of a message that went out (or may have): the customer may be answering it. */
const TEXTED = ['sending', 'sent', 'delivered'] as const;

/**
 * The shop that last texted this phone from this sender: where a reply to that sender belongs. Only messages that
 * went out count: a message skipped, cancelled or still queued was never seen by the customer, and with a sender
 * shared by several shops it would send their STOP to a shop that never texted them.
 */
export async function shopForReply(db: Db, phone: string, sender: string | null): Promise<{ shopId: number; contactId: number } | undefined> {
  const [row] = await db
    .select({ shopId: messages.shopId, contactId: messages.contactId })
    .from(messages)
    .where(and(eq(messages.toPhone, phone), sender ? eq(messages.sender, sender) : undefined, inArray(messages.status, [...TEXTED])))
    .orderBy(sql`coalesce(${messages.sentAt}, ${messages.sendingAt}, ${messages.createdAt}) DESC`, sql`${messages.id} DESC`)
    .limit(1);
  return row && row.contactId !== null ? { shopId: row.shopId, contactId: row.contactId } : undefined;
}

/**
 * Send times (ms) of the contact's marketing messages since `since`, for the rule pipeline's advisory cap check.
 * `exceptKey` leaves out the message being evaluated, which an earlier attempt of the same job may have created.
 */
export async function recentMarketingSends(db: Db, shopId: number, contactId: number, since: Date, exceptKey?: string): Promise<number[]> {
  const rows = await db
    .select({ at: sql<Date>`coalesce(${messages.scheduledFor}, ${messages.createdAt})` })
    .from(messages)
    .where(
      and(
        eq(messages.shopId, shopId),
        eq(messages.contactId, contactId),
        eq(messages.kind, 'marketing'),
        inArray(messages.status, [...COUNTED]),
        gt(sql`coalesce(${messages.scheduledFor}, ${messages.createdAt})`, since),
        exceptKey !== undefined ? sql`${messages.idempotencyKey} <> ${exceptKey}` : undefined,
      ),
    );
  return rows.map((r) => new Date(r.at).getTime());
}

export interface MessageSearch {
  status?: Message['status'];
  contactId?: number;
  limit: number;
  /** Keyset pagination: messages with a smaller id than this (newest first). */
  beforeId?: number;
}

/** One page of a shop's messages, newest first. */
export async function listMessages(db: Db, shopId: number, search: MessageSearch): Promise<Message[]> {
  return db
    .select()
    .from(messages)
    .where(
      and(
        eq(messages.shopId, shopId),
        search.status ? eq(messages.status, search.status) : undefined,
        search.contactId !== undefined ? eq(messages.contactId, search.contactId) : undefined,
        search.beforeId ? sql`${messages.id} < ${search.beforeId}` : undefined,
      ),
    )
    .orderBy(sql`${messages.id} DESC`)
    .limit(search.limit);
}

/** The sender number of the shop's latest message to `phone`; null when it never wrote to them. */
export async function lastSenderTo(db: Db, shopId: number, phone: string): Promise<string | null> {
  const [row] = await db
    .select({ sender: messages.sender })
    .from(messages)
    .where(and(eq(messages.shopId, shopId), eq(messages.toPhone, phone)))
    .orderBy(sql`${messages.id} DESC`)
    .limit(1);
  return row?.sender ?? null;
}

/** The shop's message with this idempotency key, if one exists (the simulator's dedupe check; reads only). */
export async function findMessageByKey(db: Db, shopId: number, idempotencyKey: string): Promise<Message | undefined> {
  const [row] = await db
    .select()
    .from(messages)
    .where(and(eq(messages.shopId, shopId), eq(messages.idempotencyKey, idempotencyKey)));
  return row;
}

/** Message rows by status across every shop (the `/metrics` gauge). */
export async function countMessagesByStatus(db: Db): Promise<Record<string, number>> {
  const rows = await db.select({ status: messages.status, n: sql<number>`count(*)::int` }).from(messages).groupBy(messages.status);
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}
