/** Shared pieces of the benchmarks: child servers, the load generator, and the report format. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import type { Redis } from 'ioredis';

export interface Row {
  section: string;
  metric: string;
  value: number;
  unit: string;
  /** The figure this one is compared with, measured in the same run. */
  baseline?: number;
  note?: string;
}

/** Environment of a benchmark child: production settings, silent logs, its own Redis prefix and schema. */
export function benchEnv(o: { redisUrl: string; databaseUrl: string; prefix: string; schema: string; secret: string; poolSize: number }): Record<string, string> {
  return {
    REDIS_URL: o.redisUrl,
    REDIS_PREFIX: o.prefix,
    REDIS_EMBEDDED: 'false',
    DATABASE_URL: o.databaseUrl,
    DATABASE_SCHEMA: o.schema,
    DATABASE_POOL_SIZE: String(o.poolSize),
    SHOPIFY_API_SECRET: o.secret,
    LOG_LEVEL: 'silent',
    NODE_ENV: 'production',
  };
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

/** Runs a benchmark server as a child process; it prints `READY <port> [extra]` when it can take load. */
export async function startChild(script: string, args: string[], env: Record<string, string>): Promise<{ port: number; extra: string; child: ChildProcess; stop(): Promise<void> }> {
  // BENCH_CPU_PROF=<dir>: each benchmark server writes a V8 CPU profile there when it exits (open it in Chrome DevTools).
  const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const child = spawn(process.execPath, [...profile, '--import', 'tsx', script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const [port, extra] = await new Promise<[number, string]>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      const m = /^READY (\d+)(?: (.*))?$/.exec(line);
      if (m) resolve([Number(m[1]), m[2] ?? '']);
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
  });
  return {
    port,
    extra,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
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

export function printReport(title: string, rows: Row[], extra: Record<string, unknown> = {}): void {
  const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2));
  const lines = rows.map((r) => [
    r.section,
    r.metric,
    `${fmt(r.value)} ${r.unit}`,
    r.baseline === undefined ? '' : `${fmt(r.baseline)} ${r.unit}`,
    r.baseline ? `${(r.value / r.baseline).toFixed(2)}x` : '',
    r.note ?? '',
  ]);
  const head = ['section', 'metric', 'value', 'baseline', 'ratio', 'note'];
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  process.stdout.write(`\n${title}\n${row(head)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|\n${lines.map(row).join('\n')}\n\n`);
  const json = { bench: title, at: new Date().toISOString(), ...extra, results: rows };
  process.stdout.write(`${JSON.stringify(json)}\n`);
}
