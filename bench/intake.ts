/**
 * Intake: signed Shopify webhooks per second over HTTP, with p50/p99 latency, beside a bare endpoint that only calls
 * `queue.add` with the same body. Both servers run as child processes on the same Redis, measured in the same run.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { signWebhook } from '../src/shopify/hmac.js';
import { benchEnv, benchId, deleteKeys, load, startChild, type Row } from './lib.js';

export interface IntakeOptions {
  redisUrl: string;
  databaseUrl: string;
  durationSec: number;
  connections: number;
}

export async function benchIntake(o: IntakeOptions): Promise<{ rows: Row[]; summary: Record<string, number> }> {
  const id = benchId();
  const prefix = `smsblossom-bench:${id}`;
  const schema = `bench_${id}`;
  const secret = 'bench-secret';
  const body = Buffer.from(fs.readFileSync(new URL('../test/fixtures/shopify/orders-paid.json', import.meta.url)));
  const hmac = signWebhook(body, secret);
  const env = benchEnv({ redisUrl: o.redisUrl, databaseUrl: o.databaseUrl, prefix, schema, secret, poolSize: Math.max(10, o.connections) });
  const rows: Row[] = [];
  const full = await startChild('bench/intakeServer.ts', ['full'], env);
  let intake;
  let intakeSerial;
  const signedLoad = (connections: number, duration: number) =>
    load({
      url: `http://127.0.0.1:${full.port}`,
      connections,
      duration,
      requests: [
        {
          method: 'POST',
          path: '/webhooks/shopify',
          body,
          setupRequest: (req) => ({
            ...req,
            headers: {
              'content-type': 'application/json',
              'x-shopify-topic': 'orders/paid',
              'x-shopify-shop-domain': 'bench.myshopify.com',
              'x-shopify-hmac-sha256': hmac,
              'x-shopify-webhook-id': randomUUID(),
            },
          }),
        },
      ],
    });
  try {
    intake = await signedLoad(o.connections, o.durationSec);
    // One request at a time: the latency Shopify sees when we are not saturated.
    intakeSerial = await signedLoad(1, Math.max(2, Math.round(o.durationSec / 2)));
  } finally {
    await full.stop();
  }

  const bare = await startChild('bench/intakeServer.ts', ['bare'], env);
  let baseline;
  let baselineSerial;
  const bareLoad = (connections: number, duration: number) =>
    load({
      url: `http://127.0.0.1:${bare.port}/bare`,
      method: 'POST',
      connections,
      duration,
      headers: { 'content-type': 'application/json' },
      body,
    });
  try {
    baseline = await bareLoad(o.connections, o.durationSec);
    baselineSerial = await bareLoad(1, Math.max(2, Math.round(o.durationSec / 2)));
  } finally {
    await bare.stop();
  }

  // Every 200 must be a stored event and a queued job: a benchmark that loses work measures nothing.
  const client = new pg.Client({ connectionString: o.databaseUrl });
  await client.connect();
  const stored = Number((await client.query(`SELECT count(*) AS n FROM "${schema}".events WHERE status = 'queued'`)).rows[0].n);
  await client.query(`DROP SCHEMA "${schema}" CASCADE`);
  await client.end();
  const redis = new Redis(o.redisUrl);
  const queued = await redis.llen(`${prefix}:events:wait`);
  await deleteKeys(redis, prefix);
  redis.disconnect();

  const accepted = intake.total + intakeSerial.total - intake.non2xx - intake.errors - intakeSerial.non2xx - intakeSerial.errors;
  rows.push(
    { section: 'intake', metric: `signed webhooks/s, ${o.connections} connections`, value: intake.requestsPerSec, unit: 'req/s', baseline: baseline.requestsPerSec, note: 'baseline: bare queue.add endpoint' },
    { section: 'intake', metric: `p50 latency, ${o.connections} connections`, value: intake.p50, unit: 'ms', baseline: baseline.p50 },
    { section: 'intake', metric: `p99 latency, ${o.connections} connections`, value: intake.p99, unit: 'ms', baseline: baseline.p99 },
    { section: 'intake', metric: 'p50 latency, 1 connection', value: intakeSerial.p50, unit: 'ms', baseline: baselineSerial.p50 },
    { section: 'intake', metric: 'p99 latency, 1 connection', value: intakeSerial.p99, unit: 'ms', baseline: baselineSerial.p99 },
    { section: 'intake', metric: 'accepted / stored+queued', value: accepted, unit: 'webhooks', baseline: stored, note: `non-2xx ${intake.non2xx}, errors ${intake.errors}, jobs waiting ${queued}` },
  );
  return {
    rows,
    summary: {
      intakeRps: intake.requestsPerSec,
      intakeP50: intake.p50,
      intakeP99: intake.p99,
      bareRps: baseline.requestsPerSec,
      bareP50: baseline.p50,
      bareP99: baseline.p99,
      ratio: intake.requestsPerSec / baseline.requestsPerSec,
      intakeSerialP50: intakeSerial.p50,
      intakeSerialP99: intakeSerial.p99,
      accepted,
      stored,
    },
  };
}
