/**
 * Campaign benchmark: an N-recipient campaign sent to the sandbox (through the real Mitto client, no rate limit) by an
 * all-in-one SMS Blossom child process, beside the raw processing rate of no-op jobs on one BullMQ queue measured in
 * the same run. Reports messages/s, peak Redis `used_memory` and peak worker RSS per audience size (they must not grow
 * with the audience), and the p50/p99 latency of order confirmations (webhook → sandbox accepted) sent while the
 * largest campaign runs.
 *
 * Sizes: 10 000 and BENCH_CAMPAIGN_SIZE (100 000); 1 000 000 as well with BENCH_CAMPAIGN_1M=1.
 * The child is this file with the argument `server`.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { loadConfigOrExit, withOverrides } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { createSandbox } from '../src/sandbox/server.js';
import { signWebhook } from '../src/shopify/hmac.js';
import { startSystem } from '../src/system.js';
import { benchEnv, benchId, deleteKeys, percentile, startChild, type Row } from './lib.js';

export interface CampaignBenchOptions {
  redisUrl: string;
  databaseUrl: string;
  sizes: number[];
  /** Order confirmations per second during the largest campaign. */
  orderRate: number;
}

const ADMIN = 'bench-admin-token-0123456789';
const SECRET = 'bench-secret';
const DEADLINE_MS = 3_600_000;

interface RunResult {
  size: number;
  perSec: number;
  seconds: number;
  peakRedis: number;
  baseRedis: number;
  peakRss: number;
  orders?: { p50: number; p99: number; count: number };
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
}

function rssOf(pid: number | undefined): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** Raw BullMQ: `n` no-op jobs on one queue (added with addBulk), processed with the delivery worker's concurrency. */
async function rawQueueRate(redisUrl: string, n: number, concurrency: number): Promise<number> {
  const prefix = `smsblossom-bench:${benchId()}`;
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('noop', { connection, prefix });
  try {
    for (let i = 0; i < n; i += 5000) {
      await queue.addBulk(Array.from({ length: Math.min(5000, n - i) }, (_, k) => ({ name: 'noop', data: { i: i + k }, opts: { removeOnComplete: true } })));
    }
    let done = 0;
    const t0 = Date.now();
    const workerConnection = new Redis(redisUrl, { maxRetriesPerRequest: null });
    const worker = new Worker('noop', async () => undefined, { connection: workerConnection, prefix, concurrency });
    await new Promise<void>((resolve) => worker.on('completed', () => ++done === n && resolve()));
    const rate = n / ((Date.now() - t0) / 1000);
    await worker.close();
    // A connection handed to BullMQ stays open after close(); left open it would keep the benchmark process alive.
    workerConnection.disconnect();
    return rate;
  } finally {
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    await deleteKeys(connection, prefix);
    connection.disconnect();
  }
}

