/**
 * Named database operations on `campaigns`, and the statements of one audience page (run inside one transaction by
 * `src/campaigns/batch.ts`): lock the campaign, read the next keyset page of contacts, read their recent marketing
 * sends, insert the page's message rows, advance the cursor.
 *
 * The page statements take a raw {@link Querier} so they run on the transaction's own session (PostgreSQL) or inside
 * PGlite's transaction; values are always parameters.
 */
import { and, desc, eq, gt, inArray, sql } from 'drizzle-orm';
import { compileSegment, toQuery, type SegmentFilter } from './segmentFilter.js';
import type { Db, Querier } from './client.js';
import { rowsOf } from './rows.js';
import { campaigns, messages, shops, type Campaign, type CampaignSettings, type CampaignStatus, type ConsentState, type Shop } from './schema.js';

export interface NewCampaign {
  shopId: number;
  name: string;
  segmentId: number | null;
  filter: unknown;
  body: string;
  discountCode: string | null;
  linkUrl: string | null;
  settings: CampaignSettings;
}

export async function createCampaign(db: Db, c: NewCampaign): Promise<Campaign> {
  const [row] = await db.insert(campaigns).values(c).returning();
  return row!;
}

/** Changes a campaign while it is a draft; undefined when it is not (or no longer) one. */
export async function updateDraftCampaign(db: Db, id: number, patch: Partial<Omit<NewCampaign, 'shopId'>>): Promise<Campaign | undefined> {
  const [row] = await db
    .update(campaigns)
    .set({ ...patch, updatedAt: sql`now()` })
    .where(and(eq(campaigns.id, id), eq(campaigns.status, 'draft')))
    .returning();
  return row;
}

export async function getCampaign(db: Db, id: number): Promise<Campaign | undefined> {
  const [row] = await db.select().from(campaigns).where(eq(campaigns.id, id));
  return row;
}

export async function getShopCampaign(db: Db, shopId: number, id: number): Promise<Campaign | undefined> {
  const [row] = await db.select().from(campaigns).where(and(eq(campaigns.shopId, shopId), eq(campaigns.id, id)));
  return row;
}

export async function listCampaigns(db: Db, shopId: number, limit = 100): Promise<Campaign[]> {
  return db.select().from(campaigns).where(eq(campaigns.shopId, shopId)).orderBy(desc(campaigns.id)).limit(limit);
}

/**
 * Moves a campaign from one of `from` to a new state with `patch`, atomically: returns the updated row, or undefined
 * when it was in none of `from` (another request moved it first).
 */
export async function transitionCampaign(
  db: Db,
  id: number,
  from: readonly CampaignStatus[],
  patch: Partial<typeof campaigns.$inferInsert> & { status?: CampaignStatus; bumpGeneration?: boolean },
): Promise<Campaign | undefined> {
  const { bumpGeneration, ...set } = patch;
  const [row] = await db
    .update(campaigns)
    .set({ ...set, ...(bumpGeneration ? { generation: sql`${campaigns.generation} + 1` } : {}), updatedAt: sql`now()` })
    .where(and(eq(campaigns.id, id), inArray(campaigns.status, [...from])))
    .returning();
  return row;
}

/** Cancels the campaign's messages not yet handed to the provider; returns how many. */
export async function cancelQueuedMessages(db: Db, campaignId: number): Promise<number> {
  const rows = await db
    .update(messages)
    .set({ status: 'cancelled', errorCode: 'campaign_cancelled', updatedAt: sql`now()` })
    .where(and(eq(messages.campaignId, String(campaignId)), eq(messages.status, 'queued')))
    .returning({ id: messages.id });
  return rows.length;
}

/** A campaign's messages by status, from its counters (`0008_campaign_counters.sql`), and its skips by reason. */
export interface CampaignCounts {
  queued: number;
  sending: number;
  sent: number;
  delivered: number;
  failed: number;
  skipped: number;
  cancelled: number;
  skippedByReason: Record<string, number>;
}

/**
 * The campaign's counters, in one statement returning one row: a sum over at most 16 counter rows and the campaign's
 * handful of skip reasons, whatever the size of the campaign. It never reads `messages`.
 */
