/** The results of one `npm run bench`, and their two renderings: the console table and the README's Markdown table. */
import type { PathResult } from './lib.js';

export interface BenchResults {
  bench: string;
  at: string;
  machine: { cpus: number; cpu: string; memoryGb: number; node: string };
  /** The commit measured, and the files under src/ that differed from it. */
  source?: { commit: string; uncommitted: string[] };
  settings: Record<string, unknown>;
  paths: PathResult[];
}

const fmt = (n: number) =>
  n === 0 ? '0' : Math.abs(n) >= 100 ? Math.round(n).toLocaleString('en-US') : Math.abs(n) >= 10 ? n.toFixed(1) : Math.abs(n) >= 1 ? n.toFixed(2) : String(Number(n.toPrecision(2)));
const ms = (p: { p50: number; p99: number }) => `p50 ${p.p50} ms, p99 ${p.p99} ms`;
const unitOf = (r: PathResult) => (r.unit === 'rows' ? 'row' : 'msg');

/** Service, PostgreSQL and Redis CPU per unit, the figures side by side. */
function cpu(per: PathResult['per'], own: string): string {
  const c = per.cpuMs;
  const part = (label: string, key: string) => (c[key] === undefined ? undefined : `${label} ${fmt(c[key]!)}`);
  return [part(own, own), part('PostgreSQL', 'postgres'), part('Redis', 'redis')].filter(Boolean).join(' · ');
}

function redisText(per: PathResult['per']): string {
  return `${fmt(per.redisCommands)} commands (${fmt(per.redisScripts)} scripts)`;
}

function ratio(r: PathResult): string {
  return r.reference ? `${(r.throughput / r.reference.throughput).toFixed(3)}×` : '';
}

/** The console table: one line per figure, the raw BullMQ reference and the ratio beside the figures that have one. */
export function formatTable(results: BenchResults): string {
  const lines: string[][] = [];
  for (const r of results.paths) {
    const ref = r.reference;
    const u = unitOf(r);
    lines.push([r.path, `throughput, ${r.count} ${r.unit}`, `${fmt(r.throughput)} ${u}/s (${fmt(r.seconds)} s)`, ref ? `${fmt(ref.throughput)} jobs/s (${ref.label})` : '', ratio(r)]);
    for (const [name, p] of Object.entries(r.latency)) lines.push(['', `latency: ${name}`, ms(p), name === 'endToEnd' && ref?.latency ? ms(ref.latency) : '', '']);
    lines.push(['', `CPU ms per ${u}`, cpu(r.per, 'service'), ref ? cpu(ref.per, 'raw') : '', '']);
    const others = Object.entries(r.per.cpuMs).filter(([k]) => !['service', 'postgres', 'redis'].includes(k));
    lines.push(['', `CPU ms per ${u}, other processes`, others.map(([k, v]) => `${k} ${fmt(v)}`).join(' · '), '', '']);
    if (r.per.sqlStatements !== undefined) lines.push(['', `SQL per ${u}`, `${fmt(r.per.sqlStatements)} statements, ${fmt(r.per.sqlRoundTrips ?? 0)} round trips, ${fmt(r.per.sqlTransactions ?? 0)} BEGINs`, ref ? '0' : '', '']);
    lines.push(['', `Redis per ${u}`, redisText(r.per), ref ? redisText(ref.per) : '', '']);
    lines.push(['', 'Redis commands, most frequent', Object.entries(r.per.redisTop).map(([k, v]) => `${k} ${fmt(v)}`).join(' · '), '', '']);
    for (const [k, v] of Object.entries(r.extra ?? {})) lines.push(['', k, fmt(v), '', '']);
    lines.push(['', 'checks', Object.entries(r.checks).map(([k, v]) => `${k} ${v}`).join(', '), '', '']);
  }
  const head = ['path', 'measure', 'SMS Blossom', 'raw BullMQ, same run', 'ratio'];
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const m = results.machine;
  return [`${results.bench}: ${results.at}, ${m.cpus} × ${m.cpu}, Node ${m.node}`, row(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(row)].join('\n');
}

/** The README's benchmark table (Markdown), one row per path. */
export function formatMarkdown(results: BenchResults): string {
  const head = [
    'path',
    'throughput',
    'latency',
    'CPU ms per message (import: per row): service · PostgreSQL · Redis',
    'SQL statements per message (row)',
    'Redis commands per message (row)',
    'raw BullMQ, same run',
    'ratio',
  ];
  const rows = results.paths.map((r) => {
    const u = unitOf(r);
    const ref = r.reference;
    const latency = Object.entries(r.latency)
      .map(([name, p]) => `${LATENCY_NAMES[name] ?? name} ${p.p50} / ${p.p99} ms`)
      .join('; ');
    return [
      r.label,
      `${fmt(r.throughput)} ${u}/s`,
      latency ? `p50 / p99: ${latency}` : '',
      `${fmt(r.per.cpuMs.service ?? 0)} · ${fmt(r.per.cpuMs.postgres ?? 0)} · ${fmt(r.per.cpuMs.redis ?? 0)}`,
      r.per.sqlStatements === undefined ? '' : `${fmt(r.per.sqlStatements)} (${fmt(r.per.sqlTransactions ?? 0)} BEGIN)`,
      `${fmt(r.per.redisCommands)} (${fmt(r.per.redisScripts)} scripts)`,
      ref
        ? `${ref.label.replace(/^raw BullMQ: /, '')}: ${fmt(ref.throughput)} jobs/s${ref.latency ? `, p50 / p99 ${ref.latency.p50} / ${ref.latency.p99} ms` : ''}; CPU ${fmt(ref.per.cpuMs.raw ?? 0)} · — · ${fmt(ref.per.cpuMs.redis ?? 0)} ms, ${fmt(ref.per.redisCommands)} Redis commands per job`
        : '—',
      ratio(r),
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  // What the run checked and the figures a table row has no column for (peak memory of a campaign, …).
  const notes = results.paths.map((r) => {
    const figures = { ...r.checks, ...r.extra };
    return `- ${r.path}${r.path === 'campaign' ? ` (${r.checks.recipients})` : ''}: ${Object.entries(figures).map(([k, v]) => `${k} ${v}`).join(', ')}.`;
  });
  return [line(head), line(head.map(() => '---')), ...rows.map(line), '', ...notes].join('\n');
}

const LATENCY_NAMES: Record<string, string> = {
  webhook: 'webhook answered',
  endToEnd: 'webhook → provider',
  ordersDuringCampaign: 'order confirmation during the campaign',
  request: 'import request',
};
