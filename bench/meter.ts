/**
 * What a measured window cost, by process: CPU time of each named child (from /proc/<pid>/stat), of the PostgreSQL
 * backends serving the service's connections (found in pg_stat_activity by application_name, then read from /proc), of
 * the private redis-server (`INFO cpu`) and of this process (the load generator and the SQL counter); the statements the
 * service sent (the SQL counter), the commands Redis executed (`INFO stats` and `INFO commandstats`, less the meter's own
 * INFO calls), and peaks of Redis `used_memory` and of the service's RSS, sampled every 250 ms.
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { cpuMsOf, rssOf } from './processes.js';
import type { SqlCounter, SqlCounts } from './sqlCounter.js';

export interface MeterTargets {
  /** Child processes to account for, by label (`service`, `sandbox`, `raw`…). */
  processes: Record<string, number>;
  /** The process whose RSS peak is reported. */
  rssOf?: number;
  /** The service's PostgreSQL backends: a direct (uncounted) client, and the application_name of its connections. */
  pg?: { client: pg.Client; applicationName: string };
  /** A connection to the benchmark's private Redis. */
  redis: Redis;
  sql?: SqlCounter;
}

export interface Cost {
  seconds: number;
  /** CPU milliseconds by process: the labelled children, `postgres` (the service's backends), `redis`, `bench`. */
  cpuMs: Record<string, number>;
  sql?: SqlCounts;
  redis: { commands: number; scripts: number; byCommand: Record<string, number> };
  peakRedisBytes: number;
  baseRedisBytes: number;
  peakRssBytes: number;
}

interface RedisSnapshot {
  commands: number;
  cpuMs: number;
  usedMemory: number;
  byCommand: Map<string, number>;
}

async function redisSnapshot(redis: Redis): Promise<RedisSnapshot> {
  const info = await redis.info('stats', 'cpu', 'memory', 'commandstats');
  const num = (key: string) => Number(new RegExp(`^${key}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  const byCommand = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) byCommand.set(m[1]!, Number(m[2]));
  return {
    commands: num('total_commands_processed'),
    cpuMs: (num('used_cpu_sys') + num('used_cpu_user')) * 1000,
    usedMemory: num('used_memory'),
    byCommand,
  };
}

const SCRIPT_COMMANDS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);

export interface Meter {
  /** Ends the window and returns what it cost. */
  stop(): Promise<Cost>;
}

export async function startMeter(t: MeterTargets): Promise<Meter> {
  const t0 = performance.now();
  const bench0 = process.cpuUsage();
  const proc0 = Object.fromEntries(Object.entries(t.processes).map(([label, pid]) => [label, cpuMsOf(pid) ?? 0]));
  const procLast = { ...proc0 };
  // Backend pid → [CPU ms when first seen in the window, CPU ms when last seen].
  const backends = new Map<number, [number, number]>();
  let firstBackendSample = true;
  // Every INFO the meter sends is counted by Redis too; subtracted at the end.
  let infoCalls = 0;
  let peakRedis = 0;
  let peakRss = 0;

  const sampleBackends = async () => {
    if (!t.pg) return;
    const { rows } = await t.pg.client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [t.pg.applicationName]);
    for (const { pid } of rows) {
      const ms = cpuMsOf(pid);
      if (ms === undefined) continue;
      const seen = backends.get(pid);
      // A backend there when the window opened counts from then; one that appears later was born inside it.
      if (seen) seen[1] = ms;
      else backends.set(pid, [firstBackendSample ? ms : 0, ms]);
    }
    firstBackendSample = false;
  };
  const sample = async () => {
    for (const [label, pid] of Object.entries(t.processes)) procLast[label] = cpuMsOf(pid) ?? procLast[label]!;
    if (t.rssOf) peakRss = Math.max(peakRss, rssOf(t.rssOf));
    await sampleBackends();
    infoCalls++;
    peakRedis = Math.max(peakRedis, (await redisSnapshot(t.redis)).usedMemory);
  };

  const sql0 = t.sql?.counts();
  await sampleBackends();
  infoCalls++;
  const redis0 = await redisSnapshot(t.redis);
  let sampling: Promise<void> | undefined;
  const timer = setInterval(() => {
    sampling ??= sample()
      .catch(() => undefined)
      .finally(() => {
        sampling = undefined;
      });
  }, 250);

  return {
    stop: async () => {
      clearInterval(timer);
      await sampling;
      const sql1 = t.sql?.counts();
      await sample();
      const redis1 = await redisSnapshot(t.redis);
      const bench = process.cpuUsage(bench0);
      const cpuMs: Record<string, number> = {};
      for (const label of Object.keys(t.processes)) cpuMs[label] = procLast[label]! - proc0[label]!;
      if (t.pg) cpuMs.postgres = [...backends.values()].reduce((sum, [first, last]) => sum + last - first, 0);
      cpuMs.redis = redis1.cpuMs - redis0.cpuMs;
      cpuMs.bench = (bench.user + bench.system) / 1000;
      const byCommand: Record<string, number> = {};
      let scripts = 0;
      for (const [name, calls] of redis1.byCommand) {
        const delta = calls - (redis0.byCommand.get(name) ?? 0) - (name === 'info' ? infoCalls : 0);
        if (delta <= 0) continue;
        byCommand[name] = delta;
        if (SCRIPT_COMMANDS.has(name)) scripts += delta;
      }
      return {
        seconds: (performance.now() - t0) / 1000,
        cpuMs,
        ...(sql0 && sql1
          ? { sql: Object.fromEntries(Object.entries(sql1).map(([k, v]) => [k, v - sql0[k as keyof SqlCounts]])) as unknown as SqlCounts }
          : {}),
        redis: { commands: redis1.commands - redis0.commands - infoCalls, scripts, byCommand },
        peakRedisBytes: Math.max(peakRedis, redis1.usedMemory),
        baseRedisBytes: redis0.usedMemory,
        peakRssBytes: peakRss,
      };
    },
  };
}

/** A cost divided by the number of messages (or jobs, or rows) it bought, rounded for the report. */
export function perMessage(cost: Cost, n: number) {
  const r = (x: number, digits = 4) => Math.round((x / Math.max(1, n)) * 10 ** digits) / 10 ** digits;
  return {
    cpuMs: Object.fromEntries(Object.entries(cost.cpuMs).map(([k, v]) => [k, r(v)])),
    ...(cost.sql ? { sqlStatements: r(cost.sql.statements), sqlRoundTrips: r(cost.sql.roundTrips), sqlTransactions: r(cost.sql.transactions) } : {}),
    redisCommands: r(cost.redis.commands),
    redisScripts: r(cost.redis.scripts),
    redisTop: Object.fromEntries(
      Object.entries(cost.redis.byCommand)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8)
        .map(([k, v]) => [k, r(v)]),
    ),
  };
}
