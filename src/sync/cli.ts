/** `smsblossom shop sync --shop X`: queues a re-sync of the shop (the workers of the `sync` queue run it). */
import { AppError } from '../errors.js';
import { isShopDomain } from '../shopify/shopDomain.js';
import type { System } from '../system.js';
import { requestShopSync } from './enqueue.js';

export async function syncShopCommand(system: Pick<System, 'db' | 'queues'>, shopDomain: string): Promise<string> {
  if (!isShopDomain(shopDomain)) throw new AppError('VALIDATION_FAILED', `--shop: "${shopDomain}" is not a *.myshopify.com domain`);
  const jobId = await requestShopSync(system.db.db, system.queues, shopDomain);
  return `Sync of ${shopDomain} queued as sync job ${jobId}; progress: GET /admin/shops/${shopDomain}/sync or the queue dashboard`;
}
