/**
 * The one reader of the environment. `loadConfig()` parses `process.env` (or a given record) into a validated,
 * frozen {@link Config}; nothing else in SMS Blossom touches `process.env`.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { AppError } from './errors.js';
import type { RedisClusterSettings } from './queue/redis.js';

export const QUEUE_NAMES = ['events', 'automations', 'campaigns', 'delivery', 'housekeeping', 'sync'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

const DEV_SHOPIFY_SECRET = 'smsblossom-dev-secret';
/** Merchant session tokens carry the app's API key as `aud`; outside production a fixed one stands in. */
const DEV_SHOPIFY_API_KEY = 'smsblossom-dev-key';

const concurrency = (fallback: number) => z.coerce.number().int().min(1).max(1000).default(fallback);
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  REDIS_URL: z
    .string()
    .url()
    .refine((u) => /^rediss?:\/\//.test(u), 'must start with redis:// or rediss://')
    .optional(),
  REDIS_PREFIX: z
    .string()
    .min(1)
    .regex(/^\S+$/, 'must not contain whitespace')
    .refine((p) => !p.endsWith(':'), 'must not end with ":"')
    .default('smsblossom:dev'),
  REDIS_EMBEDDED: bool.optional(),
  REDIS_CLUSTER_NODES: z.string().transform((v, ctx) => parseClusterNodes(v, ctx)).optional(),
  DATABASE_URL: z
    .string()
    .refine((u) => /^postgres(ql)?:\/\//.test(u), 'must start with postgres:// or postgresql://')
    .optional(),
  DATABASE_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier')
    .default('public'),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  DATABASE_API_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(4),
  DATABASE_POOL_MODE: z.enum(['session', 'transaction']).default('session'),
  DATA_DIR: z.string().min(1).default('.data'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SHOPIFY_API_SECRET: z.string().min(1).optional(),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  SHOPIFY_API_KEY: z.string().min(1).optional(),
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  RATE_LIMIT_WINDOW_MS: z.coerce.number().int().min(1000).max(3_600_000).default(60_000),
  RATE_LIMIT_SHOP_MAX: z.coerce.number().int().min(1).max(1_000_000).default(600),
  RATE_LIMIT_IP_MAX: z.coerce.number().int().min(1).max(1_000_000).default(300),
  WORKER_QUEUES: z
    .string()
    .default(QUEUE_NAMES.join(','))
    .transform((s, ctx) => {
      const names = s
        .split(',')
        .map((n) => n.trim())
        .filter(Boolean);
      for (const n of names) {
        if (!(QUEUE_NAMES as readonly string[]).includes(n)) {
          ctx.addIssue({ code: 'custom', message: `unknown queue "${n}" (known: ${QUEUE_NAMES.join(', ')})` });
          return z.NEVER;
        }
      }
      return [...new Set(names)] as QueueName[];
    }),
  EVENTS_CONCURRENCY: concurrency(10),
  AUTOMATIONS_CONCURRENCY: concurrency(10),
  CAMPAIGNS_CONCURRENCY: concurrency(2),
  DELIVERY_CONCURRENCY: concurrency(20),
  HOUSEKEEPING_CONCURRENCY: concurrency(1),
  SYNC_CONCURRENCY: concurrency(2),
  PROCESSES: z.coerce.number().int().min(1).max(256).optional(),
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).max(600_000).default(25_000),
  WORKER_LOCK_DURATION_MS: z.coerce.number().int().min(1000).max(600_000).default(30_000),
  WORKER_STALLED_INTERVAL_MS: z.coerce.number().int().min(1000).max(600_000).default(30_000),
  WORKER_MAX_STALLED_COUNT: z.coerce.number().int().min(0).max(100).default(3),
  TRUST_PROXY: z
    .string()
    .regex(/^(true|false|\d{1,2}|[0-9A-Fa-f.:/]+(,[0-9A-Fa-f.:/]+)*)$/, 'must be true, false, a hop count or a comma-separated list of proxy addresses/CIDRs')
    .default('false'),
  HTTP_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  HTTP_HEADERS_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5_000),
  HTTP_MAX_CONNECTIONS: z.coerce.number().int().min(1).max(1_000_000).default(2048),
  HTTP_MAX_CONNECTIONS_PER_IP: z.coerce.number().int().min(1).max(1_000_000).default(512),
  // One thread per core but one (the event loop's), at least one, at most four.
  RENDER_POOL_SIZE: z.coerce.number().int().min(1).max(64).default(Math.max(1, Math.min(4, os.availableParallelism() - 1))),
  RENDER_TIMEOUT_MS: z.coerce.number().int().min(10).max(60_000).default(1000),
  RENDER_QUEUE_MAX: z.coerce.number().int().min(1).max(100_000).default(64),
  PREVIEW_RATE_LIMIT_MAX: z.coerce.number().int().min(1).max(100_000).default(30),
  WEBHOOK_BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).max(50 * 1024 * 1024).default(1024 * 1024),
  REDIS_HEALTH_TIMEOUT_MS: z.coerce.number().int().min(10).max(60_000).default(1000),
  SMS_PROVIDER: z.enum(['mitto', 'sandbox']).optional(),
  MITTO_API_URL: z.string().url().default('https://rest.mittoapi.com'),
  MITTO_API_KEY: z.string().min(1).optional(),
  MITTO_SENDER: z
    .string()
    .regex(/^([A-Za-z0-9 ]{3,11}|\+?[0-9]{3,14})$/, 'must be 3-11 letters/digits or a number of 3-14 digits')
    .default('SMSBlossom'),
  MITTO_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
  MITTO_RATE_LIMIT_PER_SEC: z.coerce.number().int().min(0).max(10_000).default(0),
  SANDBOX_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  PUBLIC_URL: z.string().url().optional(),
  DLR_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  DLR_HMAC_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  SMS_COST_PER_SEGMENT: z.coerce.number().min(0).max(10).default(0.03),
  DELIVERY_RECONCILE_DELAY_MS: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
  DELIVERY_RECONCILE_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(10),
  CAMPAIGN_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(500),
  CAMPAIGN_MAX_BACKLOG: z.coerce.number().int().min(1).max(1_000_000).default(2000),
  CAMPAIGN_SEND_BATCH: z.coerce.number().int().min(1).max(500).default(50),
  CAMPAIGN_POLL_MS: z.coerce.number().int().min(10).max(600_000).default(1000),
  CAMPAIGN_PAUSED_RECHECK_MS: z.coerce.number().int().min(10).max(3_600_000).default(10_000),
  HOUSEKEEPING_SCHEDULES: bool.default(true),
  MESSAGE_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  EVENT_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
  RETRY_FAILED_MAX_PER_RUN: z.coerce.number().int().min(0).max(100_000).default(100),
  STUCK_MESSAGE_TIMEOUT_MINUTES: z.coerce.number().int().min(1).max(10_080).default(30),
  TOKEN_ENCRYPTION_KEY: z.string().refine((v) => decodeKey(v) !== null, 'must be 32 bytes as 64 hex digits or base64').optional(),
  TOKEN_ENCRYPTION_KEY_PREVIOUS: z.string().refine((v) => decodeKey(v) !== null, 'must be 32 bytes as 64 hex digits or base64').optional(),
  SHOPIFY_ADMIN_BASE_URL: z.string().url().refine((u) => /^https?:\/\//.test(u), 'must start with http:// or https://').optional(),
  SYNC_PAGE_SIZE: z.coerce.number().int().min(1).max(10_000).default(1000),
  SYNC_POLL_MAX_MS: z.coerce.number().int().min(10).max(600_000).default(30_000),
});

