/**
 * Contacts import: a CSV of N new contacts (phone, names, e-mail, tags, consent) sent to `POST /api/contacts/import`
 * with a merchant session token, in requests of `chunk` rows one after another; measured from the first request until
 * the last was answered. No raw BullMQ reference: an import does not go through a queue.
 *
 * Then, unless `cliRows` is 0, the streaming import: a file of `cliRows` contacts through `smsblossom contacts import`
 * (its own process, straight to PostgreSQL), reported as its rate and the CLI's peak RSS.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { benchId, deleteKeys, percentiles, type BenchContext, type PathResult } from './lib.js';
import { perMessage } from './meter.js';
import { ROOT } from './processes.js';
import { withService, type ServiceRun } from './service.js';

export interface ImportOptions {
  rows: number;
  /** Rows per request. */
  chunk: number;
  /** Rows of the file imported through the CLI afterwards; 0 for none. */
  cliRows: number;
  /** The CLI's V8 heap limit in MB (`--max-old-space-size`); 0 for Node's default. */
  cliHeapMb: number;
}

interface ImportAnswer {
  rows: number;
  imported: number;
  created: number;
  errors: unknown[];
}

/** CSV of contacts `from` … `from + count − 1`, header included: distinct Swiss mobile numbers, all subscribed. */
function csv(from: number, count: number): string {
  const lines = ['phone,first_name,last_name,email,tags,consent'];
  for (let i = from; i < from + count; i++) lines.push(`+4178${String(1_000_000 + i).slice(-7)},First${i},Last${i},c${i}@example.com,csv;bench,subscribed`);
  return `${lines.join('\n')}\n`;
}

/** Prints the process's peak resident set (kB) as it exits. */
const PEAK_RSS = 'data:text/javascript,process.on("exit",()=>process.stderr.write("peak_rss_kb="+process.resourceUsage().maxRSS+"\\n"))';

/** `smsblossom contacts import` of a generated file of `rows` contacts into the run's schema: rows/s and peak RSS. */
async function cliImport(ctx: BenchContext, run: ServiceRun, shop: string, rows: number, cliHeapMb: number): Promise<{ rowsPerSec: number; peakRssMb: number; imported: number }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smsblossom-bench-import-'));
  const prefix = `smsblossom-bench:${benchId()}`;
  try {
    const file = path.join(dir, 'contacts.csv');
    const out = createWriteStream(file);
    for (let i = 0; i < rows; i += 10_000) {
      const body = csv(3_000_000 + i, Math.min(10_000, rows - i));
      if (!out.write(i === 0 ? body : body.slice(body.indexOf('\n') + 1))) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    const env = {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: ctx.databaseUrl,
      DATABASE_SCHEMA: run.schema,
      REDIS_URL: ctx.redisUrl,
      REDIS_PREFIX: prefix,
      REDIS_EMBEDDED: 'false',
      LOG_LEVEL: 'warn',
      // A heap limit shows what the import keeps, apart from the garbage V8 collects when it has to.
      ...(cliHeapMb ? { NODE_OPTIONS: `--max-old-space-size=${cliHeapMb}` } : {}),
    };
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--import', PEAK_RSS, 'bin/smsblossom.js', 'contacts', 'import', file, '--shop', shop, '--json'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
    const [code] = (await once(child, 'close')) as [number | null];
    const seconds = (performance.now() - t0) / 1000;
    if (code !== 0) throw new Error(`smsblossom contacts import exited ${code}: ${stderr}`);
    const result = JSON.parse(stdout) as { imported: number };
    return { rowsPerSec: rows / seconds, peakRssMb: Number(/peak_rss_kb=(\d+)/.exec(stderr)?.[1] ?? 0) / 1024, imported: result.imported };
  } finally {
    await rm(dir, { recursive: true, force: true });
    await deleteKeys(ctx.redis, prefix);
  }
}

async function post(run: ServiceRun, token: string, body: string): Promise<ImportAnswer> {
  const res = await fetch(`${run.service.url}/api/contacts/import`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'text/csv' }, body });
  if (!res.ok) throw new Error(`POST /api/contacts/import: ${res.status} ${(await res.text()).slice(0, 500)}`);
  return (await res.json()) as ImportAnswer;
}

export async function benchImport(ctx: BenchContext, o: ImportOptions): Promise<PathResult> {
  return withService(ctx, {}, async (run) => {
    // Warm-up (not measured), for another shop.
    await post(run, await run.sessionToken('bench-import-warmup.myshopify.com'), csv(5_000_000, Math.min(500, o.rows)));
    const shop = 'bench-import.myshopify.com';
    const token = await run.sessionToken(shop);
    const bodies: string[] = [];
    for (let i = 0; i < o.rows; i += o.chunk) bodies.push(csv(i, Math.min(o.chunk, o.rows - i)));
    const durations: number[] = [];
    let imported = 0;
    let created = 0;
    let rejected = 0;
    const meter = await run.meter();
    const t0 = performance.now();
    for (const body of bodies) {
      const start = performance.now();
      const answer = await post(run, token, body);
      durations.push(performance.now() - start);
      imported += answer.imported;
      created += answer.created;
      rejected += answer.errors.length;
    }
    const seconds = (performance.now() - t0) / 1000;
    const cost = await meter.stop();
    const {
      rows: [stored],
    } = await run.db.query('SELECT count(*)::int AS n FROM contacts c JOIN shops s ON s.id = c.shop_id WHERE s.domain = $1', [shop]);
    if (stored.n !== o.rows) throw new Error(`import benchmark: ${stored.n} of ${o.rows} contacts stored (${rejected} rows rejected)`);
    const streamed = o.cliRows > 0 ? await cliImport(ctx, run, shop, o.cliRows, o.cliHeapMb) : null;
    if (streamed && streamed.imported !== o.cliRows) throw new Error(`import benchmark: the CLI imported ${streamed.imported} of ${o.cliRows} rows`);
    return {
      path: 'import',
      label: `CSV import of ${o.rows.toLocaleString('en-US')} contacts through \`POST /api/contacts/import\` (${bodies.length} request${bodies.length === 1 ? '' : 's'} of ≤ ${o.chunk.toLocaleString('en-US')} rows)`,
      count: o.rows,
      unit: 'rows',
      throughput: o.rows / seconds,
      seconds,
      latency: { request: percentiles(durations) },
      cost,
      per: perMessage(cost, o.rows),
      checks: { rows: o.rows, imported, created, rejected, stored: stored.n },
      ...(streamed
        ? {
            extra: {
              [`smsblossom contacts import of ${o.cliRows.toLocaleString('en-US')} rows (streamed), rows/s`]: Math.round(streamed.rowsPerSec),
              [`its peak RSS, MB${o.cliHeapMb ? ` (heap limit ${o.cliHeapMb} MB)` : ''}`]: Math.round(streamed.peakRssMb),
            },
          }
        : {}),
    };
  });
}
