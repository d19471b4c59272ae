/**
 * Builds a running SMS Blossom from a config: Redis (embedded if need be), the database (migrated), the queue
 * registry, the dead-letter queue, the workers of the chosen queues and the HTTP API. One function for every shape of
 * deployment: all-in-one (`start`), API only (`api`), workers only (`worker --queues ...`).
 *
 * Shutdown order: stop HTTP intake, close workers (active jobs finish), close queues, close Redis, close the database.
 */
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { withOverrides, type Config, type QueueName } from './config.js';
import { openDatabase, type Database } from './db/client.js';
import { migrate } from './db/migrate.js';
import { buildApp } from './http/app.js';
import { createLogger, type Logger } from './logger.js';
import { DeadLetterQueue } from './queue/deadLetters.js';
import { startEmbeddedRedis, type EmbeddedRedis } from './queue/embeddedRedis.js';
import { QueueRegistry } from './queue/queues.js';
import { assertRedisReachable, getRedisConnection, redactUrl } from './queue/redis.js';
import { WorkerPool, type ProcessorMap, type Services } from './queue/worker.js';
import { createServiceMetrics, instrumentProvider } from './queue/metrics.js';
import { createRenderer } from './messages/render.js';
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
  readonly redis: Redis;
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

async function resolveRedis(config: Config, logger: Logger): Promise<{ config: Config; embedded?: EmbeddedRedis }> {
  try {
    await assertRedisReachable(config.redis.url, 2000);
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

    const redis = getRedisConnection({ url: config.redis.url }, 'producer');
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
    const services: Services = { renderer: createRenderer(), publicUrl: config.sms.publicUrl };
    // One set of Prometheus metrics per service: the app serves them, the workers and the provider feed them.
    const metrics = createServiceMetrics();
    const pool = new WorkerPool({ config, db, queues, logger, deadLetters, processors: options.processors, services, metrics });
    if (options.api) {
      app = await buildApp({ config, logger, db, queues, deadLetters, workers: pool, metrics });
      const built = app;
      cleanups.push(() => built.close());
      if (options.listen !== false) {
        url = await app.listen({ port: config.http.port, host: config.http.host });
        if (!config.sms.publicUrlWasSet) services.publicUrl = `http://127.0.0.1:${new URL(url).port}`;
        logger.info({ url, redis: redactUrl(config.redis.url), database: db.kind }, 'SMS Blossom is listening');
      } else {
        await app.ready();
      }
    }

    let sandbox: Sandbox | undefined;
    if (options.workers.includes('delivery')) {
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
        services.provider = instrumentProvider(createMittoProvider({ baseUrl, apiKey: config.sms.mittoApiKey, timeoutMs: config.sms.timeoutMs }), metrics);
      }
    }

    cleanups.push(() => pool.close());
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
