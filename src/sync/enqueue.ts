/** Queues a shop's customer sync: one at a time per shop, whoever asks (install, operator, weekly reconcile). */
import type { Db } from '../db/client.js';
import { hasShopToken } from '../db/shopTokens.js';
import { getShopByDomain } from '../db/shops.js';
import { AppError } from '../errors.js';
import { jobIdFrom, type QueueRegistry } from '../queue/queues.js';

export type SyncReason = 'install' | 'manual' | 'reconcile';

/**
 * Enqueues `sync:shop` for the shop. While a sync of the shop is waiting or running, another request joins it
 * (BullMQ deduplication by shop) instead of starting a second; the id of the job that will run is returned.
 */
export async function enqueueShopSync(queues: QueueRegistry, shopDomain: string, reason: SyncReason, requestId?: string): Promise<string> {
  return queues.enqueueJob('sync', 'shop', { shopId: shopDomain, reason, ...(requestId ? { requestId } : {}) }, {
    deduplication: { id: jobIdFrom('sync', shopDomain) },
  });
}

/**
 * An operator's re-sync (CLI `smsblossom shop sync`, `POST /admin/shops/:shop/sync`): refused with NOT_FOUND for a
 * shop the service does not know and NO_ACCESS_TOKEN for one whose merchant never opened the app.
 */
export async function requestShopSync(db: Db, queues: QueueRegistry, shopDomain: string, requestId?: string): Promise<string> {
  const shop = await getShopByDomain(db, shopDomain);
  if (!shop) throw new AppError('NOT_FOUND', `shop ${shopDomain} is not a shop of this service (check the spelling)`);
  if (!(await hasShopToken(db, shop.id))) {
    throw new AppError('NO_ACCESS_TOKEN', `shop ${shopDomain} has no access token yet (it is obtained when the merchant first opens the app)`);
  }
  return enqueueShopSync(queues, shopDomain, 'manual', requestId);
}
