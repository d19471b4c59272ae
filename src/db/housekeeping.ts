/**
 * Named database operations of the housekeeping tasks: retention, retries of transient failures, and the sweep for
 * messages and events stuck between two states. Each works on every shop, or on one when `shopId` is given.
 */
import { sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { UNCONFIRMED } from './messages.js';
import { rowsOf } from './rows.js';

/**
 * The delivery processor marks a message whose transient failures used up the job's attempts with this prefix in
 * `error_text` (`src/messages/delivery.ts`). Only those are retried: a permanent refusal, a failed delivery
 * report or an unconfirmed send (which may have been delivered) never are.
 */
export const TRANSIENT_FAILURE_PREFIX = 'retries exhausted:';

const TERMINAL = sql`('sent', 'delivered', 'failed', 'skipped', 'cancelled')`;

/** A shop's retention in days: `settings.messageRetentionDays` when it is an integer 1..3650, else the default. */
const retentionSql = (defaultDays: number) => sql`(CASE
  WHEN jsonb_typeof(s.settings -> 'messageRetentionDays') = 'number'
   AND (s.settings ->> 'messageRetentionDays') ~ '^[0-9]{1,4}$'
   AND (s.settings ->> 'messageRetentionDays')::int BETWEEN 1 AND 3650
  THEN (s.settings ->> 'messageRetentionDays')::int ELSE ${defaultDays}::int END)`;

export interface RetentionInput {
  now: Date;
  defaultDays: number;
  shopId?: number;
  /** Rows per statement, so one run never holds a huge delete in one transaction. */
  batchSize?: number;
}

/**
 * Deletes messages in a final state (and the skip records) older than their shop's retention. Messages still queued
 * or sending are left to `reconcile`. Returns how many rows of each went.
 */
export async function deleteExpiredMessages(db: Db, input: RetentionInput): Promise<{ messages: number; messageSkips: number }> {
  const batch = input.batchSize ?? 5000;
  const shopFilter = input.shopId !== undefined ? sql`AND s.id = ${input.shopId}` : sql``;
  const cutoff = (alias: string) => sql`${sql.raw(alias)}.created_at < ${input.now.toISOString()}::timestamptz - make_interval(days => ${retentionSql(input.defaultDays)})`;
  let messages = 0;
  let messageSkips = 0;
  for (;;) {
    const rows = await rowsOf<{ n: number }>(
      db,
      sql`WITH gone AS (
            DELETE FROM message_skips WHERE id IN (
              SELECT k.id FROM message_skips k JOIN shops s ON s.id = k.shop_id
              WHERE ${cutoff('k')} ${shopFilter} LIMIT ${batch})
            RETURNING 1)
          SELECT count(*)::int AS n FROM gone`,
    );
    const n = Number(rows[0]?.n ?? 0);
    messageSkips += n;
    if (n < batch) break;
  }
  for (;;) {
    const rows = await rowsOf<{ n: number }>(
      db,
      sql`WITH gone AS (
            DELETE FROM messages WHERE id IN (
              SELECT m.id FROM messages m JOIN shops s ON s.id = m.shop_id
              WHERE m.status IN ${TERMINAL} AND ${cutoff('m')} ${shopFilter} LIMIT ${batch})
            RETURNING 1)
          SELECT count(*)::int AS n FROM gone`,
    );
    const n = Number(rows[0]?.n ?? 0);
    messages += n;
    if (n < batch) break;
  }
  return { messages, messageSkips };
}

/** Deletes stored webhook events (payload included) received more than `days` ago. */
export async function deleteExpiredEvents(db: Db, input: { now: Date; days: number; shopDomain?: string; batchSize?: number }): Promise<number> {
  const batch = input.batchSize ?? 5000;
  const shopFilter = input.shopDomain !== undefined ? sql`AND shop_domain = ${input.shopDomain}` : sql``;
  let total = 0;
  for (;;) {
    const rows = await rowsOf<{ n: number }>(
      db,
      sql`WITH gone AS (
            DELETE FROM events WHERE id IN (
              SELECT id FROM events
              WHERE received_at < ${input.now.toISOString()}::timestamptz - make_interval(days => ${input.days}::int) ${shopFilter}
              LIMIT ${batch})
            RETURNING 1)
          SELECT count(*)::int AS n FROM gone`,
    );
    const n = Number(rows[0]?.n ?? 0);
    total += n;
    if (n < batch) break;
  }
  return total;
}

export interface RetryClaim {
  id: number;
  shopDomain: string;
  contactId: number | null;
  automationId: number | null;
  campaignId: string | null;
  jobId: string;
}

/**
 * Picks up to `limit` messages that failed for a transient cause since `since` and were never retried, records the
 * retry (the primary key of `message_retries` makes it once per message, ever) and puts them back to `queued`, in one
 * statement. The caller enqueues their delivery jobs; one that cannot be enqueued is found by `reconcile` later.
 */
export async function claimFailedForRetry(db: Db, input: { since: Date; limit: number; shopId?: number; jobIdOf: (id: number) => string }): Promise<RetryClaim[]> {
  if (input.limit <= 0) return [];
  const shopFilter = input.shopId !== undefined ? sql`AND m.shop_id = ${input.shopId}` : sql``;
  return db.transaction(async (tx) => {
    const picked = await rowsOf<{ id: string | number; error_code: string | null }>(
      tx,
      sql`SELECT m.id, m.error_code FROM messages m
          WHERE m.status = 'failed' AND m.failed_at >= ${input.since.toISOString()}::timestamptz
            AND m.error_text LIKE ${`${TRANSIENT_FAILURE_PREFIX}%`}
            AND NOT EXISTS (SELECT 1 FROM message_retries r WHERE r.message_id = m.id)
            ${shopFilter}
          ORDER BY m.failed_at, m.id
          LIMIT ${input.limit}
          FOR UPDATE OF m SKIP LOCKED`,
    );
    const claims: RetryClaim[] = [];
    for (const p of picked) {
      const id = Number(p.id);
      const jobId = input.jobIdOf(id);
      const inserted = await rowsOf<{ message_id: string }>(
        tx,
        sql`INSERT INTO message_retries (message_id, job_id, error_code) VALUES (${id}, ${jobId}, ${p.error_code})
            ON CONFLICT (message_id) DO NOTHING RETURNING message_id`,
      );
      if (!inserted.length) continue;
      const [row] = await rowsOf<{ domain: string; contact_id: string | null; automation_id: string | null; campaign_id: string | null }>(
        tx,
        sql`UPDATE messages m SET status = 'queued', error_code = NULL, error_text = NULL, failed_at = NULL, updated_at = now()
            FROM shops s WHERE m.id = ${id} AND m.status = 'failed' AND s.id = m.shop_id
            RETURNING s.domain, m.contact_id, m.automation_id, m.campaign_id`,
      );
      if (!row) continue;
      claims.push({
        id,
        shopDomain: row.domain,
        contactId: row.contact_id === null ? null : Number(row.contact_id),
        automationId: row.automation_id === null ? null : Number(row.automation_id),
        campaignId: row.campaign_id,
        jobId,
      });
    }
    return claims;
  });
}

export interface StuckMessage {
  id: number;
  shopDomain: string;
  status: 'queued' | 'sending';
  contactId: number | null;
  automationId: number | null;
  campaignId: string | null;
}

/**
 * Messages `queued` (and due) or `sending` whose last change is older than `before`: candidates for the sweep. Whether
 * a job still owns one is for the caller to ask the queue.
 */
export async function findStuckMessages(db: Db, input: { before: Date; limit: number; shopId?: number }): Promise<StuckMessage[]> {
  const before = input.before.toISOString();
  const shopFilter = input.shopId !== undefined ? sql`AND m.shop_id = ${input.shopId}` : sql``;
  const rows = await rowsOf<{ id: string; domain: string; status: 'queued' | 'sending'; contact_id: string | null; automation_id: string | null; campaign_id: string | null }>(
    db,
    sql`SELECT m.id, s.domain, m.status, m.contact_id, m.automation_id, m.campaign_id
        FROM messages m JOIN shops s ON s.id = m.shop_id
        WHERE ((m.status = 'queued' AND m.updated_at < ${before}::timestamptz
                AND (m.scheduled_for IS NULL OR m.scheduled_for < ${before}::timestamptz))
            OR (m.status = 'sending' AND coalesce(m.sending_at, m.updated_at) < ${before}::timestamptz))
          ${shopFilter}
        ORDER BY m.id LIMIT ${input.limit}`,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    shopDomain: r.domain,
    status: r.status,
    contactId: r.contact_id === null ? null : Number(r.contact_id),
    automationId: r.automation_id === null ? null : Number(r.automation_id),
    campaignId: r.campaign_id,
  }));
}

