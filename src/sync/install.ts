/**
 * What a merchant's first authenticated request sets off: the token exchange, then the initial sync. It runs beside
 * the request, never in it (the request answers as fast as without it), at most once at a time per shop in a process;
 * after a success the process remembers the shop and does nothing more for it. Across processes, a second exchange
 * for the same shop is harmless (the last token stored wins) and the sync job is deduplicated per shop.
 */
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import { getShopToken } from '../db/shopTokens.js';
import { markShopInstalled } from '../db/shops.js';
import { safeErrorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { QueueRegistry } from '../queue/queues.js';
import type { FetchLike } from '../shopify/adminClient.js';
import { tokenKeyId } from '../shopify/tokens.js';
import { obtainOfflineToken } from './accessToken.js';
import { enqueueShopSync } from './enqueue.js';

export interface InstallerDeps {
  db: Db;
  config: Pick<Config, 'shopify' | 'shopifyAdmin'>;
  queues: QueueRegistry;
  logger: Logger;
  fetch?: FetchLike;
}

/** After a failed exchange, the shop's next requests wait this long before another attempt. */
const RETRY_AFTER_MS = 60_000;

export interface Installer {
  /** Called after a session token verified; returns at once. */
  onMerchantRequest(shop: { id: number; domain: string; uninstalledAt: Date | null }, sessionToken: string): void;
  /** Resolves when every exchange under way has settled (shutdown, tests). */
  idle(): Promise<void>;
}

export function createInstaller(deps: InstallerDeps): Installer {
  const ready = new Set<number>();
  const running = new Map<number, Promise<void>>();
  const failedAt = new Map<number, number>();

  /** A stored token under a key this process holds (one under a retired key is replaced by a new exchange). */
  async function hasUsableToken(shopId: number): Promise<boolean> {
    const stored = await getShopToken(deps.db, shopId);
    const keys = [deps.config.shopifyAdmin.tokenKey.id, deps.config.shopifyAdmin.previousTokenKey?.id];
    return stored !== undefined && keys.includes(tokenKeyId(stored.accessToken));
  }

  async function install(shop: { id: number; domain: string; uninstalledAt: Date | null }, sessionToken: string): Promise<void> {
    if (!shop.uninstalledAt && (await hasUsableToken(shop.id))) return;
    await obtainOfflineToken(shop, sessionToken, deps);
    // Shopify grants tokens only to an installed app: a token for a shop marked uninstalled means it was installed again.
    if (shop.uninstalledAt) await markShopInstalled(deps.db, shop.domain, new Date());
    await enqueueShopSync(deps.queues, shop.domain, 'install');
    deps.logger.info({ shopId: shop.domain }, 'Access token obtained; initial sync queued');
  }

  return {
    onMerchantRequest(shop, sessionToken) {
      if (!deps.config.shopifyAdmin.tokenExchange) return;
      // An uninstalled shop's token was deleted: a request for it means it was installed again, so look again.
      if ((ready.has(shop.id) && !shop.uninstalledAt) || running.has(shop.id)) return;
      const failed = failedAt.get(shop.id);
      if (failed !== undefined && Date.now() - failed < RETRY_AFTER_MS) return;
      const run = install(shop, sessionToken).then(
        () => {
          ready.add(shop.id);
          failedAt.delete(shop.id);
        },
        (err: unknown) => {
          failedAt.set(shop.id, Date.now());
          deps.logger.warn({ shopId: shop.domain, err: safeErrorMessage(err) }, 'Token exchange failed; the next request tries again');
        },
      );
      running.set(shop.id, run);
      void run.finally(() => running.delete(shop.id));
    },
    async idle() {
      await Promise.all(running.values());
    },
  };
}
