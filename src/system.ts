/**
 * Builds a running SMS Blossom from a config: Redis (embedded if need be), the database (migrated), the queue
 * registry, the dead-letter queue, the workers of the chosen queues and the HTTP API. One function for every shape of
 * deployment: all-in-one (`start`), API only (`api`), workers only (`worker --queues ...`).
 *
 * Shutdown order (`stop()`, idempotent): stop HTTP intake, close the workers letting active jobs finish, then what they
 * used (the SMS sandbox, the render threads), close the queues and the producer's Redis connection, close the database
 * pool, and last the embedded Redis. Every step runs even when one before it failed. The order comes from `cleanups`:
 * each part registers its closing as it starts, and they run in reverse, so a start that fails half-way closes what
 * it opened.
 */
import { Semaphore } from 'async-mutex';
import { ShopDirectory } from './automations/shopDirectory.js';
import type { FastifyInstance } from 'fastify';
import { withOverrides, type Config, type QueueName } from './config.js';
import { openDatabase, type Database } from './db/client.js';
import { migrate } from './db/migrate.js';
import { buildApp } from './http/app.js';
import { API_RENDER_NICE, renderPoolOptions } from './http/deps.js';
import { createLogger, type Logger } from './logger.js';
import { DeadLetterQueue } from './queue/deadLetters.js';
import { startEmbeddedRedis, type EmbeddedRedis } from './queue/embeddedRedis.js';
import { QueueRegistry } from './queue/queues.js';
import { assertRedisReachable, describeRedis, getRedisConnection, type RedisClient } from './queue/redis.js';
import { WorkerPool, type ProcessorMap, type Services } from './queue/worker.js';
import { createServiceMetrics, instrumentProvider } from './queue/metrics.js';
import { shareProcessMetrics } from './queue/clusterMetrics.js';
import { createRenderPool } from './messages/renderPool.js';
import { createMittoProvider } from './messages/providers/mitto.js';
import type { SmsProvider } from './messages/providers/types.js';
import { createSandbox, type Sandbox } from './sandbox/server.js';
import { registerHousekeepingSchedules, removeHousekeepingSchedules } from './housekeeping/schedules.js';

export interface SystemOptions {
  config: Config;
  /** Serve HTTP. */
  api: boolean;
  /** Queues whose workers run in this process (empty: none). */
  workers: readonly QueueName[];
  /** Listen on config.http.port (false: build the app for `inject()` only). */
  listen?: boolean;
  logger?: Logger;
  processors?: ProcessorMap;
  /** Use this provider instead of the configured one (tests). */
  provider?: SmsProvider;
}

export interface System {
  readonly config: Config;
  readonly logger: Logger;
  readonly db: Database;
  readonly redis: RedisClient;
  readonly queues: QueueRegistry;
  readonly deadLetters: DeadLetterQueue;
  readonly pool: WorkerPool;
  readonly app: FastifyInstance | undefined;
  /** The bundled Mitto-compatible server, when SMS_PROVIDER=sandbox and this process runs delivery. */
  readonly sandbox: Sandbox | undefined;
  readonly services: Services;
  /** `http://host:port` once listening. */
  readonly url: string | undefined;
  stop(): Promise<void>;
}

/**
 * The Redis to use: the configured one if it answers; else, when REDIS_URL is unset and embedding is allowed, a private
 * redis-server (the returned config points at it; the caller stops it).
 */
export async function resolveRedis(config: Config, logger: Logger): Promise<{ config: Config; embedded?: EmbeddedRedis }> {
  try {
    await assertRedisReachable(config.redis, 2000);
    return { config };
  } catch (err) {
    if (config.redis.urlWasSet || !config.redis.embedded) throw err;
    const embedded = await startEmbeddedRedis(config.dataDir, logger);
    if (!embedded) throw err;
    return { config: withOverrides(config, { redis: { url: embedded.url } }), embedded };
  }
}