/**
 * Takes a stuck `queued` message for re-enqueueing: touches `updated_at` only if it is still queued and still older
 * than `before`, so of two sweeps running at once only one re-enqueues it.
 */
export async function touchStuckQueued(db: Db, id: number, before: Date): Promise<boolean> {
  const rows = await rowsOf<{ id: string }>(
    db,
    sql`UPDATE messages SET updated_at = now() WHERE id = ${id} AND status = 'queued' AND updated_at < ${before.toISOString()}::timestamptz RETURNING id`,
  );
  return rows.length > 0;
}

/** A `sending` message no job will ever settle: failed as unconfirmed (it may have been delivered; it is not resent). */
export async function failUnconfirmed(db: Db, id: number, before: Date): Promise<boolean> {
  const rows = await rowsOf<{ id: string }>(
    db,
    sql`UPDATE messages SET status = 'failed', error_code = ${UNCONFIRMED},
          error_text = 'stuck in sending with no job to settle it; not resent', failed_at = now(), updated_at = now()
        WHERE id = ${id} AND status = 'sending' AND coalesce(sending_at, updated_at) < ${before.toISOString()}::timestamptz
        RETURNING id`,
  );
  return rows.length > 0;
}

export interface StuckEvent {
  id: number;
  status: 'received' | 'queued';
  shopDomain: string;
  topic: string;
  objectId: string | null;
  webhookId: string;
  eventId: string | null;
  triggeredAt: Date | null;
  requestId: string | null;
  payload: Record<string, unknown>;
}

