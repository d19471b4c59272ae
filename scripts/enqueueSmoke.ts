/**
 * The specification's smoke test: every job of its "Usage Examples" and "Queue Definitions", added the way a plain
 * BullMQ producer adds them (`new Queue(name).add(name, data)`: no `enqueuedAt`, the specification's job options),
 * then a signed `orders/paid` webhook followed through HTTP, the queues and the provider until it is delivered. Prints
 * a line per job and exits 1 if any job did not end as expected.
 *
 *   npm run smoke
 *
 * It runs on scratch stores so it leaves nothing behind and may run beside the service: a Redis prefix of its own
 * under REDIS_PREFIX (its keys deleted at the end) and a database of its own (a PostgreSQL schema dropped at the end
 * when DATABASE_URL is set, else an in-memory PGlite). Redis must be reachable (REDIS_URL, default localhost:6379).
 */
import { pathToFileURL } from 'node:url';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { Cluster, type Redis } from 'ioredis';
import { loadConfigOrExit, withOverrides, type Config } from '../src/config.js';
import { openDatabase } from '../src/db/client.js';
import { createLogger } from '../src/logger.js';
import { DEFAULT_JOB_OPTIONS, QUEUE_NAMES, type QueueName } from '../src/queue/queues.js';
import { getRedisConnection, type RedisClient } from '../src/queue/redis.js';
import { signWebhook } from '../src/shopify/hmac.js';
import { startSystem, type System } from '../src/system.js';

/** The shop and customer phone of the specification's examples. */
export const SEED_SHOP = 'shop.myshopify.com';
export const SEED_PHONE = '+49 1512 3456789';

/** One example job and how it must end. */
export interface SeedExample {
  queue: QueueName;
  name: string;
  data: Record<string, unknown>;
  /**
   * `completed`, or the field whose value names nothing (the specification's `campaign-123`): such a job must fail for
   * good on its first attempt with an error naming that field.
   */
  expect: 'completed' | { failsOn: string };
}

/**
 * The specification's examples, in an order that lets each find what it needs: the order event creates the shop and a
 * subscribed contact, whom the direct `delivery:send` then texts.
 */
export function seedExamples(): SeedExample[] {
  const consentAt = new Date().toISOString();
  return [
    {
      queue: 'events',
      name: 'orders/paid',
      data: {
        topic: 'orders/paid',
        shopId: SEED_SHOP,
        objectId: 'gid://shopify/Order/123456789',
        raw: {
          id: 123456789,
          admin_graphql_api_id: 'gid://shopify/Order/123456789',
          name: '#1001',
          order_number: 1001,
          total_price: '49.00',
          currency: 'EUR',
          financial_status: 'paid',
          customer: {
            id: 987654321,
            first_name: 'Smoke',
            last_name: 'Test',
            phone: SEED_PHONE,
            sms_marketing_consent: { state: 'subscribed', opt_in_level: 'single_opt_in', consent_updated_at: consentAt },
          },
          shipping_address: { country_code: 'DE' },
        },
        requestId: 'req_123',
      },
      expect: 'completed',
    },
    {
      queue: 'automations',
      name: 'evaluate',
      data: {
        trigger: 'orders/paid',
        shopId: SEED_SHOP,
        context: { kind: 'order', topic: 'orders/paid', objectId: 'gid://shopify/Order/123456789', contactId: null },
        originalEvent: { topic: 'orders/paid', objectId: 'gid://shopify/Order/123456789' },
        requestId: 'req_124',
      },
      expect: 'completed',
    },
    {
      queue: 'campaigns',
      name: 'batch',
      data: { campaignId: 'campaign-123', shopId: SEED_SHOP, batchSize: 100, requestId: 'req_456' },
      expect: { failsOn: 'campaignId' },
    },
    {
      queue: 'delivery',
      name: 'send',
      data: {
        shopId: SEED_SHOP,
        recipient: SEED_PHONE,
        template: 'Hi {{ customer.firstName }}, your order {{ order.name }} is paid.',
        context: { customer: { firstName: 'Smoke' }, order: { name: '#1001' } },
        requestId: 'req_125',
      },
      expect: 'completed',
    },
    {
      queue: 'housekeeping',
      name: 'cleanup',
      data: { task: 'cleanup_old_messages', shopId: SEED_SHOP, requestId: 'req_789' },
      expect: 'completed',
    },
    {
      queue: 'housekeeping',
      name: 'repeat',
      data: { task: 'rollup_reports', shopId: SEED_SHOP, requestId: 'req_790' },
      expect: 'completed',
    },
  ];
}