async function runOne(o: CampaignBenchOptions, size: number, withOrders: boolean, redis: Redis): Promise<RunResult> {
  const id = benchId();
  const prefix = `smsblossom-bench:${id}`;
  const schema = `bench_${id}`;
  const sandbox = await createSandbox({ apiKey: 'bench-key', dlrDelayMs: 0 });
  const sandboxUrl = await sandbox.listen(0, '127.0.0.1');
  const env = {
    ...benchEnv({ redisUrl: o.redisUrl, databaseUrl: o.databaseUrl, prefix, schema, secret: SECRET, poolSize: 20 }),
    SMS_PROVIDER: 'mitto',
    MITTO_API_KEY: 'bench-key',
    MITTO_API_URL: sandboxUrl,
    ADMIN_TOKEN: ADMIN,
  };
  const db = new pg.Client({ connectionString: o.databaseUrl });
  let child: Awaited<ReturnType<typeof startChild>> | undefined;
  let sampler: NodeJS.Timeout | undefined;
  try {
    child = await startChild('bench/campaign.ts', ['server'], env);
    const api = `http://127.0.0.1:${child.port}`;
    await db.connect();
    const shop = `bench-campaign-${id}.myshopify.com`;
    const { rows: [s] } = await db.query(
      `INSERT INTO "${schema}".shops (domain, country_code, settings) VALUES ($1, 'CH', '{"quietHours":{"enabled":false},"frequencyCap":null}') RETURNING id`,
      [shop],
    );
    // Fast seeding: one INSERT … SELECT generate_series.
    await db.query(
      `INSERT INTO "${schema}".contacts (shop_id, phone, first_name, country_code, sms_consent, tags)
       SELECT $1::bigint, '+4179' || lpad(g::text, 7, '0'), 'Fan' || g, 'CH', 'subscribed', ARRAY['fan'] FROM generate_series(1, $2::int) g`,
      [s.id, size],
    );
    await db.query(`ANALYZE "${schema}".contacts`);
    const call = async (method: string, path: string, body: unknown) => {
      const res = await fetch(`${api}${path}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      return res.json() as Promise<any>;
    };
    const campaign = await call('POST', '/api/campaigns', { shop, name: `bench ${size}`, body: 'Hi {{ customer.firstName }}! 20% off today with {{ discountCode }}: {{ link }}', discountCode: 'BENCH20', linkUrl: 'https://shop.example/sale', filter: { tags: { any: ['fan'] } } });

    let peakRedis = 0;
    let peakRss = 0;
    const baseRedis = await usedMemory(redis);
    let sampling = false;
    let ticks = 0;
    sampler = setInterval(() => {
      if (sampling) return;
      sampling = true;
      void usedMemory(redis)
        .then((m) => {
          peakRedis = Math.max(peakRedis, m);
          peakRss = Math.max(peakRss, rssOf(child?.child.pid));
          // The sandbox keeps what it accepted in memory; the benchmark needs counts only.
          if (++ticks % 20 === 0) void fetch(`${sandboxUrl}/__sandbox/messages`, { method: 'DELETE' }).catch(() => undefined);
        })
        .finally(() => {
          sampling = false;
        });
    }, 100);

    await call('POST', `/api/campaigns/${campaign.id}/send`, { shop });

    let orders: RunResult['orders'];
    const orderShop = `bench-orders-${id}.myshopify.com`;
    if (withOrders) {
      const template = JSON.parse(fs.readFileSync(new URL('../test/fixtures/shopify/orders-paid.json', import.meta.url), 'utf8'));
      const interval = 1000 / o.orderRate;
      let n = 0;
      // Orders while the campaign sends: stop once the campaign's audience is fully materialised or after 60 s.
      const until = Date.now() + 60_000;
      while (Date.now() < until) {
        const { rows: [c] } = await db.query(`SELECT status, materialized_at FROM "${schema}".campaigns WHERE id = $1`, [campaign.id]);
        if (c.status !== 'sending' || c.materialized_at) break;
        const body = Buffer.from(JSON.stringify({ ...template, id: 7_000_000_000 + n, name: `#O${n}`, customer: { ...template.customer, id: 6_000_000_000 + n, phone: `+41 78 ${String(1_000_000 + n).slice(-7)}` } }));
        n++;
        const res = await fetch(`${api}/webhooks/shopify`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-shopify-topic': 'orders/paid', 'x-shopify-shop-domain': orderShop, 'x-shopify-hmac-sha256': signWebhook(body, SECRET), 'x-shopify-webhook-id': randomUUID() },
          body,
        });
        if (!res.ok) throw new Error(`order webhook: ${res.status}`);
        await new Promise((r) => setTimeout(r, interval));
      }
      const deadline = Date.now() + 120_000;
      let lat: number[] = [];
      while (Date.now() < deadline) {
        const { rows } = await db.query(
          `SELECT extract(epoch FROM m.sent_at - e.received_at) * 1000 AS ms FROM "${schema}".messages m
             JOIN "${schema}".shops s ON s.id = m.shop_id JOIN "${schema}".events e ON e.shop_domain = s.domain AND e.request_id = m.request_id
            WHERE s.domain = $1 AND m.sent_at IS NOT NULL`,
          [orderShop],
        );
        lat = rows.map((r) => Number(r.ms)).sort((a, b) => a - b);
        if (lat.length >= n) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      orders = { p50: percentile(lat, 50), p99: percentile(lat, 99), count: lat.length };
    }

    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      const { rows: [c] } = await db.query(`SELECT status FROM "${schema}".campaigns WHERE id = $1`, [campaign.id]);
      if (c.status === 'sent') break;
      if (Date.now() > deadline) throw new Error(`campaign benchmark: ${size} not sent after ${DEADLINE_MS} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
    clearInterval(sampler);
    const { rows: [r] } = await db.query(
      `SELECT count(*) FILTER (WHERE sent_at IS NOT NULL)::int AS sent,
              extract(epoch FROM max(sent_at) - (SELECT started_at FROM "${schema}".campaigns WHERE id = $1)) AS secs
         FROM "${schema}".messages WHERE campaign_id = $2`,
      [campaign.id, String(campaign.id)],
    );
    if (r.sent !== size) throw new Error(`campaign benchmark: ${r.sent} of ${size} sent`);
    const seconds = Number(r.secs);
    return { size, perSec: size / seconds, seconds, peakRedis, baseRedis, peakRss, orders };
  } finally {
    if (sampler) clearInterval(sampler);
    await child?.stop();
    await sandbox.close();
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await db.end().catch(() => undefined);
    await deleteKeys(redis, prefix);
  }
}

export async function benchCampaign(o: CampaignBenchOptions): Promise<{ rows: Row[]; summary: Record<string, unknown> }> {
  const redis = new Redis(o.redisUrl);
  try {
    const largest = Math.max(...o.sizes);
    const rawRate = await rawQueueRate(o.redisUrl, Math.min(largest, 100_000), 20);
    const results: RunResult[] = [];
    for (const size of o.sizes) results.push(await runOne(o, size, size === largest, redis));
    const mb = (b: number) => Math.round((b / 1_048_576) * 10) / 10;
    const rows: Row[] = [];
    for (const r of results) {
      rows.push({ section: 'campaign', metric: `${r.size} recipients: messages/s`, value: r.perSec, unit: 'msg/s', baseline: rawRate, note: `sandbox accepted, ${r.seconds.toFixed(1)} s; baseline: no-op jobs on one BullMQ queue` });
      rows.push({ section: 'campaign', metric: `${r.size} recipients: peak Redis used_memory`, value: mb(r.peakRedis), unit: 'MB', baseline: mb(r.baseRedis), note: 'sampled every 100 ms; baseline: before the send' });
      rows.push({ section: 'campaign', metric: `${r.size} recipients: peak worker RSS`, value: mb(r.peakRss), unit: 'MB' });
      if (r.orders) {
        rows.push({ section: 'campaign', metric: `order confirmation during ${r.size}: p50`, value: r.orders.p50, unit: 'ms', note: `${r.orders.count} orders, webhook → sandbox accepted` });
        rows.push({ section: 'campaign', metric: `order confirmation during ${r.size}: p99`, value: r.orders.p99, unit: 'ms' });
      }
    }
    return { rows, summary: { rawQueueRate: rawRate, runs: results } };
  } finally {
    redis.disconnect();
  }
}

// ── child: SMS Blossom all-in-one ────────────────────────────────────────────────────────────────────────────────
if (process.argv[2] === 'server') {
  const config = withOverrides(loadConfigOrExit(), { http: { port: 0, host: '127.0.0.1' } });
  const system = await startSystem({ config, api: true, workers: ['events', 'automations', 'campaigns', 'delivery'], logger: createLogger({ level: 'silent' }) });
  process.stdout.write(`READY ${new URL(system.url!).port}\n`);
  process.once('SIGTERM', () => void system.stop().then(() => process.exit(0)));
}
