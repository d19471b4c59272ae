/**
 * Fixed-window counters in Redis, shared by every API process: `hit` counts one event for a key and returns the count
 * in the current window, `peek` reads it. The first hit of a window starts its expiry. When Redis does not answer, counts
 * read as 0: a limit built on them lets requests through rather than refusing everyone.
 */
import type { RedisClient } from '../queue/redis.js';

export interface WindowCounter {
  readonly windowMs: number;
  hit(key: string): Promise<{ count: number; resetMs: number }>;
  peek(key: string): Promise<{ count: number; resetMs: number }>;
}

export function createWindowCounter(redis: RedisClient, keyPrefix: string, windowMs: number): WindowCounter {
  const full = (key: string) => `${keyPrefix}${key}`;
  return {
    windowMs,
    async hit(key) {
      const replies = await redis.multi().incr(full(key)).pexpire(full(key), windowMs, 'NX').pttl(full(key)).exec().catch(() => null);
      return { count: Number(replies?.[0]?.[1] ?? 0), resetMs: Math.max(0, Number(replies?.[2]?.[1] ?? 0)) };
    },
    async peek(key) {
      const [count, ttl] = await Promise.all([redis.get(full(key)), redis.pttl(full(key))]).catch(() => [null, 0] as const);
      return { count: Number(count ?? 0), resetMs: Math.max(0, Number(ttl)) };
    },
  };
}

/** Seconds until a window resets, at least 1 (for `Retry-After` and messages). */
export function retrySeconds(resetMs: number): number {
  return Math.max(1, Math.ceil(resetMs / 1000));
}
