/** Shared pieces of the benchmarks: names, the load generator, percentiles, and the shape of a path's result. */
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import type { Redis } from 'ioredis';
import type { Cost, perMessage } from './meter.js';

/** Queues of the raw BullMQ reference (bench/rawServer.ts). */
export const CHAIN = ['chain-a', 'chain-b', 'chain-c'] as const;
export const SINGLE = 'noop';

/** What every path needs: the private Redis, the PostgreSQL the service uses, and the service's log level. */
export interface BenchContext {
  /** The benchmark's private redis-server. */
  redisUrl: string;
  /** A connection to it, for the meter and for cleaning up. */
  redis: Redis;
  /** postgres://… of the local PostgreSQL; each service gets its own schema in it. */
  databaseUrl: string;
  logLevel: string;
  /** Settings for the service under test (`BENCH_SERVICE_<NAME>` gives it `<NAME>`), over the bench's own. */
  serviceEnv: Record<string, string>;
}

export interface Percentiles {
  p50: number;
  p99: number;
}

/** One measured path: what went through, how fast, and what each message cost each process. */
export interface PathResult {
  path: string;
  /** What was measured, in words, with its size: a README table cell. */
  label: string;
  count: number;
  /** `messages` or `rows`: what the per-unit figures are per. */
  unit: string;
  /** Units per second. */
  throughput: number;
  seconds: number;
  /** Named latency distributions in ms (webhook answer, webhook → provider, request…). */
  latency: Record<string, Percentiles>;
  cost: Cost;
  per: ReturnType<typeof perMessage>;
  /** The raw BullMQ figure measured in the same run, when the path has one. */
  reference?: { label: string; count: number; throughput: number; latency?: Percentiles; cost: Cost; per: ReturnType<typeof perMessage> };
  /** Correctness of the run: what was accepted, stored, sent, duplicated. */
  checks: Record<string, number>;
  /** Figures particular to the path (peak memory, orders during the campaign…). */
  extra?: Record<string, number>;
}

/** Deletes every key under a benchmark's prefix. */
export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
}

export function benchId(): string {
  return `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
}

export interface LoadResult {
  requestsPerSec: number;
  p50: number;
  p99: number;
  total: number;
  non2xx: number;
  errors: number;
}

export async function load(options: autocannon.Options): Promise<LoadResult> {
  const r = await autocannon(options);
  return {
    requestsPerSec: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    total: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
  };
}

/** The p-th percentile (0–100) of an ascending array, by the nearest-rank method; 0 when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: Math.round(percentile(sorted, 50)), p99: Math.round(percentile(sorted, 99)) };
}

/** Polls `probe` every `everyMs` until it returns true; throws `what` after `timeoutMs`. */
export async function waitFor(what: () => string, probe: () => Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(what());
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
