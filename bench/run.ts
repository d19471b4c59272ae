/**
 * `npm run bench`: each path of SMS Blossom measured end to end against the service as a user runs it (`smsblossom
 * start` in its own process, the Mitto-compatible sandbox in another), beside raw BullMQ measured in the same run. For
 * every path: throughput, latency percentiles, and what one message costs: CPU milliseconds by process (the service,
 * its PostgreSQL backends, Redis) and SQL statements and Redis commands — the figures a noisy machine does not move.
 * Prints a table and one JSON line, and writes bench/results/<YYYY-MM-DD>.json (`npm run bench:readme` puts the latest
 * one in the README).
 *
 * Environment:
 *   BENCH_ONLY             comma-separated paths to run: orders, campaign, import (default all)
 *   BENCH_ORDERS           orders/paid webhooks in the orders path (3000)
 *   BENCH_CONNECTIONS      HTTP connections sending them (32)
 *   BENCH_CAMPAIGN_SIZE    recipients, or a comma-separated list of audience sizes (20000)
 *   BENCH_CAMPAIGN_1M=1    adds a 1 000 000-recipient campaign
 *   BENCH_CAMPAIGN_ORDER_RATE  order webhooks/s sent while the largest campaign is being materialised (5; 0 for none)
 *   BENCH_IMPORT_ROWS      contacts in the CSV import (20000)
 *   BENCH_IMPORT_CHUNK     rows per POST /api/contacts/import request (10000; the route takes at most 50 000)
 *   BENCH_IMPORT_CLI_ROWS  rows of the file then streamed through `smsblossom contacts import` (100000; 0 for none)
 *   BENCH_IMPORT_CLI_HEAP_MB  the CLI's V8 heap limit, to show what the import keeps (0: Node's default)
 *   BENCH_DATABASE_URL     PostgreSQL (postgres://postgres@127.0.0.1:5432/test); each service gets a schema of its own
 *   BENCH_REDIS_URL        a Redis to use instead of a private redis-server (its counters then include other clients)
 *   BENCH_LOG_LEVEL        the service's LOG_LEVEL (info, what `npm start` logs; its output goes to a temp file)
 *   BENCH_RESULTS_DIR      where the results file goes (bench/results)
 *   BENCH_CPU_PROF=<dir>   each Node child writes a V8 CPU profile there
 *   BENCH_SERVICE_<NAME>   a setting of the service under test: BENCH_SERVICE_DELIVERY_CONCURRENCY=40 runs it with
 *                          DELIVERY_CONCURRENCY=40 (recorded in the results' settings)
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { benchCampaign } from './campaign.js';
import { benchImport } from './import.js';
import type { BenchContext, PathResult } from './lib.js';
import { benchOrders } from './orders.js';
import { startPrivateRedis, type Proc } from './processes.js';
import { formatTable, type BenchResults } from './report.js';

const env = process.env;
const int = (name: string, fallback: number) => {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  if (!/^\d+$/.test(v)) throw new Error(`${name} must be a non-negative integer, got "${v}"`);
  return Number(v);
};
const only = env.BENCH_ONLY ? new Set(env.BENCH_ONLY.split(',').map((s) => s.trim())) : undefined;
for (const p of only ?? []) if (!['orders', 'campaign', 'import'].includes(p)) throw new Error(`BENCH_ONLY: unknown path "${p}" (orders, campaign, import)`);
const runs = (p: string) => !only || only.has(p);

const settings = {
  orders: int('BENCH_ORDERS', 3000),
  connections: int('BENCH_CONNECTIONS', 32),
  campaignSizes: [...(env.BENCH_CAMPAIGN_SIZE ?? '20000').split(',').map((s) => Number(s.trim())), ...(env.BENCH_CAMPAIGN_1M === '1' ? [1_000_000] : [])],
  campaignOrderRate: int('BENCH_CAMPAIGN_ORDER_RATE', 5),
  importRows: int('BENCH_IMPORT_ROWS', 20_000),
  importChunk: Math.min(50_000, int('BENCH_IMPORT_CHUNK', 10_000)),
  importCliRows: int('BENCH_IMPORT_CLI_ROWS', 100_000),
  importCliHeapMb: int('BENCH_IMPORT_CLI_HEAP_MB', 0),
  logLevel: env.BENCH_LOG_LEVEL ?? 'info',
};
const SERVICE_PREFIX = 'BENCH_SERVICE_';
const serviceEnv = Object.fromEntries(
  Object.entries(env)
    .filter(([k, v]) => k.startsWith(SERVICE_PREFIX) && k.length > SERVICE_PREFIX.length && v !== undefined)
    .map(([k, v]) => [k.slice(SERVICE_PREFIX.length), v!]),
);
if (settings.campaignSizes.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new Error('BENCH_CAMPAIGN_SIZE must be positive integers');

let privateRedis: (Proc & { url: string }) | undefined;
const redisUrl = env.BENCH_REDIS_URL ?? (privateRedis = await startPrivateRedis()).url;
const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
const ctx: BenchContext = {
  redisUrl,
  redis,
  databaseUrl: env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  logLevel: settings.logLevel,
  serviceEnv,
};

const paths: PathResult[] = [];
try {
  if (runs('orders')) paths.push(await benchOrders(ctx, { orders: settings.orders, connections: settings.connections }));
  if (runs('campaign')) paths.push(...(await benchCampaign(ctx, { sizes: settings.campaignSizes, orderRate: settings.campaignOrderRate })));
  if (runs('import')) paths.push(await benchImport(ctx, { rows: settings.importRows, chunk: settings.importChunk, cliRows: settings.importCliRows, cliHeapMb: settings.importCliHeapMb }));
} finally {
  redis.disconnect();
  await privateRedis?.stop();
}

// What was measured: the working tree, which may hold changes not yet committed.
const git = (...args: string[]) => {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
};
const source = { commit: git('rev-parse', 'HEAD'), uncommitted: git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean).map((l) => l.slice(3)) };

const at = new Date();
const results: BenchResults = {
  bench: 'SMS Blossom per-message cost',
  at: at.toISOString(),
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '', memoryGb: Math.round(os.totalmem() / 2 ** 30), node: process.version },
  source,
  settings: { ...settings, redis: privateRedis ? 'private redis-server' : 'BENCH_REDIS_URL', service: serviceEnv },
  paths,
};
const dir = path.resolve(env.BENCH_RESULTS_DIR ?? new URL('./results', import.meta.url).pathname);
fs.mkdirSync(dir, { recursive: true });
const file = path.join(dir, `${at.toISOString().slice(0, 10)}.json`);
fs.writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
process.stdout.write(`\n${formatTable(results)}\nresults: ${path.relative(process.cwd(), file)}\n\n${JSON.stringify(results)}\n`);
// A benchmark that lost or doubled a message measured something else: the figures stay, the run fails.
const wrong = paths.filter((p) => (p.checks.duplicatesAtProvider ?? 0) !== 0 || (p.checks.webhooksRefused ?? 0) !== 0 || (p.checks.rejected ?? 0) !== 0);
for (const p of wrong) process.stderr.write(`bench: ${p.path}: ${Object.entries(p.checks).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
if (wrong.length) process.exitCode = 1;
