/** Shared pieces of the benchmarks: child servers, the load generator, and the report format. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';

export interface Row {
  section: string;
  metric: string;
  value: number;
  unit: string;
  /** The figure this one is compared with, measured in the same run. */
  baseline?: number;
  note?: string;
}

export function benchId(): string {
  return `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
}

export async function startChild(script: string, args: string[], env: Record<string, string>): Promise<{ port: number; child: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      const m = /^READY (\d+)$/.exec(line);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
  });
  return {
    port,
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