export const campaignCountsQuery = (campaignId: number) => sql`
  SELECT coalesce(sum(queued), 0)::int AS queued, coalesce(sum(sending), 0)::int AS sending,
         coalesce(sum(sent), 0)::int AS sent, coalesce(sum(delivered), 0)::int AS delivered,
         coalesce(sum(failed), 0)::int AS failed, coalesce(sum(skipped), 0)::int AS skipped,
         coalesce(sum(cancelled), 0)::int AS cancelled,
         (SELECT coalesce(jsonb_object_agg(reason, n), '{}'::jsonb) FROM campaign_skip_counts
           WHERE campaign_id = ${campaignId} AND n <> 0) AS skipped_by_reason
    FROM campaign_counters WHERE campaign_id = ${campaignId}`;

type CountRow = Omit<CampaignCounts, 'skippedByReason'> & { skipped_by_reason: Record<string, number> | string | null };

export async function campaignCounts(db: Db, campaignId: number): Promise<CampaignCounts> {
  const [r] = await rowsOf<CountRow>(db, campaignCountsQuery(campaignId));
  const reasons = typeof r?.skipped_by_reason === 'string' ? (JSON.parse(r.skipped_by_reason) as Record<string, number>) : (r?.skipped_by_reason ?? {});
  return {
    queued: Number(r?.queued ?? 0),
    sending: Number(r?.sending ?? 0),
    sent: Number(r?.sent ?? 0),
    delivered: Number(r?.delivered ?? 0),
    failed: Number(r?.failed ?? 0),
    skipped: Number(r?.skipped ?? 0),
    cancelled: Number(r?.cancelled ?? 0),
    skippedByReason: Object.fromEntries(Object.entries(reasons).map(([k, v]) => [k, Number(v)])),
  };
}

/** Messages of the campaign not yet final on our side (`queued` or `sending`): its backlog in the delivery queue. */
export async function countOutstanding(db: Db, campaignId: number): Promise<number> {
  const c = await campaignCounts(db, campaignId);
  return c.queued + c.sending;
}

/**
 * A campaign's messages held for later (created, queued, due after `now`: a recipient inside quiet hours gets the
 * message when the window ends) and the earliest time one of them is due.
 */
export async function countHeldMessages(db: Db, campaignId: number, now: Date): Promise<{ count: number; until: Date | null }> {
  const [row] = await db
    .select({ n: sql<number>`count(*)::int`, until: sql<Date | string | null>`min(${messages.scheduledFor})` })
    .from(messages)
    .where(and(eq(messages.campaignId, String(campaignId)), eq(messages.status, 'queued'), gt(messages.scheduledFor, now)));
  return { count: Number(row?.n ?? 0), until: row?.until ? new Date(row.until) : null };
}

/** Queued messages of the last page (contacts in `(after, upTo]`), whose delivery jobs may be missing after a crash. */
export async function queuedMessagesOfPage(db: Db, campaignId: number, after: number, upTo: number) {
  return db
    .select({ id: messages.id, contactId: messages.contactId, scheduledFor: messages.scheduledFor })
    .from(messages)
    .where(
      and(
        eq(messages.campaignId, String(campaignId)),
        eq(messages.status, 'queued'),
        sql`${messages.contactId} > ${after} AND ${messages.contactId} <= ${upTo}`,
      ),
    );
}

/** Clears the "jobs may be missing" flag, unless another page was produced meanwhile (its flag must stay). */
export async function clearPendingEnqueue(db: Db, campaignId: number, cursor: number): Promise<void> {
  await db
    .update(campaigns)
    .set({ pendingEnqueue: false })
    .where(and(eq(campaigns.id, campaignId), eq(campaigns.cursorContactId, cursor)));
}

// ---- one audience page, inside a transaction ----

export interface LockedCampaign {
  status: CampaignStatus;
  generation: number;
  cursor: number;
  materialized: boolean;
}

/**
 * Locks the campaign row for the transaction: pages of one campaign are produced one at a time. FOR NO KEY UPDATE, not
 * FOR UPDATE: it excludes other pages and campaign updates alike, yet lets a foreign key check on the row pass (a
 * delivery worker adding its session's `campaign_counters` row takes KEY SHARE on it); FOR UPDATE made that worker wait
 * on the page while the page waited on the worker's counter key — a deadlock.
 */
export async function lockCampaign(tx: Querier, id: number): Promise<LockedCampaign | undefined> {
  const [row] = await tx.query<{ status: CampaignStatus; generation: number; cursor_contact_id: string | number; materialized_at: Date | null }>(
    'SELECT status, generation, cursor_contact_id, materialized_at FROM campaigns WHERE id = $1 FOR NO KEY UPDATE',
    [id],
  );
  if (!row) return undefined;
  return { status: row.status, generation: Number(row.generation), cursor: Number(row.cursor_contact_id), materialized: row.materialized_at !== null };
}

