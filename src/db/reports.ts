/**
 * Daily report rollups: per shop, per day in the shop's time zone, per automation / campaign / neither. The rollup of a
 * day is computed whole from `messages` and `message_skips` and replaces what was stored, so recomputing a day gives
 * the same rows. {@link getReports} reads them back for any caller (operator API now, merchant API later).
 */
import { sql } from 'drizzle-orm';
import { dayWindow, daysBetween, deliveryRate } from '../housekeeping/days.js';
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

/** What happened on `day` (in `timezone`) for a shop, by dimension. Rows with nothing in them are left out. */
export async function computeDay(db: Pick<Db, 'execute'>, shopId: number, day: string, timezone: string): Promise<RollupRow[]> {
  const { start, end } = dayWindow(day, timezone);
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
export async function rollupDay(db: Db, shopId: number, day: string, timezone: string): Promise<RollupRow[]> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${`smsblossom-rollup:${shopId}:${day}`}))`);
    const rows = await computeDay(tx, shopId, day, timezone);
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

export interface ReportLine extends RollupCounts {
  /** delivered / sent, 4 decimals; null when nothing was sent. */
  deliveryRate: number | null;
}

export interface Report {
  shopId: number;
  from: string;
  to: string;
  totals: ReportLine;
  automations: Array<ReportLine & { automationId: number; trigger: string | null; name: string | null }>;
  campaigns: Array<ReportLine & { campaignId: string }>;
  /** Messages of neither an automation nor a campaign (HELP auto-replies, automations since deleted...). */
  other: ReportLine;
  days: Array<ReportLine & { day: string }>;
}

function emptyLine(): RollupCounts {
  return { sent: 0, delivered: 0, failed: 0, skipped: 0, skippedByReason: {}, parts: 0, cost: '0.0000' };
}

/** Adds counts; cost summed in ten-thousandths so decimals do not drift. */
function add(into: RollupCounts, r: RollupCounts): void {
  into.sent += r.sent;
  into.delivered += r.delivered;
  into.failed += r.failed;
  into.skipped += r.skipped;
  into.parts += r.parts;
  into.cost = ((Math.round(Number(into.cost) * 10_000) + Math.round(Number(r.cost) * 10_000)) / 10_000).toFixed(4);
  for (const [reason, n] of Object.entries(r.skippedByReason)) into.skippedByReason[reason] = (into.skippedByReason[reason] ?? 0) + n;
}

const finish = <T extends RollupCounts>(c: T): T & { deliveryRate: number | null } => ({ ...c, deliveryRate: deliveryRate(c.sent, c.delivered) });

/**
 * A shop's report for days `from`..`to` (inclusive, `YYYY-MM-DD` in the shop's time zone) from the stored rollups:
 * totals, per automation, per campaign, per day, each with its delivery rate and cost. Throws VALIDATION_FAILED for a
 * bad or reversed range or one longer than 366 days.
 */
export async function getReports(db: Db, shopId: number, from: string, to: string): Promise<Report> {
  const days = daysBetween(from, to);
  const rollups = await listRollups(db, shopId, from, to);
  const names = await rowsOf<{ id: string; trigger: string; name: string }>(db, sql`SELECT id, trigger, name FROM automations WHERE shop_id = ${shopId}`);
  const automationName = new Map(names.map((n) => [String(n.id), n]));
  const totals = emptyLine();
  const other = emptyLine();
  const perAutomation = new Map<string, RollupCounts>();
  const perCampaign = new Map<string, RollupCounts>();
  const perDay = new Map<string, RollupCounts>(days.map((d) => [d, emptyLine()]));
  for (const r of rollups) {
    add(totals, r);
    add(perDay.get(r.day) ?? perDay.set(r.day, emptyLine()).get(r.day)!, r);
    if (r.dimension === 'other') {
      add(other, r);
      continue;
    }
    const map = r.dimension === 'automation' ? perAutomation : perCampaign;
    if (!map.has(r.dimensionId)) map.set(r.dimensionId, emptyLine());
    add(map.get(r.dimensionId)!, r);
  }
  return {
    shopId,
    from,
    to,
    totals: finish(totals),
    automations: [...perAutomation].map(([id, c]) => ({
      automationId: Number(id),
      trigger: automationName.get(id)?.trigger ?? null,
      name: automationName.get(id)?.name ?? null,
      ...finish(c),
    })),
    campaigns: [...perCampaign].map(([campaignId, c]) => ({ campaignId, ...finish(c) })),
    other: finish(other),
    days: [...perDay].map(([day, c]) => ({ day, ...finish(c) })),
  };
}
