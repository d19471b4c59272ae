/**
 * The one reader of the environment. `loadConfig()` parses `process.env` (or a given record) into a validated,
 * frozen {@link Config}; nothing else in SMS Blossom touches `process.env`.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { AppError } from './errors.js';

export const QUEUE_NAMES = ['events', 'automations', 'campaigns', 'delivery', 'housekeeping'] as const;
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
  DATABASE_URL: z
    .string()
    .refine((u) => /^postgres(ql)?:\/\//.test(u), 'must start with postgres:// or postgresql://')
    .optional(),
  DATABASE_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier')
    .default('public'),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
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
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).max(600_000).default(25_000),
  WORKER_LOCK_DURATION_MS: z.coerce.number().int().min(1000).max(600_000).default(30_000),
  WORKER_STALLED_INTERVAL_MS: z.coerce.number().int().min(1000).max(600_000).default(30_000),
  WORKER_MAX_STALLED_COUNT: z.coerce.number().int().min(0).max(100).default(3),
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
  CAMPAIGN_POLL_MS: z.coerce.number().int().min(10).max(600_000).default(1000),
  CAMPAIGN_PAUSED_RECHECK_MS: z.coerce.number().int().min(10).max(3_600_000).default(10_000),
  HOUSEKEEPING_SCHEDULES: bool.default(true),
  MESSAGE_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  EVENT_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
  RETRY_FAILED_MAX_PER_RUN: z.coerce.number().int().min(0).max(100_000).default(100),
  STUCK_MESSAGE_TIMEOUT_MINUTES: z.coerce.number().int().min(1).max(10_080).default(30),
});

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
  };
  readonly database: {
    /** PostgreSQL URL; undefined selects the embedded PGlite database under `dataDir`. */
    readonly url: string | undefined;
    readonly schema: string;
    readonly poolSize: number;
  };
  readonly dataDir: string;
  readonly http: { readonly port: number; readonly host: string; readonly webhookBodyLimit: number };
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly shopify: {
    readonly apiSecret: string;
    readonly usingDevSecret: boolean;
    /** The `aud` of merchant session tokens; undefined (production without SHOPIFY_API_KEY) disables `/api/*`. */
    readonly apiKey: string | undefined;
    readonly usingDevApiKey: boolean;
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
    /** How often a campaign whose backlog is full looks again. */
    readonly pollMs: number;
    /** How long a delivery job of a paused campaign waits before it looks at the campaign again. */
    readonly pausedRecheckMs: number;
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
    const secret = /SECRET|TOKEN|URL/.test(variable);
    throw new ConfigError(variable, `${issue.message}${shown !== undefined && !secret ? ` (got "${shown}")` : ''}`);
  }
  const e = parsed.data;
  if (e.NODE_ENV === 'production' && !e.SHOPIFY_API_SECRET) {
    throw new ConfigError('SHOPIFY_API_SECRET', 'is required when NODE_ENV=production');
  }
  if (e.SMS_PROVIDER === 'mitto' && !e.MITTO_API_KEY) {
    throw new ConfigError('MITTO_API_KEY', 'is required when SMS_PROVIDER=mitto');
  }
  const config: Config = {
    env: e.NODE_ENV,
    redis: {
      url: e.REDIS_URL ?? 'redis://localhost:6379',
      urlWasSet: e.REDIS_URL !== undefined,
      prefix: e.REDIS_PREFIX,
      embedded: e.REDIS_EMBEDDED ?? (e.REDIS_URL === undefined && e.NODE_ENV !== 'production'),
      healthTimeoutMs: e.REDIS_HEALTH_TIMEOUT_MS,
    },
    database: { url: e.DATABASE_URL, schema: e.DATABASE_SCHEMA, poolSize: e.DATABASE_POOL_SIZE },
    dataDir: path.resolve(e.DATA_DIR),
    http: { port: e.PORT, host: e.HOST, webhookBodyLimit: e.WEBHOOK_BODY_LIMIT_BYTES },
    logLevel: e.LOG_LEVEL,
    shopify: {
      apiSecret: e.SHOPIFY_API_SECRET ?? DEV_SHOPIFY_SECRET,
      usingDevSecret: !e.SHOPIFY_API_SECRET,
      apiKey: e.SHOPIFY_API_KEY ?? (e.NODE_ENV === 'production' ? undefined : DEV_SHOPIFY_API_KEY),
      usingDevApiKey: !e.SHOPIFY_API_KEY && e.NODE_ENV !== 'production',
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
      pollMs: e.CAMPAIGN_POLL_MS,
      pausedRecheckMs: e.CAMPAIGN_PAUSED_RECHECK_MS,
    },
    workers: {
      queues: e.WORKER_QUEUES,
      concurrency: {
        events: e.EVENTS_CONCURRENCY,
        automations: e.AUTOMATIONS_CONCURRENCY,
        campaigns: e.CAMPAIGNS_CONCURRENCY,
        delivery: e.DELIVERY_CONCURRENCY,
        housekeeping: e.HOUSEKEEPING_CONCURRENCY,
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