export interface ExampleResult {
  ok: boolean;
  /** One line: the return value, or why it failed. */
  result: string;
  job: Job;
}

/**
 * Adds one example with a plain BullMQ `Queue` and waits until it has finished. `events` must be a ready QueueEvents of
 * the same queue and prefix.
 */
export async function runSeedExample(queue: Queue, events: QueueEvents, example: SeedExample, timeoutMs: number): Promise<ExampleResult> {
  const added = await queue.add(example.name, example.data);
  try {
    const value = await added.waitUntilFinished(events, timeoutMs);
    const job = (await queue.getJob(added.id!)) ?? added;
    return { ok: example.expect === 'completed', result: `completed ${JSON.stringify(value)}`, job };
  } catch (err) {
    const job = (await queue.getJob(added.id!)) ?? added;
    const reason = job.failedReason ?? (err as Error).message;
    const expected =
      example.expect !== 'completed' && (await job.getState()) === 'failed' && job.attemptsMade === 1 && reason.includes(`${example.expect.failsOn}:`);
    return { ok: expected, result: `${expected ? 'failed as expected' : 'FAILED'} (attempt ${job.attemptsMade}): ${reason}`, job };
  }
}

/** A signed `orders/paid` webhook for a subscribed customer, until its message is `delivered` by the provider's report. */
async function orderPaidEndToEnd(system: System, timeoutMs: number): Promise<string> {
  const stamp = Date.now();
  const shop = `smoke-${stamp}.myshopify.com`;
  const order = {
    id: stamp,
    name: `#${stamp % 100000}`,
    total_price: '49.00',
    currency: 'EUR',
    financial_status: 'paid',
    customer: {
      id: stamp + 1,
      first_name: 'Smoke',
      phone: SEED_PHONE,
      sms_marketing_consent: { state: 'subscribed', opt_in_level: 'single_opt_in', consent_updated_at: new Date(stamp).toISOString() },
    },
    shipping_address: { country_code: 'DE' },
  };
  const body = JSON.stringify(order);
  const res = await fetch(`${system.url}/webhooks/shopify/orders/paid`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-shopify-hmac-sha256': signWebhook(body, system.config.shopify.apiSecret),
      'x-shopify-shop-domain': shop,
      'x-shopify-webhook-id': `smoke-${stamp}`,
      'x-request-id': `req_smoke_${stamp}`,
    },
    body,
  });
  if (res.status !== 200) return `FAILED: webhook answered ${res.status}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await system.db.query<{ id: number; status: string; request_id: string }>(
      `SELECT m.id, m.status, m.request_id FROM messages m JOIN shops s ON s.id = m.shop_id WHERE s.domain = $1`,
      [shop],
    );
    const m = rows[0];
    if (m?.status === 'delivered') return `delivered: message ${m.id}, request ${m.request_id}`;
    if (m && ['failed', 'skipped', 'cancelled'].includes(m.status)) return `FAILED: message ${m.id} ended ${m.status}`;
    if (Date.now() > deadline) return `FAILED: no delivered message after ${timeoutMs} ms (${m ? m.status : 'none'})`;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The configured stores, but a Redis prefix and a database of the smoke's own. */
export function scratchConfig(config: Config, stamp = `${Date.now().toString(36)}${process.pid}`): Config {
  const scratch = withOverrides(config, {
    redis: { prefix: `${config.redis.prefix}:smoke-${stamp}`, embedded: false },
    database: config.database.url ? { schema: `smoke_${stamp}` } : {},
    // The API listens on a free port so the sandbox's delivery reports can reach it.
    http: { port: 0, host: '127.0.0.1' },
  });
  return config.database.url ? scratch : ({ ...scratch, dataDir: 'memory://' } as Config);
}

/** Deletes the scratch Redis keys and drops the scratch schema. */
async function removeScratch(config: Config): Promise<void> {
  const redis = getRedisConnection(config.redis, 'worker');
  try {
    // On a cluster each master holds its own keys: scan them all (the prefix's hash tag keeps ours on one).
    const nodes: Redis[] = redis instanceof Cluster ? redis.nodes('master') : [redis];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${config.redis.prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await node.del(...keys);
      } while (cursor !== '0');
    }
  } finally {
    redis.disconnect();
  }
  if (config.database.url) {
    const db = await openDatabase({ ...config.database, schema: 'public', poolSize: 1, dataDir: 'memory://' });
    try {
      await db.exec(`DROP SCHEMA IF EXISTS "${config.database.schema.replace(/"/g, '""')}" CASCADE`);
    } finally {
      await db.close();
    }
  }
}

