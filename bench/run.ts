/**
 * `npm run bench`: runs the benchmarks on the local Redis and PostgreSQL and prints one table and one JSON line.
 *
 * Environment: BENCH_REDIS_URL (redis://127.0.0.1:6379), BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test),
 * BENCH_DURATION (seconds per intake load phase, 10), BENCH_CONNECTIONS (50), BENCH_PIPELINE_MESSAGES (webhooks in the
 * pipeline burst, 2000), BENCH_PIPELINE_RATE (webhooks/s in the paced phase, 50), BENCH_ONLY (comma-separated
 * sections to run: intake, pipeline, campaign; default all), BENCH_CAMPAIGN_SIZE (recipients of the large campaign, 100000;
 * a 10000 one runs too), BENCH_CAMPAIGN_1M=1 (a 1 000 000 one as well), BENCH_CAMPAIGN_ORDER_RATE (order confirmations/s
 * during the large campaign, 5).
 */
import os from 'node:os';
import { benchIntake } from './intake.js';
import { printReport, type Row } from './lib.js';
import { benchPipeline } from './pipeline.js';
import { benchCampaign } from './campaign.js';

const env = process.env;
const redisUrl = env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const databaseUrl = env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const durationSec = Number(env.BENCH_DURATION ?? 10);
const connections = Number(env.BENCH_CONNECTIONS ?? 50);
const pipelineMessages = Number(env.BENCH_PIPELINE_MESSAGES ?? 2000);
const pacedRate = Number(env.BENCH_PIPELINE_RATE ?? 50);
const only = env.BENCH_ONLY ? new Set(env.BENCH_ONLY.split(',').map((s) => s.trim())) : undefined;
const runs = (section: string) => !only || only.has(section);

const rows: Row[] = [];
const summaries: Record<string, unknown> = {};
if (runs('intake')) {
  const intake = await benchIntake({ redisUrl, databaseUrl, durationSec, connections });
  rows.push(...intake.rows);
  summaries.intake = intake.summary;
}
if (runs('pipeline')) {
  const pipeline = await benchPipeline({ redisUrl, databaseUrl, messages: pipelineMessages, pacedRate, pacedSec: Math.max(4, durationSec) });
  rows.push(...pipeline.rows);
  summaries.pipeline = pipeline.summary;
}
if (runs('campaign')) {
  const size = Number(env.BENCH_CAMPAIGN_SIZE ?? 100_000);
  const sizes = [...new Set([Math.min(10_000, size), size, ...(env.BENCH_CAMPAIGN_1M === '1' ? [1_000_000] : [])])];
  const campaign = await benchCampaign({ redisUrl, databaseUrl, sizes, orderRate: Number(env.BENCH_CAMPAIGN_ORDER_RATE ?? 5) });
  rows.push(...campaign.rows);
  summaries.campaign = campaign.summary;
}
printReport('SMS Blossom benchmarks', rows, {
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
  settings: { durationSec, connections, pipelineMessages, pacedRate },
  ...summaries,
});