export interface AudienceContact {
  id: number;
  phone: string | null;
  firstName: string | null;
  lastName: string | null;
  tags: string[];
  countryCode: string | null;
  provinceCode: string | null;
  timezone: string | null;
  smsConsent: ConsentState;
  optedOutAt: Date | null;
  ordersCount: number;
  totalSpent: string;
  lastOrderAt: Date | null;
}

/**
 * The next `limit` contacts of the shop after `after` (contact id) matching the segment `filter` (its relative dates
 * counted back from `now`), in id order, locked for the transaction: a concurrent automation's frequency-capped
 * reservation for one of them waits for this page, so the cap holds across campaigns and automations.
 */
export async function selectAudiencePage(
  tx: Querier,
  shopId: number,
  audience: { filter: SegmentFilter; now: Date },
  after: number,
  limit: number,
): Promise<AudienceContact[]> {
  const where = compileSegment(audience.filter, { now: audience.now });
  const q = toQuery(sql`
    SELECT id, phone, first_name, last_name, tags, country_code, province_code, timezone, sms_consent, opted_out_at,
           orders_count, total_spent, last_order_at
      FROM contacts
     WHERE shop_id = ${shopId} AND id > ${after} AND (${where})
     ORDER BY id
     LIMIT ${limit}
       FOR NO KEY UPDATE`);
  const rows = await tx.query<Record<string, any>>(q.sql, q.params);
  return rows.map((r) => ({
    id: Number(r.id),
    phone: r.phone,
    firstName: r.first_name,
    lastName: r.last_name,
    tags: r.tags ?? [],
    countryCode: r.country_code,
    provinceCode: r.province_code,
    timezone: r.timezone,
    smsConsent: r.sms_consent,
    optedOutAt: r.opted_out_at ? new Date(r.opted_out_at) : null,
    ordersCount: Number(r.orders_count),
    totalSpent: String(r.total_spent),
    lastOrderAt: r.last_order_at ? new Date(r.last_order_at) : null,
  }));
}

/** Send times (ms) of recent marketing messages to contacts with ids in `(after, upTo]`, by contact id. */
export async function recentSendsOfPage(tx: Querier, shopId: number, after: number, upTo: number, since: Date, exceptCampaign: string): Promise<Map<number, number[]>> {
  const rows = await tx.query<{ contact_id: string | number; at: Date | string }>(
    `SELECT contact_id, coalesce(scheduled_for, created_at) AS at FROM messages
      WHERE shop_id = $1 AND contact_id > $2 AND contact_id <= $3 AND kind = 'marketing'
        AND status IN ('queued', 'sending', 'sent', 'delivered')
        AND coalesce(scheduled_for, created_at) > $4::timestamptz
        AND campaign_id IS DISTINCT FROM $5`,
    [shopId, after, upTo, since.toISOString(), exceptCampaign],
  );
  const byContact = new Map<number, number[]>();
  for (const r of rows) {
    const id = Number(r.contact_id);
    const list = byContact.get(id) ?? [];
    list.push(new Date(r.at).getTime());
    byContact.set(id, list);
  }
  return byContact;
}

export interface PageMessage {
  contactId: number;
  idempotencyKey: string;
  status: 'queued' | 'skipped';
  /** Skip reason (stored as the message's error code). */
  reason: string | null;
  toPhone: string | null;
  body: string | null;
  encoding: 'GSM-7' | 'UCS-2' | null;
  segments: number | null;
  costEstimate: number | null;
  scheduledFor: Date | null;
  /** What the render of this message warned of (an unknown variable shown empty, ...). */
  renderWarnings: string[];
}

/**
 * Inserts the page's message rows (skipped recipients included, so "one row per campaign per contact" holds for them
 * too), for the skipped ones their `message_skips` rows, and adds the rows created to the campaign's counters — one
 * statement. Rows whose idempotency key exists are left alone. Returns the rows created that are to be sent.
 */
