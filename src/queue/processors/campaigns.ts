/**
 * `campaigns:batch`: thin. Unpacks the job and runs {@link runCampaignBatch}, which produces the campaign's next pages
 * while its delivery backlog has room, and otherwise asks to run again later (see `src/campaigns/batch.ts`).
 */
import { runCampaignBatch, type BatchControl, type BatchOutcome, type CampaignDeps } from '../../campaigns/batch.js';
import { getCampaign } from '../../db/campaigns.js';
import type { Db } from '../../db/client.js';
import type { JobData } from '../queues.js';

export function processCampaignBatch(data: JobData<'campaigns'>, deps: CampaignDeps, control: BatchControl): Promise<BatchOutcome> {
  // The job's own batch size (the catalog's default, or what the producer chose) wins over the configured one.
  return runCampaignBatch(data, { ...deps, pacing: { ...deps.pacing, batchSize: data.batchSize } }, control);
}

/**
 * The delivery processor's view of a campaign: send its messages while it is sending (or done materialising), hold them
 * while it is paused, cancel them once it is cancelled or failed.
 */
export function campaignGate(db: Db, pausedRecheckMs: number) {
  return async (campaignId: string): Promise<{ action: 'send' } | { action: 'hold'; until: Date } | { action: 'cancel' }> => {
    const id = Number(campaignId);
    if (!Number.isSafeInteger(id)) return { action: 'send' };
    const c = await getCampaign(db, id);
    if (!c) return { action: 'send' };
    if (c.status === 'paused') return { action: 'hold', until: new Date(Date.now() + pausedRecheckMs) };
    if (c.status === 'cancelled' || c.status === 'failed') return { action: 'cancel' };
    return { action: 'send' };
  };
}
