/**
 * `smsblossom campaign send|progress|pause|resume|cancel <id> [--follow]`: operator commands over the campaign service,
 * with a progress bar (cli-progress) that follows the campaign until it is sent, cancelled, failed or paused.
 */
import cliProgress from 'cli-progress';
import type { Config } from '../config.js';
import { getCampaignAndShop } from '../db/campaigns.js';
import { AppError } from '../errors.js';
import { createRenderer } from '../messages/render.js';
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
    renderer: createRenderer(),
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
  const read = async () => campaignProgress(deps, (await getCampaignAndShop(system.db.db, id))!.campaign);
  let p = await read();
  if (!o.follow) {
    out.write(o.json ? `${JSON.stringify(p)}\n` : `${line(p)}\n`);
    return p;
  }
  const bar = new cliProgress.SingleBar(
    { format: 'campaign {id} [{bar}] {percentage}% | {value}/{total} | sent {sent} failed {failed} skipped {skipped} | {rate}/s | ETA {eta_s}s | {status}', stream: out as NodeJS.WriteStream, noTTYOutput: true, notTTYSchedule: 2000, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  );
  const payload = (x: CampaignProgress) => ({ id: x.id, sent: x.sent, failed: x.failed, skipped: x.skipped, rate: x.ratePerSec, status: x.status });
  bar.start(Math.max(1, p.total), p.processed - p.queued - p.sending, payload(p));
  while (!FINAL.has(p.status)) {
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 1000));
    p = await read();
    bar.setTotal(Math.max(1, p.total));
    bar.update(p.sent + p.failed + p.skipped + p.cancelled, payload(p));
  }
  bar.update(p.sent + p.failed + p.skipped + p.cancelled, payload(p));
  bar.stop();
  out.write(o.json ? `${JSON.stringify(p)}\n` : `${line(p)}\n`);
  return p;
}
