/**
 * `npx tsx bench/sync.ts`: the install sync's throughput (customers/s) and the service's peak memory, on a merchant's
 * first request against the Shopify Admin sandbox (`npm run shopify-sandbox`, in a process of its own so its CPU is not
 * the service's). The service runs in this process (HTTP API by `inject()`, the sync worker) on the local PostgreSQL
 * (a schema of its own) and Redis (a key prefix of its own), both removed afterwards. Prints one JSON line: throughput,
 * peak RSS and peak V8 heap in use. Run as `node --expose-gc --import tsx bench/sync.ts` it also collects garbage every
 * 500 ms and reports the peak heap left after a collection (what the service retains, as against garbage V8 has not
 * collected yet: the peak RSS of a plain run grows with N through the latter, see README "Benchmarks").
 *
 * Environment:
 *   BENCH_SYNC_CUSTOMERS   customers in the sandbox shop (100000; every 10th has no phone)
 *   BENCH_DATABASE_URL     PostgreSQL (postgres://postgres@127.0.0.1:5432/test)
 *   BENCH_REDIS_URL        Redis (redis://127.0.0.1:6379)
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { loadConfig } from '../src/config.js';
import { openDatabase } from '../src/db/client.js';
import { getShopSync } from '../src/db/shopSyncs.js';
import { getShopByDomain } from '../src/db/shops.js';
import { createLogger } from '../src/logger.js';
import { startSystem } from '../src/system.js';

const customers = Number(process.env.BENCH_SYNC_CUSTOMERS ?? 100_000);
const databaseUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const secret = 'bench-shopify-secret';
const apiKey = 'bench-shopify-key';
const run = `bench_sync_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const shop = `${run.replace(/_/g, '-')}.myshopify.com`;

// Node itself with tsx's loader, not `npx tsx`: SIGTERM to npx left the sandbox running and its stdout pipe held
// this process open after the figures were printed.
const sandbox = spawn(process.execPath, ['--import', 'tsx', 'src/sandbox/shopify/main.ts', '--port', '0', '--customers', String(customers), '--secret', secret, '--api-key', apiKey, '--bulk-delay-ms', '100'], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const sandboxUrl = await new Promise<string>((resolve, reject) => {
  sandbox.once('exit', (code) => reject(new Error(`shopify sandbox exited with ${code}`)));
  createInterface({ input: sandbox.stdout! }).on('line', (line) => {
    if (/^https?:\/\//.test(line.trim())) resolve(line.trim());
  });
});

const config = loadConfig({
  NODE_ENV: 'development',
  DATABASE_URL: databaseUrl,
  DATABASE_SCHEMA: run,
  REDIS_URL: redisUrl,
  REDIS_PREFIX: `smsblossom-bench:${run}`,
  REDIS_EMBEDDED: 'false',
  SHOPIFY_API_SECRET: secret,
  SHOPIFY_API_KEY: apiKey,
  SHOPIFY_ADMIN_BASE_URL: sandboxUrl,
  HOUSEKEEPING_SCHEDULES: 'false',
  LOG_LEVEL: 'warn',
});
const system = await startSystem({ config, api: true, listen: false, workers: ['sync'], logger: createLogger({ level: 'warn' }) });
const gc = (globalThis as { gc?: () => void }).gc;
const MB = 1024 * 1024;
/** Heap in use after a full collection: what the process retains, as against what V8 has not collected yet. */
const retainedHeap = () => {
  gc?.();
  return process.memoryUsage().heapUsed;
};
const startRss = process.memoryUsage().rss;
const startHeap = retainedHeap();
let peakRss = startRss;
let peakHeap = 0;
let peakRetained = 0;
// Costs the sync some throughput: for memory runs only.
const retainedSampler = gc ? setInterval(() => (peakRetained = Math.max(peakRetained, retainedHeap())), 500) : undefined;
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakHeap = Math.max(peakHeap, m.heapUsed);
}, 50);
try {
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ dest: `https://${shop}` })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(`https://${shop}/admin`)
    .setAudience(apiKey)
    .setSubject('1')
    .setIssuedAt(now)
    .setNotBefore(now - 1)
    .setExpirationTime(now + 60)
    .sign(new TextEncoder().encode(secret));
  const started = performance.now();
  const res = await system.app!.inject({ method: 'GET', url: '/api/settings', headers: { authorization: `Bearer ${token}` } });
  const requestMs = performance.now() - started;
  if (res.statusCode !== 200) throw new Error(`GET /api/settings answered ${res.statusCode}`);
  const shopId = (await getShopByDomain(system.db.db, shop))!.id;
  let sync = await getShopSync(system.db.db, shopId);
  while (sync?.status !== 'done') {
    if (sync?.status === 'failed') throw new Error(`sync failed: ${sync.error}`);
    await new Promise((r) => setTimeout(r, 100));
    sync = await getShopSync(system.db.db, shopId);
  }
  const seconds = (sync.finishedAt!.getTime() - sync.startedAt.getTime()) / 1000;
  const firstRequestToDone = (performance.now() - started) / 1000;
  process.stdout.write(
    `${JSON.stringify({
      path: 'sync',
      customers,
      contacts: sync.customersSynced,
      lines: sync.linesDone,
      syncSeconds: Number(seconds.toFixed(2)),
      firstRequestToDoneSeconds: Number(firstRequestToDone.toFixed(2)),
      customersPerSecond: Math.round(sync.linesDone / seconds),
      firstRequestMs: Number(requestMs.toFixed(1)),
      peakRssMb: Math.round(peakRss / MB),
      startRssMb: Math.round(startRss / MB),
      peakHeapUsedMb: Math.round(peakHeap / MB),
      ...(gc ? { startHeapAfterGcMb: Math.round(startHeap / MB), peakHeapAfterGcMb: Math.round(peakRetained / MB) } : {}),
    })}\n`,
  );
} finally {
  clearInterval(sampler);
  clearInterval(retainedSampler);
  await system.stop();
  sandbox.kill('SIGTERM');
  const db = await openDatabase({ url: databaseUrl, schema: 'public', poolSize: 1, dataDir: 'memory://' });
  await db.exec(`DROP SCHEMA IF EXISTS "${run}" CASCADE`);
  await db.close();
  const redis = new Redis(redisUrl);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `smsblossom-bench:${run}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
  redis.disconnect();
}
