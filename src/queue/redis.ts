/**
 * Redis connections for BullMQ. Two roles, because they fail differently on purpose:
 * - `worker`: `maxRetriesPerRequest: null` (BullMQ requires it for blocking commands) and an offline queue, so a
 *   worker rides out a Redis restart and resumes.
 * - `producer`: fails fast (`enableOfflineQueue: false`, one retry), so an HTTP request can answer 503 at once
 *   instead of hanging while Shopify's 5-second budget runs out.
 */
import { Redis, type RedisOptions } from 'ioredis';

export type RedisRole = 'worker' | 'producer';

export interface RedisSettings {
  url: string;
}

export function getRedisConnection(settings: RedisSettings, role: RedisRole, extra: RedisOptions = {}): Redis {
  const base: RedisOptions = {
    connectionName: `smsblossom-${role}`,
    connectTimeout: 2000,
    // Keep reconnecting forever, but never faster than every 2 s.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  };
  const roleOptions: RedisOptions =
    role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: false, enableReadyCheck: true };
  return new Redis(settings.url, { ...base, ...roleOptions, ...extra });
}

/** PING with a deadline. Never throws; `false` means unhealthy. */
export async function checkRedisHealth(redis: Redis, timeoutMs = 1000): Promise<boolean> {
  return (await pingRedis(redis, timeoutMs)).ok;
}

/** PING with a deadline, reporting the round-trip time. */
export async function pingRedis(redis: Redis, timeoutMs = 1000): Promise<{ ok: boolean; latencyMs: number; error?: string }> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const reply = await Promise.race([
      redis.ping(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { ok: reply === 'PONG', latencyMs: performance.now() - started };
  } catch (err) {
    return { ok: false, latencyMs: performance.now() - started, error: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until a fresh connection answers, or rejects with a line telling the operator what to do. */
export async function assertRedisReachable(url: string, timeoutMs = 3000): Promise<void> {
  const probe = new Redis(url, { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
  } catch (err) {
    throw new Error(
      `Redis is not reachable at REDIS_URL=${redactUrl(url)} (${(err as Error).message}). ` +
        'Start Redis (for example `redis-server --port 6379`) or set REDIS_URL to a running server.',
    );
  } finally {
    probe.disconnect();
  }
}

/** A URL with any password replaced, safe for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}