/** A 32-byte key written as 64 hex digits or base64; null when it is neither. */
function decodeKey(value: string): Buffer | null {
  const key = /^[0-9a-fA-F]{64}$/.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64');
  return key.length === 32 ? key : null;
}

/** A key with its id: the first 8 hex digits of its SHA-256, stored beside each ciphertext so rotation finds its key. */
function tokenKey(key: Buffer): TokenKey {
  // Kept as base64: a frozen config cannot hold a Buffer (typed arrays cannot be frozen).
  return { id: createHash('sha256').update(key).digest('hex').slice(0, 8), keyBase64: key.toString('base64') };
}

/** An AES-256 key for access tokens at rest. */
export interface TokenKey {
  readonly id: string;
  /** The 32 key bytes, base64. */
  readonly keyBase64: string;
}

export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly redis: {
    /** Connection URL. Undefined when unset: the default `redis://localhost:6379` is used, or an embedded server. */
    readonly url: string;
    readonly urlWasSet: boolean;
    /** Key prefix for every BullMQ key. A `{hash-tag}` keeps a queue's keys in one Redis Cluster slot. */
    readonly prefix: string;
    /** Start a private redis-server when REDIS_URL is unset and nothing answers on localhost:6379. */
    readonly embedded: boolean;
    readonly healthTimeoutMs: number;
    /** Seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES); every connection is then an ioredis `Cluster`. */
    readonly cluster?: RedisClusterSettings;
  };
  readonly database: {
    /** PostgreSQL URL; undefined selects the embedded PGlite database under `dataDir`. */
    readonly url: string | undefined;
    readonly schema: string;
    readonly poolSize: number;
    /**
     * Connections of the HTTP API's own pool in a process that also runs workers (PostgreSQL only): a webhook's insert
     * never waits for a connection behind the workers' statements.
     */
    readonly apiPoolSize: number;
    /**
     * How PostgreSQL is reached: `session` (directly, or a pooler in session mode) or `transaction` (PgBouncer and
     * the like in transaction mode: no startup options, no named prepared statements; see db/client.ts).
     */
    readonly poolMode: 'session' | 'transaction';
  };
  readonly dataDir: string;
  readonly http: {
    readonly port: number;
    readonly host: string;
    readonly webhookBodyLimit: number;
    /**
     * Which proxies' `X-Forwarded-For` / `X-Forwarded-Proto` are believed (Fastify's `trustProxy`): `false`, `true`
     * (any), a hop count, or addresses/CIDRs. Decides the client IP of rate limits and whether the operator cookie is
     * `Secure` behind a TLS-terminating proxy.
     */
    readonly trustProxy: boolean | number | string[];
    /** Longest a request (headers and body) may take to arrive; a slower one is answered 408 and its socket closed. */
    readonly requestTimeoutMs: number;
    /** Longest the request headers may take to arrive. */
    readonly headersTimeoutMs: number;
    /** How long an idle keep-alive connection stays open. */
    readonly keepAliveTimeoutMs: number;
    /** Open connections in all; more are closed on arrival. */
    readonly maxConnections: number;
    /**
     * Open connections per peer address, so one slow client cannot take them all. Not applied with `trustProxy` (the
     * peers are then proxies, each carrying many clients).
     */
    readonly maxConnectionsPerIp: number;
  };
  /** Merchant-controlled Liquid runs in a pool of worker threads, never on the event loop that takes webhooks. */
  readonly render: {
    readonly poolSize: number;
    /** Hard deadline of one render: past it the thread is terminated and replaced. */
    readonly timeoutMs: number;
    /** Renders waiting for a thread; past it a render is refused at once (503) rather than queued. */
    readonly queueMax: number;
    /** Template previews per shop per RATE_LIMIT_WINDOW_MS. */
    readonly previewMax: number;
  };
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly shopify: {
    readonly apiSecret: string;
    readonly usingDevSecret: boolean;
    /** The `aud` of merchant session tokens; undefined (production without SHOPIFY_API_KEY) disables `/api/*`. */
    readonly apiKey: string | undefined;
    readonly usingDevApiKey: boolean;
  };
  /** The Admin API side of Shopify: access tokens (by token exchange) and the customer sync. */
  readonly shopifyAdmin: {
    /**
     * SHOPIFY_ADMIN_BASE_URL: shop X's Admin requests go to `{base}/X/admin/...` instead of `https://X/admin/...` (the
     * bundled sandbox). Undefined in production, where it is refused.
     */
    readonly baseUrl: string | undefined;
    /**
     * Exchange session tokens for access tokens on merchant requests: always, except with NODE_ENV=test and no
     * SHOPIFY_ADMIN_BASE_URL (tests never call the real Shopify).
     */
    readonly tokenExchange: boolean;
    /** Encrypts new tokens (TOKEN_ENCRYPTION_KEY; outside production a key derived from the Shopify secret). */
    readonly tokenKey: TokenKey;
    /** TOKEN_ENCRYPTION_KEY_PREVIOUS: still decrypts tokens written before a rotation. */
    readonly previousTokenKey: TokenKey | undefined;
    /** Customers per upsert page of a sync. */
    readonly syncPageSize: number;
    /** Longest wait between two polls of a running bulk operation (the wait doubles from 250 ms up to this). */
    readonly pollMaxMs: number;
  };
  readonly adminToken: string | undefined;
  /** Bearer token for `GET /metrics`; undefined leaves it open (it carries counts only, no shop or customer data). */
  readonly metricsToken: string | undefined;
  /** Admin API limits: per shop on `/api/*`, per client IP elsewhere; webhooks and health are never limited. */
  readonly rateLimit: { readonly windowMs: number; readonly shopMax: number; readonly ipMax: number };
  readonly sms: {
    /** `sandbox` (default without MITTO_API_KEY) starts the bundled Mitto-compatible server and sends to it. */
    readonly provider: 'mitto' | 'sandbox';
    readonly mittoApiUrl: string;
    readonly mittoApiKey: string;
    readonly sender: string;
    readonly timeoutMs: number;
    /** Messages per second across this process's delivery worker; 0 = unlimited. */
    readonly ratePerSecond: number;
    readonly sandboxPort: number;
    readonly costPerSegment: number;
    /** Base URL Mitto calls back (delivery reports, inbound); defaults to http://localhost:PORT. */
    readonly publicUrl: string;
    /** False when PUBLIC_URL is unset: the service then uses the address it actually listens on. */
    readonly publicUrlWasSet: boolean;
    /** Secret in the callback URLs; without it, callbacks are refused. */
    readonly dlrToken: string;
    readonly dlrHmacSecret: string | undefined;
    /** After an ambiguous send, how long to wait for a delivery report before looking again, and how often. */
    readonly reconcileDelayMs: number;
    readonly reconcileAttempts: number;
  };
  readonly housekeeping: {
    /** Register the housekeeping job schedulers at start (in processes that serve `housekeeping`). */
    readonly schedules: boolean;
    /** Default days a message row is kept; a shop's `settings.messageRetentionDays` overrides it. */
    readonly messageRetentionDays: number;
    /** Days a stored webhook event (and its payload) is kept. */
    readonly eventRetentionDays: number;
    /** At most this many failed messages are re-queued per `retry_failed_messages` run. */
    readonly retryFailedMaxPerRun: number;
    /** A message `queued` or `sending` this long with no job to move it on is swept by `reconcile`. */
    readonly stuckMessageTimeoutMinutes: number;
  };
  readonly campaigns: {
    /** Contacts per audience page. */
    readonly batchSize: number;
    /** Most messages of one campaign queued or sending at once: the campaign's share of the delivery queue. */
    readonly maxBacklog: number;
    /**
     * Messages one delivery job of a campaign sends: read, claimed and settled in one statement each. 1 when the
     * provider has a send rate (`MITTO_RATE_LIMIT_PER_SEC`), which BullMQ's limiter counts in jobs.
     */
    readonly sendBatch: number;
    /** How often a campaign whose backlog is full looks again. */
    readonly pollMs: number;
    /** How long a delivery job of a paused campaign waits before it looks at the campaign again. */
    readonly pausedRecheckMs: number;
  };
  /** How many processes `smsblossom start` runs, each with the HTTP API and every worker of `workers.queues`. */
  readonly processes: {
    /** PROCESSES, else one per core (`os.availableParallelism()`) on PostgreSQL and 1 on the embedded PGlite. */
    readonly count: number;
    /** False when the count is the default rather than PROCESSES. */
    readonly explicit: boolean;
  };
  readonly workers: {
    readonly queues: readonly QueueName[];
    readonly concurrency: Readonly<Record<QueueName, number>>;
    readonly shutdownTimeoutMs: number;
    /**
     * How long a job's lock lasts without renewal (renewed every half of it while the job runs). A worker that dies
     * holding jobs gives them up after at most this plus `stalledIntervalMs`, when another worker runs them again.
     */
    readonly lockDurationMs: number;
    /** How often workers look for jobs whose lock expired (stalled jobs). */
    readonly stalledIntervalMs: number;
    /** How many times a job may stall (its worker died) and still be run again, rather than failed. */
    readonly maxStalledCount: number;
  };
}

