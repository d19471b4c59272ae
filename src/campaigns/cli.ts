/**
 * `smsblossom campaign send|progress|pause|resume|cancel <id> [--follow]`: operator commands over the campaign service,
 * with a progress bar (cli-progress) that follows the campaign until it is sent, cancelled, failed or paused. Each line
 * says what holds the campaign when something does (quiet hours until when, paused, scheduled for when) and an ETA
 * from the send rate observed while following.
 */
import cliProgress from 'cli-progress';
import { DateTime } from 'luxon';
import type { Config } from '../config.js';
import { countHeldMessages, getCampaignAndShop } from '../db/campaigns.js';
import type { Campaign, Shop } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { System } from '../system.js';
import { campaignProgress, cancelCampaign, pauseCampaign, resumeCampaign, sendCampaign, type CampaignProgress, type CampaignServiceDeps } from './service.js';

export const CAMPAIGN_HELP = 'smsblossom campaign send <id> [--follow] | progress <id> [--follow] [--json] | pause <id> | resume <id> | cancel <id>';

export interface CampaignCliOptions {
  follow: boolean;
  json: boolean;
  /** Poll interval of --follow (ms). */
  intervalMs?: number;
  out?: NodeJS.WritableStream;
}

const FINAL = new Set(['sent', 'cancelled', 'failed', 'paused', 'draft']);

/**
 * What keeps the campaign from sending now, in words, or null when nothing does. Times are the shop's (its time
 * zone), as the merchant set quiet hours and schedules.
 */
export async function campaignHold(system: Pick<System, 'db'>, campaign: Campaign, shop: Shop, p: CampaignProgress, now: Date = new Date()): Promise<string | null> {
  const zone = shop.timezone || 'UTC';
  const local = (d: Date, format: string) => `${DateTime.fromJSDate(d).setZone(zone).toFormat(format)} ${zone}`;
  const skippedByCap = p.skippedByReason.frequency_capped ?? 0;
  const cap = skippedByCap ? `; ${skippedByCap} skipped by the frequency cap` : '';
  switch (campaign.status) {
    case 'draft':
      return `draft: not sent yet (smsblossom campaign send ${campaign.id})`;
    case 'scheduled':
      return campaign.scheduledAt ? `scheduled for ${local(campaign.scheduledAt, 'yyyy-MM-dd HH:mm')}` : 'scheduled';
    case 'paused':
      return `paused${campaign.pausedAt ? ` since ${local(campaign.pausedAt, 'yyyy-MM-dd HH:mm')}` : ''} (smsblossom campaign resume ${campaign.id})${cap}`;
    case 'sending': {
      // Held messages are queued ones (the counters say how many): no read of the messages while none are.
      const held = p.queued ? await countHeldMessages(system.db.db, campaign.id, now) : { count: 0, until: null };
      if (!held.count || !held.until) return skippedByCap && p.processed >= p.total ? cap.slice(2) : null;
      const sameDay = DateTime.fromJSDate(held.until).setZone(zone).hasSame(DateTime.fromJSDate(now).setZone(zone), 'day');
      return `quiet hours until ${local(held.until, sameDay ? 'HH:mm' : 'yyyy-MM-dd HH:mm')} (${held.count} message${held.count === 1 ? '' : 's'} waiting)${cap}`;
    }
    default:
      return null;
  }
}

/**
 * The send rate seen while following, over the last `windowMs`, and the time left at that rate. Samples are (time,
 * messages done); until two samples show progress there is no rate and no ETA.
 */
export function observedEta(samples: ReadonlyArray<{ at: number; done: number }>, remaining: number, windowMs = 30_000): { ratePerSec: number | null; etaSeconds: number | null } {
  const last = samples[samples.length - 1];
  if (!last) return { ratePerSec: null, etaSeconds: null };
  const first = samples.find((s) => s.at >= last.at - windowMs) ?? last;
  const seconds = (last.at - first.at) / 1000;
  if (seconds <= 0 || last.done <= first.done) return { ratePerSec: null, etaSeconds: remaining === 0 ? 0 : null };
  const ratePerSec = (last.done - first.done) / seconds;
  return { ratePerSec, etaSeconds: Math.ceil(remaining / ratePerSec) };
}