export interface SmokeOptions {
  /** How long each job may take (ms). */
  timeoutMs?: number;
  out?: NodeJS.WritableStream;
}

export async function runSmoke(config: Config, options: SmokeOptions = {}): Promise<number> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const out = options.out ?? process.stdout;
  const scratch = scratchConfig(config);
  const logger = createLogger({ level: 'warn' });
  const rows: Array<{ queue: string; job: string; result: string; ms: number }> = [];
  let failures = 0;
  try {
    const system = await startSystem({ config: scratch, api: true, workers: QUEUE_NAMES, logger });
    const connections: RedisClient[] = [];
    const connect = () => {
      const c = getRedisConnection(system.config.redis, 'worker');
      connections.push(c);
      return c;
    };
    const producer = connect();
    const queues = new Map<QueueName, { queue: Queue; events: QueueEvents }>();
    try {
      for (const example of seedExamples()) {
        let q = queues.get(example.queue);
        if (!q) {
          const prefix = system.config.redis.prefix;
          q = {
            queue: new Queue(example.queue, { connection: producer, prefix, defaultJobOptions: DEFAULT_JOB_OPTIONS }),
            // From the stream's start, not its end: the prefix is fresh, and on a cluster the first read may come after
            // a fast job's event, which reading from "$" would miss (the wait would then time out).
            events: new QueueEvents(example.queue, { connection: connect(), prefix, lastEventId: '0' }),
          };
          await q.events.waitUntilReady();
          queues.set(example.queue, q);
        }
        const started = Date.now();
        const { ok, result } = await runSeedExample(q.queue, q.events, example, timeoutMs);
        if (!ok) failures++;
        rows.push({ queue: example.queue, job: example.name, result: result.slice(0, 120), ms: Date.now() - started });
      }
      const started = Date.now();
      const result = await orderPaidEndToEnd(system, timeoutMs).catch((err: Error) => `FAILED: ${err.message}`);
      if (result.startsWith('FAILED')) failures++;
      rows.push({ queue: 'webhook→delivery', job: 'orders/paid', result, ms: Date.now() - started });
    } finally {
      await Promise.allSettled([...queues.values()].flatMap(({ queue, events }) => [queue.close(), events.close()]));
      await system.stop();
      for (const c of connections) c.disconnect();
    }
  } catch (err) {
    failures++;
    rows.push({ queue: '(start)', job: '-', result: `FAILED: ${(err as Error).message}`, ms: 0 });
  } finally {
    await removeScratch(scratch).catch((err: Error) => {
      failures++;
      rows.push({ queue: '(cleanup)', job: '-', result: `FAILED: ${err.message}`, ms: 0 });
    });
  }
  const width = Math.max(...rows.map((r) => `${r.queue}:${r.job}`.length));
  const database = scratch.database.url ? `PostgreSQL schema ${scratch.database.schema}` : 'an in-memory PGlite';
  out.write(`Smoke test (Redis prefix ${scratch.redis.prefix}, ${database}; both removed)\n`);
  for (const r of rows) out.write(`  ${`${r.queue}:${r.job}`.padEnd(width)}  ${String(r.ms).padStart(5)} ms  ${r.result}\n`);
  out.write(failures ? `${failures} job(s) did not end as expected\n` : 'All jobs ended as expected\n');
  return failures ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runSmoke(loadConfigOrExit());
}
