/**
 * `sync`: `shop` runs one shop's sync (src/sync/customers.ts) and reports its progress on the job (the dashboard shows
 * it); `reconcile` (weekly, from the housekeeping schedules) queues a `shop` sync for every installed shop holding an
 * access token. `shopId` is the shop's domain.
 */
import type { Job } from 'bullmq';
import { listSyncableShops } from '../../db/shopTokens.js';
import { AppError } from '../../errors.js';
import { runShopSync, type SyncDeps, type SyncResult } from '../../sync/customers.js';
import { enqueueShopSync } from '../../sync/enqueue.js';
import type { JobData, QueueRegistry } from '../queues.js';

export interface SyncProcessorDeps extends Omit<SyncDeps, 'progress'> {
  queues: QueueRegistry;
}

export async function processSync(job: Pick<Job, 'name' | 'updateProgress'>, data: JobData<'sync'>, deps: SyncProcessorDeps): Promise<SyncResult | { queued: number }> {
  if (job.name === 'reconcile') {
    const shops = await listSyncableShops(deps.db);
    for (const shop of shops) await enqueueShopSync(deps.queues, shop, 'reconcile', data.requestId);
    deps.logger.info({ shops: shops.length }, 'Weekly sync reconcile queued');
    return { queued: shops.length };
  }
  if (!data.shopId) throw new AppError('INVALID_JOB_DATA', 'sync:shop: shopId is required (the shop domain to sync)', { details: { fields: ['shopId'] } });
  return runShopSync(
    { shopDomain: data.shopId, reason: data.reason },
    {
      ...deps,
      requestId: data.requestId,
      progress: (percent, sync) => job.updateProgress({ percent, status: sync.status, lines: sync.linesDone, customers: sync.customersSynced, objectCount: sync.objectCount }),
    },
  );
}