/**
 * Webhooks stored since before `before` and not finished (`received`, or `queued` as intake marked them before it went
 * to one statement), except those recorded as dead letters (left to the operator). The caller checks that no job holds
 * them. Shopify's retry of a webhook never queued re-queues it too; this covers the one that is not retried.
 */
export async function findUnfinishedEvents(db: Db, input: { before: Date; limit: number; shopDomain?: string }): Promise<StuckEvent[]> {
  const shopFilter = input.shopDomain !== undefined ? sql`AND shop_domain = ${input.shopDomain}` : sql``;
  const rows = await rowsOf<{
    id: string;
    status: 'received' | 'queued';
    shop_domain: string;
    topic: string;
    object_id: string | null;
    webhook_id: string;
    event_id: string | null;
    triggered_at: string | Date | null;
    request_id: string | null;
    payload: Record<string, unknown>;
  }>(
    db,
    sql`SELECT id, status, shop_domain, topic, object_id, webhook_id, event_id, triggered_at, request_id, payload FROM events
        WHERE status IN ('received', 'queued') AND payload IS NOT NULL AND received_at < ${input.before.toISOString()}::timestamptz ${shopFilter}
          AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.queue = 'events' AND d.shop_id = events.shop_domain AND d.data->>'webhookId' = events.webhook_id)
        ORDER BY id LIMIT ${input.limit}`,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    status: r.status,
    shopDomain: r.shop_domain,
    topic: r.topic,
    objectId: r.object_id,
    webhookId: r.webhook_id,
    eventId: r.event_id,
    triggeredAt: r.triggered_at ? new Date(r.triggered_at) : null,
    requestId: r.request_id,
    payload: r.payload,
  }));
}