export async function startSystem(options: SystemOptions): Promise<System> {
  const logger = options.logger ?? createLogger({ level: options.config.logLevel });
  if (options.config.shopify.usingDevSecret) {
    logger.warn('SHOPIFY_API_SECRET is unset: using the development secret; webhooks signed by Shopify will be rejected');
  }
  const cleanups: Array<() => Promise<unknown>> = [];
  const runCleanups = async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err: Error) => logger.error({ err: err.message }, 'Shutdown step failed'));
  };
  try {
    const { config, embedded } = await resolveRedis(options.config, logger);
    if (embedded) cleanups.push(() => embedded.stop());

    const db = await openDatabase({ ...config.database, dataDir: config.dataDir });
    cleanups.push(() => db.close());
    const applied = await migrate(db);
    logger.info({ database: db.kind, schema: db.schema, applied }, 'Database ready');
    // With workers in the same process, the HTTP API gets connections of its own (PostgreSQL): a webhook's insert never
    // waits for a connection behind the workers' statements. PGlite is one connection in the process: shared.
    const apiDb =
      options.api && options.workers.length > 0 && db.kind === 'postgres'
        ? await openDatabase({ ...config.database, poolSize: config.database.apiPoolSize, dataDir: config.dataDir })
        : db;
    if (apiDb !== db) cleanups.push(() => apiDb.close());

    const redis = getRedisConnection(config.redis, 'producer');
    redis.on('error', (err) => logger.warn({ err: err.message }, 'Redis connection error'));
    cleanups.push(() => redis.quit().catch(() => redis.disconnect()));

    const queues = new QueueRegistry({ connection: redis, prefix: config.redis.prefix, logger });
    cleanups.push(() => queues.close());
    // The producer connection fails fast by design; do not take requests before it is up.
    await queues.get('events').waitUntilReady();
    const deadLetters = new DeadLetterQueue({ db: db.db, queues, logger });

    // HTTP first: when PUBLIC_URL is unset, delivery-report callbacks go to the address we really listen on.
    let app: FastifyInstance | undefined;
    let url: string | undefined;
    // Merchant templates render on threads, never on the event loop that takes webhooks: one pool for the jobs (normal
    // priority: campaign pages wait for their renders), one for the API's previews and estimates (below the event
    // loop). Threads start on first use. Closed after the app and the workers that use them.
    // Jobs render at most one template each at a time: their pool's queue holds as many as the workers run at once.
    const jobSlots = Object.values(config.workers.concurrency).reduce((a, b) => a + b, 0);
    const renderer = createRenderPool({ ...renderPoolOptions(config), queueMax: Math.max(config.render.queueMax, jobSlots) });
    const apiRenderer = createRenderPool({ ...renderPoolOptions(config), nice: API_RENDER_NICE });
    cleanups.push(() => renderer.close(), () => apiRenderer.close());
    const shops = new ShopDirectory(db.db);
    cleanups.push(async () => shops.close());
    const services: Services = { renderer, shops, publicUrl: config.sms.publicUrl };
    // One set of Prometheus metrics per service: the app serves them, the workers and the provider feed them.
    const metrics = createServiceMetrics();
    // Under a supervisor, what this process counts is summed with the other processes' at each scrape.
    shareProcessMetrics(metrics.processRegistry);
    let sandbox: Sandbox | undefined;
    if (options.workers.includes('delivery')) {
      const slots = config.workers.concurrency.delivery;
      services.sendSlots = { semaphore: new Semaphore(slots), size: slots };
      if (options.provider) {
        services.provider = instrumentProvider(options.provider, metrics);
      } else {
        let baseUrl = config.sms.mittoApiUrl;
        if (config.sms.provider === 'sandbox') {
          const sb = await createSandbox({ apiKey: config.sms.mittoApiKey, logger });
          sandbox = sb;
          cleanups.push(() => sb.close());
          baseUrl = await sb.listen(config.sms.sandboxPort, '127.0.0.1');
          logger.info({ sandbox: baseUrl }, 'SMS provider: the bundled Mitto sandbox (set MITTO_API_KEY to send for real)');
        }
        const mitto = createMittoProvider({ baseUrl, apiKey: config.sms.mittoApiKey, timeoutMs: config.sms.timeoutMs });
        cleanups.push(() => mitto.close());
        services.provider = instrumentProvider(mitto, metrics);
      }
    }

    // Closed after the app (pushed later, closed earlier) and before the provider, the render pools and the queues.
    const pool = new WorkerPool({ config, db, queues, logger, deadLetters, processors: options.processors, services, metrics });
    cleanups.push(() => pool.close());
    if (options.api) {
      app = await buildApp({ config, logger, db: apiDb, queues, deadLetters, workers: pool, metrics, renderer: apiRenderer });
      const built = app;
      // Pushed last, so closed first: HTTP intake stops before anything it hands work to.
      cleanups.push(() => built.close());
      if (options.listen !== false) {
        url = await app.listen({ port: config.http.port, host: config.http.host });
        if (!config.sms.publicUrlWasSet) services.publicUrl = `http://127.0.0.1:${new URL(url).port}`;
        logger.info({ url, redis: describeRedis(config.redis), database: db.kind }, 'SMS Blossom is listening');
      } else {
        await app.ready();
      }
    }

    const served = await pool.start(options.workers);
    if (served.includes('housekeeping')) {
      // Keyed by id in Redis: every process serving housekeeping may register them, each exists once.
      if (config.housekeeping.schedules) await registerHousekeepingSchedules(queues, logger);
      else await removeHousekeepingSchedules(queues);
    }
    if (options.workers.length) logger.info({ queues: served, prefix: config.redis.prefix }, 'Workers started');

    let stopping: Promise<void> | undefined;
    return {
      config,
      logger,
      db,
      redis,
      queues,
      deadLetters,
      pool,
      app,
      url,
      sandbox,
      services,
      stop() {
        stopping ??= runCleanups();
        return stopping;
      },
    };
  } catch (err) {
    await runCleanups();
    throw err;
  }
}
