/**
 * Redis connections for BullMQ and the service's own keys, to one server (`REDIS_URL`) or to a Redis Cluster
 * (`REDIS_CLUSTER_NODES`, an ioredis `Cluster`). Two roles, because they fail differently on purpose:
 * - `worker`: `maxRetriesPerRequest: null` (BullMQ requires it for blocking commands) and an offline queue, so a
 *   worker rides out a Redis restart and resumes.
 * - `producer`: fails fast (`enableOfflineQueue: false`, one retry), so an HTTP request can answer 503 at once
 *   instead of hanging while Shopify's 5-second budget runs out.
 *
 * On a cluster every key the service writes carries the prefix's `{hash tag}` (config.ts refuses a prefix without
 * one), so each BullMQ script, whose keys all belong to one queue, and each MULTI of ours reaches a single slot.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

export type RedisRole = 'worker' | 'producer';

/** A connection of either kind: everything the service calls on it (commands, MULTI, scripts, status) both have. */
export type RedisClient = Redis | Cluster;

export interface RedisClusterSettings {
  nodes: ReadonlyArray<{ host: string; port: number }>;
  username?: string;
  password?: string;
  tls: boolean;
}

export interface RedisSettings {
  url: string;
  /** Seed nodes of a Redis Cluster; when set, `url` is not used. */
  cluster?: RedisClusterSettings;
}

/** Keep reconnecting forever, but never faster than every 2 s. */
const backoff = (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000);

export function getRedisConnection(settings: RedisSettings, role: RedisRole, extra: RedisOptions = {}): RedisClient {
  const base: RedisOptions = { connectionName: `smsblossom-${role}`, connectTimeout: 2000, retryStrategy: backoff };
  const roleOptions: RedisOptions =
    role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: false, enableReadyCheck: true };
  if (!settings.cluster) return new Redis(settings.url, { ...base, ...roleOptions, ...extra });
  return new Cluster([...settings.cluster.nodes], clusterOptions(settings.cluster, { ...base, ...roleOptions, ...extra }));
}

/**
 * The role's options on a cluster: the per-node ones go to `redisOptions` (credentials, TLS, the retry budget BullMQ
 * checks there); what decides how the client as a whole waits and retries is the cluster's own.
 */
function clusterOptions(cluster: RedisClusterSettings, node: RedisOptions): ClusterOptions {
  const { retryStrategy: _perNode, enableOfflineQueue, enableReadyCheck, lazyConnect, ...redisOptions } = node;
  return {
    redisOptions: {
      ...redisOptions,
      ...(cluster.username ? { username: cluster.username } : {}),
      ...(cluster.password ? { password: cluster.password } : {}),
      ...(cluster.tls ? { tls: {} } : {}),
    },
    clusterRetryStrategy: backoff,
    enableOfflineQueue: enableOfflineQueue ?? true,
    enableReadyCheck: enableReadyCheck ?? true,
    lazyConnect: lazyConnect ?? false,
    // A failover moves slots: follow MOVED/ASK and refresh the slot map rather than fail the command.
    maxRedirections: 16,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 500,
    slotsRefreshTimeout: 2000,
  };
}

/** PING with a deadline. Never throws; `false` means unhealthy. */
export async function checkRedisHealth(redis: RedisClient, timeoutMs = 1000): Promise<boolean> {
  return (await pingRedis(redis, timeoutMs)).ok;
}

/** PING with a deadline, reporting the round-trip time. */
export async function pingRedis(redis: RedisClient, timeoutMs = 1000): Promise<{ ok: boolean; latencyMs: number; error?: string }> {
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

/** Waits until a fresh connection answers (on a cluster: until every slot is served), or rejects with a line telling the operator what to do. */
export async function assertRedisReachable(settings: RedisSettings, timeoutMs = 3000): Promise<void> {
  const probeOptions: RedisOptions = { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false };
  const probe: RedisClient = settings.cluster
    ? new Cluster([...settings.cluster.nodes], { ...clusterOptions(settings.cluster, probeOptions), clusterRetryStrategy: () => null, enableOfflineQueue: false })
    : new Redis(settings.url, probeOptions);
  probe.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        await probe.connect();
        await probe.ping();
        if (probe instanceof Cluster) {
          const info = String(await probe.cluster('INFO'));
          if (!/cluster_state:ok/.test(info)) throw new Error('the cluster reports cluster_state:fail (not every slot is served)');
        }
      })(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    throw new Error(
      settings.cluster
        ? `Redis Cluster is not reachable at REDIS_CLUSTER_NODES=${settings.cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')} ` +
            `(${(err as Error).message}). Check that the nodes answer and the cluster is formed (redis-cli --cluster check <node>).`
        : `Redis is not reachable at REDIS_URL=${redactUrl(settings.url)} (${(err as Error).message}). ` +
            'Start Redis (for example `redis-server --port 6379`) or set REDIS_URL to a running server.',
    );
  } finally {
    clearTimeout(timer);
    probe.disconnect();
  }
}

/** Where Redis is, for a log line (no password). */
export function describeRedis(settings: RedisSettings): string {
  return settings.cluster ? `cluster ${settings.cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}` : redactUrl(settings.url);
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
