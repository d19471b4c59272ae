/**
 * Daily report rollups: per shop, per day in the shop's time zone, per automation / campaign / neither. The rollup of a
 * day is computed whole from `messages` and `message_skips` and replaces what was stored, so recomputing a day gives
 * the same rows. `getReports` (housekeeping/reports.ts) reads them back for any caller.
 */
import { sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { rowsOf } from './rows.js';
import type { ReportRollup } from './schema.js';

export type Dimension = 'automation' | 'campaign' | 'other';

export interface RollupCounts {
  sent: number;
  delivered: number;
  failed: number;
  skipped: number;
  skippedByReason: Record<string, number>;
  parts: number;
  /** Estimated cost, a decimal string with 4 places (money is not a float). */
  cost: string;
}

export interface RollupRow extends RollupCounts {
  dimension: Dimension;
  dimensionId: string;
}

/** Messages can be sent (or reported on) days after they were created: quiet hours, abandoned-checkout delays. */
const CREATED_LOOKBACK_DAYS = 14;

const dimensionOf = sql`CASE WHEN automation_id IS NOT NULL THEN 'automation' WHEN campaign_id IS NOT NULL THEN 'campaign' ELSE 'other' END`;
const dimensionIdOf = sql`coalesce(automation_id::text, campaign_id, '')`;

/** The instants a calendar day of a shop starts and ends at (`dayWindow` in housekeeping/days.ts). */
export interface DayWindow {
  start: Date;
  end: Date;
}

/** What happened in one day of a shop (`window`), by dimension. Rows with nothing in them are left out. */
export async function computeDay(db: Pick<Db, 'execute'>, shopId: number, window: DayWindow): Promise<RollupRow[]> {
  const { start, end } = window;
  const s = start.toISOString();
  const e = end.toISOString();
  const inDay = (col: string) => sql`${sql.raw(col)} >= ${s}::timestamptz AND ${sql.raw(col)} < ${e}::timestamptz`;
  const counted = await rowsOf<{ dimension: Dimension; dimension_id: string; sent: number; delivered: number; failed: number; parts: number; cost: string }>(
    db,
    sql`SELECT ${dimensionOf} AS dimension, ${dimensionIdOf} AS dimension_id,
          count(*) FILTER (WHERE ${inDay('sent_at')})::int AS sent,
          count(*) FILTER (WHERE ${inDay('delivered_at')})::int AS delivered,
          count(*) FILTER (WHERE status = 'failed' AND ${inDay('failed_at')})::int AS failed,
          coalesce(sum(segments) FILTER (WHERE ${inDay('sent_at')}), 0)::int AS parts,
          coalesce(sum(cost_estimate) FILTER (WHERE ${inDay('sent_at')}), 0)::numeric(14, 4)::text AS cost
        FROM messages
        WHERE shop_id = ${shopId}
          AND created_at >= ${s}::timestamptz - make_interval(days => ${CREATED_LOOKBACK_DAYS}::int)
          AND created_at < ${e}::timestamptz
        GROUP BY 1, 2`,
  );
  const skips = await rowsOf<{ dimension: Dimension; dimension_id: string; reason: string; n: number }>(
    db,
    sql`SELECT ${dimensionOf} AS dimension, ${dimensionIdOf} AS dimension_id, reason, count(*)::int AS n
        FROM message_skips
        WHERE shop_id = ${shopId} AND ${inDay('created_at')}
        GROUP BY 1, 2, 3`,
  );
  const byKey = new Map<string, RollupRow>();
  const rowFor = (dimension: Dimension, dimensionId: string): RollupRow => {
    const key = `${dimension}\u0000${dimensionId}`;
    let row = byKey.get(key);
    if (!row) {
      row = { dimension, dimensionId, sent: 0, delivered: 0, failed: 0, skipped: 0, skippedByReason: {}, parts: 0, cost: '0.0000' };
      byKey.set(key, row);
    }
    return row;
  };
  for (const c of counted) {
    if (!c.sent && !c.delivered && !c.failed) continue;
    Object.assign(rowFor(c.dimension, c.dimension_id), {
      sent: Number(c.sent),
      delivered: Number(c.delivered),
      failed: Number(c.failed),
      parts: Number(c.parts),
      cost: Number(c.cost).toFixed(4),
    });
  }
  for (const k of skips) {
    const row = rowFor(k.dimension, k.dimension_id);
    row.skipped += Number(k.n);
    row.skippedByReason[k.reason] = (row.skippedByReason[k.reason] ?? 0) + Number(k.n);
  }
  return [...byKey.values()].sort((a, b) => a.dimension.localeCompare(b.dimension) || a.dimensionId.localeCompare(b.dimensionId));
}

/**
 * Recomputes one day of one shop and replaces its stored rollup, in one transaction serialised per shop and day (two
 * housekeeping workers rolling up the same day do it one after the other). Returns the rows stored.
 */
export async function rollupDay(db: Db, shopId: number, day: string, window: DayWindow): Promise<RollupRow[]> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${`smsblossom-rollup:${shopId}:${day}`}))`);
    const rows = await computeDay(tx, shopId, window);
    await tx.execute(sql`DELETE FROM report_rollups WHERE shop_id = ${shopId} AND day = ${day}::date`);
    for (const r of rows) {
      await tx.execute(
        sql`INSERT INTO report_rollups (shop_id, day, dimension, dimension_id, sent, delivered, failed, skipped, skipped_by_reason, parts, cost)
            VALUES (${shopId}, ${day}::date, ${r.dimension}, ${r.dimensionId}, ${r.sent}, ${r.delivered}, ${r.failed}, ${r.skipped},
                    ${JSON.stringify(r.skippedByReason)}::jsonb, ${r.parts}, ${r.cost}::numeric)`,
      );
    }
    return rows;
  });
}

/** The stored rollups of a shop for days `from`..`to` inclusive, oldest first. */
export async function listRollups(db: Db, shopId: number, from: string, to: string): Promise<ReportRollup[]> {
  const rows = await rowsOf<Record<string, unknown>>(
    db,
    sql`SELECT id, shop_id, day::text AS day, dimension, dimension_id, sent, delivered, failed, skipped, skipped_by_reason, parts,
               cost::text AS cost, computed_at
        FROM report_rollups WHERE shop_id = ${shopId} AND day BETWEEN ${from}::date AND ${to}::date
        ORDER BY day, dimension, dimension_id`,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    shopId: Number(r.shop_id),
    day: String(r.day),
    dimension: r.dimension as Dimension,
    dimensionId: String(r.dimension_id),
    sent: Number(r.sent),
    delivered: Number(r.delivered),
    failed: Number(r.failed),
    skipped: Number(r.skipped),
    skippedByReason: r.skipped_by_reason as Record<string, number>,
    parts: Number(r.parts),
    cost: Number(r.cost).toFixed(4),
    computedAt: new Date(r.computed_at as string),
  }));
}

/** The trigger and name of each of a shop's automations, by id. */
export async function automationNames(db: Db, shopId: number): Promise<Map<string, { trigger: string; name: string }>> {
  const rows = await rowsOf<{ id: string; trigger: string; name: string }>(db, sql`SELECT id, trigger, name FROM automations WHERE shop_id = ${shopId}`);
  return new Map(rows.map((n) => [String(n.id), { trigger: n.trigger, name: n.name }]));
}

export interface ShopRef {
  id: number;
  domain: string;
  timezone: string;
}

/** Shops with anything to count since `since`: messages updated, skips recorded or rollups computed. */
export async function shopsActiveSince(db: Db, since: Date): Promise<ShopRef[]> {
  const rows = await rowsOf<{ id: string; domain: string; timezone: string }>(
    db,
    sql`SELECT s.id, s.domain, s.timezone FROM shops s
        WHERE EXISTS (SELECT 1 FROM messages m WHERE m.shop_id = s.id AND m.updated_at >= ${since.toISOString()}::timestamptz)
           OR EXISTS (SELECT 1 FROM message_skips k WHERE k.shop_id = s.id AND k.created_at >= ${since.toISOString()}::timestamptz)
           OR EXISTS (SELECT 1 FROM report_rollups r WHERE r.shop_id = s.id AND r.computed_at >= ${since.toISOString()}::timestamptz)
        ORDER BY s.id`,
  );
  return rows.map((r) => ({ id: Number(r.id), domain: r.domain, timezone: r.timezone }));
}
