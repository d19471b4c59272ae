/**
 * Shopify's `bulk_operations/finish` webhook, carried to the sync job waiting on that operation: the events worker
 * that takes the webhook pushes onto a Redis list named after the shop and the operation, and the sync, between two
 * status queries, blocks on that list (BLPOP) instead of sleeping. The webhook and the sync may run in different
 * processes; a list, unlike a pub/sub message, keeps a finish that arrives before the sync starts waiting (for an hour),
 * so none is lost. Polling stays the fallback: a webhook that never comes costs only the poll interval.
 */
import type { RedisClient } from '../queue/redis.js';

/** How long an announced finish waits for its sync (a sync resumed later polls anyway). */
const SIGNAL_TTL_SECONDS = 3600;

/** The list a finish is announced on. No braces: the prefix's `{hash tag}` keeps the key in its slot on a cluster. */
export function bulkFinishKey(prefix: string, shopDomain: string, operationId: string): string {
  return `${prefix}:sync-bulk-finished:${shopDomain}:${operationId}`;
}

/** Announces that the shop's bulk operation ended (whatever its status: the sync asks Shopify which). */
export async function announceBulkFinish(redis: RedisClient, prefix: string, shopDomain: string, operationId: string): Promise<void> {
  const key = bulkFinishKey(prefix, shopDomain, operationId);
  await redis.multi().rpush(key, '1').expire(key, SIGNAL_TTL_SECONDS).exec();
}

/** The sync's side: waits for an announced finish, at most `ms`. */
export interface BulkFinishWaiter {
  /** Resolves true as soon as the operation's finish is announced (or was, before the call), false after `ms`. */
  wait(shopDomain: string, operationId: string, ms: number): Promise<boolean>;
  /** Closes the blocking connection; safe to call twice. */
  close(): Promise<void>;
}

/**
 * A waiter over a connection of its own, opened on the first wait: BLPOP blocks the connection it runs on, so it
 * cannot share BullMQ's or the producer's. Should Redis fail during a wait, the wait falls back to sleeping.
 */
export function bulkFinishWaiter(connect: () => RedisClient, prefix: string, sleep: (ms: number) => Promise<void>): BulkFinishWaiter {
  let redis: RedisClient | undefined;
  let closed = false;
  return {
    async wait(shopDomain, operationId, ms) {
      if (closed) return false;
      redis ??= connect();
      const started = Date.now();
      try {
        // BLPOP takes seconds, decimals included (Redis 6+); 0 would block for ever.
        const popped = await redis.blpop(bulkFinishKey(prefix, shopDomain, operationId), Math.max(ms, 10) / 1000);
        return popped !== null;
      } catch {
        const left = ms - (Date.now() - started);
        if (left > 0 && !closed) await sleep(left);
        return false;
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      redis?.disconnect();
    },
  };
}