/** `ETA —` until there is a rate; then `42s`, `3m 20s` or `1h 05m`. */
export function formatEta(seconds: number | null): string {
  if (seconds === null) return '—';
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h ${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

function line(p: CampaignProgress): string {
  const skips = Object.entries(p.skippedByReason).map(([k, v]) => `${k} ${v}`).join(', ');
  return `campaign ${p.id} ${p.status}: ${p.processed}/${p.total} processed, ${p.sent} sent (${p.delivered} delivered), ${p.failed} failed, ${p.skipped} skipped${skips ? ` (${skips})` : ''}, ${p.queued + p.sending} in flight, ${p.ratePerSec}/s${p.etaSeconds !== null && p.etaSeconds > 0 ? `, ETA ${p.etaSeconds}s` : ''}`;
}

export async function campaignCommand(system: System, config: Config, sub: string | undefined, id: number, o: CampaignCliOptions): Promise<CampaignProgress> {
  const out = o.out ?? process.stdout;
  const deps: CampaignServiceDeps = {
    database: system.db,
    queues: system.queues,
    logger: system.logger,
    renderer: system.services.renderer,
    sms: config.sms,
    pacing: config.campaigns,
  };
  const found = await getCampaignAndShop(system.db.db, id);
  if (!found) throw new AppError('NOT_FOUND', `campaign ${id} does not exist`);
  const { shop } = found;
  switch (sub) {
    case 'send':
      await sendCampaign(deps, shop, id);
      break;
    case 'pause':
      await pauseCampaign(deps, shop, id);
      break;
    case 'resume':
      await resumeCampaign(deps, shop, id);
      break;
    case 'cancel':
      await cancelCampaign(deps, shop, id);
      break;
    case 'progress':
      break;
    default:
      throw new AppError('VALIDATION_FAILED', `campaign: unknown subcommand "${sub ?? ''}"\n${CAMPAIGN_HELP}`);
  }
  let campaign = found.campaign;
  const read = async () => {
    campaign = (await getCampaignAndShop(system.db.db, id))!.campaign;
    return campaignProgress(deps, campaign);
  };
  let p = await read();
  if (!o.follow) {
    const hold = o.json ? null : await campaignHold(system, campaign, shop, p);
    out.write(o.json ? `${JSON.stringify(p)}\n` : `${line(p)}${hold ? `; held: ${hold}` : ''}\n`);
    return p;
  }
  const bar = new cliProgress.SingleBar(
    {
      format: 'campaign {id} [{bar}] {percentage}% | {value}/{total} | sent {sent} failed {failed} skipped {skipped} | {rate}/s | ETA {etaText} | {status}{hold}',
      stream: out as NodeJS.WriteStream,
      noTTYOutput: true,
      notTTYSchedule: o.intervalMs ?? 2000,
    },
    cliProgress.Presets.shades_classic,
  );
  const done = (x: CampaignProgress) => x.sent + x.failed + x.skipped + x.cancelled;
  const samples: Array<{ at: number; done: number }> = [];
  const payload = async (x: CampaignProgress) => {
    samples.push({ at: Date.now(), done: done(x) });
    if (samples.length > 120) samples.shift();
    const eta = observedEta(samples, Math.max(0, x.total - done(x)));
    const hold = await campaignHold(system, campaign, shop, x);
    return {
      id: x.id,
      sent: x.sent,
      failed: x.failed,
      skipped: x.skipped,
      rate: eta.ratePerSec === null ? '0' : eta.ratePerSec.toFixed(1),
      etaText: formatEta(eta.etaSeconds),
      status: x.status,
      hold: hold ? ` | held: ${hold}` : '',
    };
  };
  bar.start(Math.max(1, p.total), done(p), await payload(p));
  while (!FINAL.has(p.status)) {
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 1000));
    p = await read();
    bar.setTotal(Math.max(1, p.total));
    bar.update(done(p), await payload(p));
  }
  bar.update(done(p), await payload(p));
  bar.stop();
  out.write(o.json ? `${JSON.stringify(p)}\n` : `${line(p)}\n`);
  return p;
}
