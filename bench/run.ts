/**
 * `npm run bench`: runs the benchmarks on the local Redis and PostgreSQL and prints one table and one JSON line.
 *
 * Environment: BENCH_REDIS_URL (redis://127.0.0.1:6379), BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test),
 * BENCH_DURATION (seconds per load phase, 10), BENCH_CONNECTIONS (50).
 */
import os from 'node:os';
import { benchIntake } from './intake.js';
import { printReport } from './lib.js';

const env = process.env;
const redisUrl = env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const databaseUrl = env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const durationSec = Number(env.BENCH_DURATION ?? 10);
const connections = Number(env.BENCH_CONNECTIONS ?? 50);

const intake = await benchIntake({ redisUrl, databaseUrl, durationSec, connections });
printReport('SMS Blossom benchmarks', intake.rows, {
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
  settings: { durationSec, connections },
  intake: intake.summary,
});