export async function insertPageMessages(
  tx: Querier,
  m: { shopId: number; campaignId: string; sender: string; requestId: string },
  rows: PageMessage[],
): Promise<Array<{ id: number; contactId: number; scheduledFor: Date | null }>> {
  if (!rows.length) return [];
  // The page travels as one JSON parameter: one statement and five parameters whatever the page size (a parameter per
  // column and row would pass PostgreSQL's 65,535 past 4,681 rows).
  const page = JSON.stringify(
    rows.map((r) => ({
      contact_id: r.contactId,
      key: r.idempotencyKey,
      to_phone: r.toPhone,
      body: r.body,
      encoding: r.encoding,
      segments: r.segments,
      cost: r.costEstimate === null ? null : r.costEstimate.toFixed(4),
      status: r.status,
      reason: r.reason,
      scheduled_for: r.scheduledFor ? r.scheduledFor.toISOString() : null,
      warnings: r.renderWarnings,
    })),
  );
  // The page's counts go to the campaign's counters in the same statement (set-based; see 0008_campaign_counters.sql).
  const created = await tx.query<{ id: string | number; contact_id: string | number; status: string; scheduled_for: Date | string | null }>(
    `WITH ins AS (
       INSERT INTO messages (shop_id, contact_id, campaign_id, kind, trigger, idempotency_key, to_phone, sender, body, encoding,
                             segments, cost_estimate, status, error_code, scheduled_for, request_id, render_warnings)
       SELECT $2::bigint, r.contact_id, $3::text, 'marketing', 'campaign', r.key, r.to_phone, $4::text, r.body, r.encoding,
              r.segments, r.cost, r.status, r.reason, r.scheduled_for, $5::text, ARRAY(SELECT json_array_elements_text(coalesce(r.warnings, '[]')))
         FROM json_to_recordset($1::json) AS r(contact_id bigint, key text, to_phone text, body text, encoding text, segments int,
                                               cost numeric, status text, reason text, scheduled_for timestamptz, warnings json)
        ORDER BY r.contact_id
       ON CONFLICT (shop_id, idempotency_key) DO NOTHING
       RETURNING id, shop_id, contact_id, campaign_id, status, error_code, scheduled_for, request_id
     ), skips AS (
       INSERT INTO message_skips (shop_id, contact_id, campaign_id, message_id, trigger, reason, detail, request_id)
       SELECT shop_id, contact_id, campaign_id, id, 'campaign', error_code, 'campaign audience', request_id FROM ins WHERE status = 'skipped'
     ), counted AS (
       INSERT INTO campaign_counters AS k (campaign_id, shard, queued, skipped)
       SELECT $3::text::bigint, pg_backend_pid() % 16, count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'skipped')
         FROM ins HAVING count(*) > 0
       ON CONFLICT (campaign_id, shard) DO UPDATE SET queued = k.queued + excluded.queued, skipped = k.skipped + excluded.skipped
     ), reasons AS (
       INSERT INTO campaign_skip_counts AS k (campaign_id, reason, n)
       SELECT $3::text::bigint, coalesce(error_code, 'unknown'), count(*) FROM ins WHERE status = 'skipped' GROUP BY 2
       ON CONFLICT (campaign_id, reason) DO UPDATE SET n = k.n + excluded.n
     )
     SELECT id, contact_id, status, scheduled_for FROM ins`,
    [page, m.shopId, m.campaignId, m.sender, m.requestId],
  );
  return created
    .filter((r) => r.status === 'queued')
    .map((r) => ({ id: Number(r.id), contactId: Number(r.contact_id), scheduledFor: r.scheduled_for ? new Date(r.scheduled_for) : null }));
}

/**
 * Moves the cursor past the page, in the page's transaction. `pending_enqueue` stays set until the page's delivery
 * jobs are in Redis; a run that finds it set adds them again (their ids are deterministic, so that is harmless).
 */
export async function advanceCursor(tx: Querier, id: number, pageStart: number, cursor: number, exhausted: boolean): Promise<void> {
  await tx.query(
    `UPDATE campaigns SET page_start_id = $2, cursor_contact_id = $3, pending_enqueue = $4,
            materialized_at = CASE WHEN $5::boolean THEN coalesce(materialized_at, now()) ELSE materialized_at END,
            updated_at = now()
      WHERE id = $1`,
    [id, pageStart, cursor, cursor !== pageStart, exhausted],
  );
}

/** A campaign and its shop, by campaign id alone (operator tools). */
export async function getCampaignAndShop(db: Db, id: number): Promise<{ campaign: Campaign; shop: Shop } | undefined> {
  const [row] = await db.select({ campaign: campaigns, shop: shops }).from(campaigns).innerJoin(shops, eq(shops.id, campaigns.shopId)).where(eq(campaigns.id, id));
  return row;
}