export class ConfigError extends AppError {
  readonly variable: string;
  constructor(variable: string, problem: string) {
    super('CONFIG_INVALID', `${variable}: ${problem}`, { details: { variable } });
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

function parseTrustProxy(value: string): boolean | number | string[] {
  if (value === 'true' || value === 'false') return value === 'true';
  if (/^\d+$/.test(value)) return Number(value);
  return value.split(',').map((s) => s.trim());
}

/** The first `{…}` of a key is its hash tag (Redis Cluster hashes only that); an empty `{}` does not count. */
const CLUSTER_PREFIX = /^[^{]*\{[^}]+\}/;

/**
 * `host:port,host:port,…`, or the same as URLs (`redis://user:password@host:port`, `rediss://…` for TLS): credentials
 * and TLS are the cluster's, so every entry that names them must name the same.
 */
function parseClusterNodes(value: string, ctx: z.RefinementCtx): RedisClusterSettings {
  const nodes: Array<{ host: string; port: number }> = [];
  let auth: { username?: string; password?: string; tls: boolean } | undefined;
  for (const raw of value.split(',').map((v) => v.trim()).filter(Boolean)) {
    const isUrl = /^rediss?:\/\//.test(raw);
    let u: URL;
    try {
      u = new URL(isUrl ? raw : `redis://${raw}`);
    } catch {
      ctx.addIssue({ code: 'custom', message: `each node must be host:port or a redis:// URL (entry ${nodes.length + 1} is not)` });
      return z.NEVER;
    }
    const port = Number(u.port || 6379);
    if (!u.hostname || !(port > 0 && port < 65536) || (u.pathname !== '' && u.pathname !== '/')) {
      ctx.addIssue({ code: 'custom', message: `each node must be host:port (entry ${nodes.length + 1} is not)` });
      return z.NEVER;
    }
    nodes.push({ host: u.hostname.replace(/^\[|\]$/g, ''), port });
    if (!isUrl) continue;
    const mine = { ...(u.username ? { username: decodeURIComponent(u.username) } : {}), ...(u.password ? { password: decodeURIComponent(u.password) } : {}), tls: u.protocol === 'rediss:' };
    if (auth && JSON.stringify(auth) !== JSON.stringify(mine)) {
      ctx.addIssue({ code: 'custom', message: 'every node URL must name the same credentials and scheme (one cluster, one login)' });
      return z.NEVER;
    }
    auth = mine;
  }
  if (!nodes.length) {
    ctx.addIssue({ code: 'custom', message: 'must name at least one node (host:port)' });
    return z.NEVER;
  }
  return { nodes, tls: false, ...auth };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Parses the environment. Empty strings count as unset. Throws {@link ConfigError} naming the first bad variable.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const cleaned: Record<string, string> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const v = env[key];
    if (v !== undefined && v.trim() !== '') cleaned[key] = v.trim();
  }
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'environment');
    const shown = cleaned[variable];
    const secret = /SECRET|TOKEN|URL|NODES/.test(variable);
    throw new ConfigError(variable, `${issue.message}${shown !== undefined && !secret ? ` (got "${shown}")` : ''}`);
  }
  const e = parsed.data;
  if (e.NODE_ENV === 'production' && !e.SHOPIFY_API_SECRET) {
    throw new ConfigError('SHOPIFY_API_SECRET', 'is required when NODE_ENV=production');
  }
  if (e.SMS_PROVIDER === 'mitto' && !e.MITTO_API_KEY) {
    throw new ConfigError('MITTO_API_KEY', 'is required when SMS_PROVIDER=mitto');
  }
  if (e.NODE_ENV === 'production') {
    // The sandbox answers "delivered" for messages that go nowhere: production uses it only when told to.
    if (!e.MITTO_API_KEY && e.SMS_PROVIDER !== 'sandbox') {
      throw new ConfigError('MITTO_API_KEY', 'is required when NODE_ENV=production (or set SMS_PROVIDER=sandbox explicitly)');
    }
    // Delivery reports and replies are called back at PUBLIC_URL; a guessed localhost address never receives them.
    if (!e.PUBLIC_URL) throw new ConfigError('PUBLIC_URL', 'is required when NODE_ENV=production (the address the SMS provider calls back)');
    // Access tokens open a shop's Admin API: production never encrypts them with a key derived from anything else.
    if (!e.TOKEN_ENCRYPTION_KEY) throw new ConfigError('TOKEN_ENCRYPTION_KEY', 'is required when NODE_ENV=production (32 bytes: `openssl rand -base64 32`)');
    // A redirected Admin API would hand merchants' access tokens to whatever listens there.
    if (e.SHOPIFY_ADMIN_BASE_URL) throw new ConfigError('SHOPIFY_ADMIN_BASE_URL', 'is refused when NODE_ENV=production (it points the Admin API at a sandbox)');
  }
  // PGlite lives inside the one process that opened it (db/pgliteLock.ts refuses a second opener).
  if (e.PROCESSES !== undefined && e.PROCESSES > 1 && !e.DATABASE_URL) {
    throw new ConfigError('PROCESSES', `must be 1 with the embedded database (PGlite is opened by a single process); to run more, set DATABASE_URL to a PostgreSQL server (got "${e.PROCESSES}")`);
  }
  // A BullMQ script touches several keys of one queue and a cluster runs it only if they share a slot: the prefix's
  // hash tag puts every key of the service in one.
  if (e.REDIS_CLUSTER_NODES && !CLUSTER_PREFIX.test(e.REDIS_PREFIX)) {
    throw new ConfigError(
      'REDIS_PREFIX',
      `must contain a {hash tag} when REDIS_CLUSTER_NODES is set, so that the keys each command touches share one cluster slot: set REDIS_PREFIX={smsblossom} (got "${e.REDIS_PREFIX}")`,
    );
  }
  const config: Config = {
    env: e.NODE_ENV,
    redis: {
      url: e.REDIS_URL ?? 'redis://localhost:6379',
      urlWasSet: e.REDIS_URL !== undefined,
      prefix: e.REDIS_PREFIX,
      embedded: !e.REDIS_CLUSTER_NODES && (e.REDIS_EMBEDDED ?? (e.REDIS_URL === undefined && e.NODE_ENV !== 'production')),
      healthTimeoutMs: e.REDIS_HEALTH_TIMEOUT_MS,
      ...(e.REDIS_CLUSTER_NODES ? { cluster: e.REDIS_CLUSTER_NODES } : {}),
    },
    database: { url: e.DATABASE_URL, schema: e.DATABASE_SCHEMA, poolSize: e.DATABASE_POOL_SIZE, apiPoolSize: e.DATABASE_API_POOL_SIZE, poolMode: e.DATABASE_POOL_MODE },
    dataDir: path.resolve(e.DATA_DIR),
    http: {
      port: e.PORT,
      host: e.HOST,
      webhookBodyLimit: e.WEBHOOK_BODY_LIMIT_BYTES,
      trustProxy: parseTrustProxy(e.TRUST_PROXY),
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      maxConnections: e.HTTP_MAX_CONNECTIONS,
      maxConnectionsPerIp: e.HTTP_MAX_CONNECTIONS_PER_IP,
    },
    render: { poolSize: e.RENDER_POOL_SIZE, timeoutMs: e.RENDER_TIMEOUT_MS, queueMax: e.RENDER_QUEUE_MAX, previewMax: e.PREVIEW_RATE_LIMIT_MAX },
    logLevel: e.LOG_LEVEL,
    shopify: {
      apiSecret: e.SHOPIFY_API_SECRET ?? DEV_SHOPIFY_SECRET,
      usingDevSecret: !e.SHOPIFY_API_SECRET,
      apiKey: e.SHOPIFY_API_KEY ?? (e.NODE_ENV === 'production' ? undefined : DEV_SHOPIFY_API_KEY),
      usingDevApiKey: !e.SHOPIFY_API_KEY && e.NODE_ENV !== 'production',
    },
    shopifyAdmin: {
      baseUrl: e.SHOPIFY_ADMIN_BASE_URL?.replace(/\/+$/, ''),
      tokenExchange: e.NODE_ENV !== 'test' || e.SHOPIFY_ADMIN_BASE_URL !== undefined,
      tokenKey: tokenKey(
        e.TOKEN_ENCRYPTION_KEY
          ? decodeKey(e.TOKEN_ENCRYPTION_KEY)!
          : createHash('sha256').update(`tokens:${e.SHOPIFY_API_SECRET ?? DEV_SHOPIFY_SECRET}`).digest(),
      ),
      previousTokenKey: e.TOKEN_ENCRYPTION_KEY_PREVIOUS ? tokenKey(decodeKey(e.TOKEN_ENCRYPTION_KEY_PREVIOUS)!) : undefined,
      syncPageSize: e.SYNC_PAGE_SIZE,
      pollMaxMs: e.SYNC_POLL_MAX_MS,
    },
    adminToken: e.ADMIN_TOKEN,
    metricsToken: e.METRICS_TOKEN,
    rateLimit: { windowMs: e.RATE_LIMIT_WINDOW_MS, shopMax: e.RATE_LIMIT_SHOP_MAX, ipMax: e.RATE_LIMIT_IP_MAX },
    sms: {
      provider: e.SMS_PROVIDER ?? (e.MITTO_API_KEY ? 'mitto' : 'sandbox'),
      mittoApiUrl: e.MITTO_API_URL.replace(/\/+$/, ''),
      mittoApiKey: e.MITTO_API_KEY ?? 'sandbox-key',
      sender: e.MITTO_SENDER,
      timeoutMs: e.MITTO_TIMEOUT_MS,
      ratePerSecond: e.MITTO_RATE_LIMIT_PER_SEC,
      sandboxPort: e.SANDBOX_PORT,
      costPerSegment: e.SMS_COST_PER_SEGMENT,
      publicUrl: (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, ''),
      publicUrlWasSet: e.PUBLIC_URL !== undefined,
      dlrToken: e.DLR_TOKEN ?? createHash('sha256').update(`dlr:${e.SHOPIFY_API_SECRET ?? DEV_SHOPIFY_SECRET}`).digest('hex').slice(0, 32),
      dlrHmacSecret: e.DLR_HMAC_SECRET,
      reconcileDelayMs: e.DELIVERY_RECONCILE_DELAY_MS,
      reconcileAttempts: e.DELIVERY_RECONCILE_ATTEMPTS,
    },
    housekeeping: {
      schedules: e.HOUSEKEEPING_SCHEDULES,
      messageRetentionDays: e.MESSAGE_RETENTION_DAYS,
      eventRetentionDays: e.EVENT_RETENTION_DAYS,
      retryFailedMaxPerRun: e.RETRY_FAILED_MAX_PER_RUN,
      stuckMessageTimeoutMinutes: e.STUCK_MESSAGE_TIMEOUT_MINUTES,
    },
    campaigns: {
      batchSize: e.CAMPAIGN_BATCH_SIZE,
      maxBacklog: e.CAMPAIGN_MAX_BACKLOG,
      sendBatch: e.MITTO_RATE_LIMIT_PER_SEC > 0 ? 1 : e.CAMPAIGN_SEND_BATCH,
      pollMs: e.CAMPAIGN_POLL_MS,
      pausedRecheckMs: e.CAMPAIGN_PAUSED_RECHECK_MS,
    },
    processes: {
      count: e.PROCESSES ?? (e.DATABASE_URL ? os.availableParallelism() : 1),
      explicit: e.PROCESSES !== undefined,
    },
    workers: {
      queues: e.WORKER_QUEUES,
      concurrency: {
        events: e.EVENTS_CONCURRENCY,
        automations: e.AUTOMATIONS_CONCURRENCY,
        campaigns: e.CAMPAIGNS_CONCURRENCY,
        delivery: e.DELIVERY_CONCURRENCY,
        housekeeping: e.HOUSEKEEPING_CONCURRENCY,
        sync: e.SYNC_CONCURRENCY,
      },
      shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
      lockDurationMs: e.WORKER_LOCK_DURATION_MS,
      stalledIntervalMs: e.WORKER_STALLED_INTERVAL_MS,
      maxStalledCount: e.WORKER_MAX_STALLED_COUNT,
    },
  };
  return deepFreeze(config);
}

/** For entry points: parse, or print one line naming the variable and exit with code 2. */
export function loadConfigOrExit(env: Record<string, string | undefined> = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`smsblossom: invalid configuration: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** Rebuilds a config with overrides; used by tests and tools that derive a variant (another prefix, schema). */
export function withOverrides(base: Config, patch: { redis?: Partial<Config['redis']>; database?: Partial<Config['database']>; workers?: Partial<Config['workers']>; http?: Partial<Config['http']>; sms?: Partial<Config['sms']>; adminToken?: string | undefined; logLevel?: Config['logLevel'] }): Config {
  return deepFreeze({
    ...base,
    redis: { ...base.redis, ...patch.redis },
    database: { ...base.database, ...patch.database },
    workers: { ...base.workers, ...patch.workers },
    http: { ...base.http, ...patch.http },
    sms: { ...base.sms, ...patch.sms },
    ...('adminToken' in patch ? { adminToken: patch.adminToken } : {}),
    ...(patch.logLevel ? { logLevel: patch.logLevel } : {}),
  });
}
