/**
 * Test harness: a real SMS Blossom on real Redis and a real database, isolated per test by a unique queue prefix and
 * a unique PostgreSQL schema (or an in-memory PGlite), and torn down completely afterwards.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { loadConfig, type Config, type QueueName } from '../../src/config.js';
import { openDatabase } from '../../src/db/client.js';
import { createLogger, type Logger } from '../../src/logger.js';
import type { SmsProvider } from '../../src/messages/providers/types.js';
import type { ProcessorMap } from '../../src/queue/worker.js';
import { startSystem, type System } from '../../src/system.js';
import { testDatabaseUrl, testRedisUrl } from './serviceUrls.js';

export type DbKind = 'postgres' | 'pglite';
export const DB_KINDS: DbKind[] = ['postgres', 'pglite'];

/**
 * PostgreSQL and Redis for tests: 127.0.0.1:5432 (trust auth) and :6379 unless TEST_DATABASE_URL / TEST_REDIS_URL say
 * otherwise; when nothing answers there, the global setup (test/globalServices.ts) started private ones and set both.
 */
export const TEST_DATABASE_URL = testDatabaseUrl();
export const TEST_REDIS_URL = testRedisUrl();
export const ADMIN_TOKEN = 'test-admin-token-0123456789';
export const SHOPIFY_SECRET = 'test-shopify-secret';

export function uniqueName(kind: string): string {
  return `t_${kind}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

export function testConfig(dbKind: DbKind, env: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    REDIS_URL: TEST_REDIS_URL,
    REDIS_PREFIX: `smsblossom-test:${uniqueName('q')}`,
    REDIS_EMBEDDED: 'false',
    ...(dbKind === 'postgres' ? { DATABASE_URL: TEST_DATABASE_URL } : {}),
    DATABASE_SCHEMA: uniqueName('s'),
    DATA_DIR: 'memory://',
    LOG_LEVEL: 'silent',
    SHOPIFY_API_SECRET: SHOPIFY_SECRET,
    ADMIN_TOKEN,
    SHUTDOWN_TIMEOUT_MS: '10000',
    // Cron-driven housekeeping would add delayed jobs and runs no test asked for; tests of the schedules turn it on.
    HOUSEKEEPING_SCHEDULES: 'false',
    ...env,
  });
}

export interface TestSystem extends System {
  /** Stops the system, deletes every Redis key under its prefix and drops its schema. */
  teardown(): Promise<void>;
}

export interface TestSystemOptions {
  workers?: readonly QueueName[];
  processors?: ProcessorMap;
  env?: Record<string, string>;
  logger?: Logger;
  config?: Config;
  /**
   * Listen on a real socket (127.0.0.1, a free port unless `env` says otherwise), so callbacks from outside the
   * process (the sandbox's delivery reports) reach the API. Default false: `app.inject()` only.
   */
  listen?: boolean;
  /** Use this SMS provider instead of the configured one (the bundled sandbox unless MITTO_API_KEY is set). */
  provider?: SmsProvider;
}

export async function startTestSystem(dbKind: DbKind, options: TestSystemOptions = {}): Promise<TestSystem> {
  const env = options.listen ? { PORT: '0', HOST: '127.0.0.1', ...options.env } : options.env;
  const config = options.config ?? testConfig(dbKind, env);
  // DATA_DIR=memory:// is resolved to a path by loadConfig; PGlite wants the literal marker.
  const memoryConfig = { ...config, dataDir: 'memory://' } as Config;
  const system = await startSystem({
    config: memoryConfig,
    api: true,
    listen: options.listen ?? false,
    workers: options.workers ?? [],
    processors: options.processors,
    ...(options.provider ? { provider: options.provider } : {}),
    logger: options.logger ?? createLogger({ level: 'silent' }),
  });
  let torn: Promise<void> | undefined;
  return Object.assign(Object.create(null), system, {
    stop: () => system.stop(),
    teardown() {
      torn ??= (async () => {
        await system.stop();
        await deleteRedisPrefix(config.redis.prefix);
        if (dbKind === 'postgres') await dropSchema(config.database.schema);
      })();
      return torn;
    },
  }) as TestSystem;
}

export async function deleteRedisPrefix(prefix: string): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  const db = await openDatabase({ url: TEST_DATABASE_URL, schema: 'public', poolSize: 1, dataDir: 'memory://' });
  try {
    await db.exec(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await db.close();
  }
}
