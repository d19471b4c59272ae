/**
 * A shop's report over a range of days, from the stored daily rollups (db/reports.ts): totals, per automation, per
 * campaign, per day, each with its delivery rate and cost. For any caller (operator API now, merchant API later).
 */
import type { Db } from '../db/client.js';
import { automationNames, listRollups, type RollupCounts } from '../db/reports.js';
import { daysBetween, deliveryRate } from './days.js';

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
  const automationName = await automationNames(db, shopId);
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
