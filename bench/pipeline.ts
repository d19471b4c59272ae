/**
 * The automation pipeline end to end: a signed `orders/paid` webhook over HTTP → events → automations → delivery →
 * the message accepted by the sandbox (through the real Mitto client), beside a raw BullMQ chain of three queues whose
 * workers do nothing but forward the job. Both run as child processes on the same Redis, in the same run.
 *
 * Two loads each:
 *   burst — N webhooks (N jobs) as fast as they are taken: throughput, and the latency of a backlog;
 *   paced — a steady, light rate: the latency one order confirmation sees when the system is not saturated.
 *
 * Latency of a message is `messages.sent_at − events.received_at` (both stamped by the database when the webhook was
 * stored and when the sandbox answered 200), joined on the request id that follows the webhook through every hop. The
 * chain's is `finishedOn` of its last hop minus the time the producer stamped in the job.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { signWebhook } from '../src/shopify/hmac.js';
import { benchEnv, benchId, deleteKeys, load, percentile, startChild, type Row } from './lib.js';

export interface PipelineOptions {
  redisUrl: string;
  databaseUrl: string;
  /** Webhooks in the burst (BENCH_PIPELINE_MESSAGES). */
  messages: number;
  /** Webhooks per second in the paced phase, and how long it lasts. */
  pacedRate: number;
  pacedSec: number;
}

interface Phase {
  count: number;
  perSec: number;
  p50: number;
  p99: number;
}

const CHAIN = ['chain-a', 'chain-b', 'chain-c'] as const;
const DEADLINE_MS = 300_000;

export async function benchPipeline(o: PipelineOptions): Promise<{ rows: Row[]; summary: Record<string, number> }> {
  const id = benchId();
  const prefix = `smsblossom-bench:${id}`;
  const schema = `bench_${id}`;
  const secret = 'bench-secret';
  const env = { ...benchEnv({ redisUrl: o.redisUrl, databaseUrl: o.databaseUrl, prefix, schema, secret, poolSize: 20 }), SMS_PROVIDER: 'sandbox' };
  const template = JSON.parse(fs.readFileSync(new URL('../test/fixtures/shopify/orders-paid.json', import.meta.url), 'utf8'));
  const db = new pg.Client({ connectionString: o.databaseUrl });
  const redis = new Redis(o.redisUrl);
  let full: Awaited<ReturnType<typeof startChild>> | undefined;
  let chain: Awaited<ReturnType<typeof startChild>> | undefined;
  try {
    // ── SMS Blossom ──────────────────────────────────────────────────────────────────────────────────────────────
    full = await startChild('bench/pipelineServer.ts', ['full'], env);
    await db.connect();
    let serial = 0;
    // A distinct order and customer per webhook: one order confirmation each, no dedupe, no contention on one row.
    const signedOrder = (shop: string) => {
      const n = serial++;
      const body = Buffer.from(
        JSON.stringify({
          ...template,
          id: 9_000_000_000 + n,
          name: `#B${n}`,
          // Not yet SMS subscribers: the confirmation is transactional and goes out anyway, and no welcome message
          // (a new subscriber's, sent once ever) doubles the work being measured.
          customer: {
            ...template.customer,
            id: 8_000_000_000 + n,
            phone: `+1 ${201 + Math.floor(n / 10_000)} 555 ${String(n % 10_000).padStart(4, '0')}`,
            sms_marketing_consent: { ...template.customer.sms_marketing_consent, state: 'not_subscribed' },
          },
        }),
      );
      return {
        body,
        headers: {
          'content-type': 'application/json',
          'x-shopify-topic': 'orders/paid',
          'x-shopify-shop-domain': shop,
          'x-shopify-hmac-sha256': signWebhook(body, secret),
          'x-shopify-webhook-id': randomUUID(),
        },
      };
    };
    const send = (shop: string, amount: number, connections: number, overallRate?: number) =>
      load({
        url: `http://127.0.0.1:${full!.port}`,
        connections,
        amount,
        ...(overallRate ? { overallRate } : {}),
        requests: [{ method: 'POST', path: '/webhooks/shopify', setupRequest: (req) => ({ ...req, ...signedOrder(shop) }) }],
      });

    const burstHttp = await send('bench-burst.myshopify.com', o.messages, 20);
    const burst = await sentLatencies(db, schema, 'bench-burst.myshopify.com', o.messages - burstHttp.non2xx - burstHttp.errors);
    const pacedAmount = o.pacedRate * o.pacedSec;
    const pacedHttp = await send('bench-paced.myshopify.com', pacedAmount, 4, o.pacedRate);
    const paced = await sentLatencies(db, schema, 'bench-paced.myshopify.com', pacedAmount - pacedHttp.non2xx - pacedHttp.errors);
    // What the provider saw: one accepted message per order, none twice.
    const sandboxMessages = ((await (await fetch(`${full.extra}/__sandbox/messages`)).json()) as { messages: Array<{ reference: string | null }> }).messages;
    const references = new Set(sandboxMessages.map((m) => m.reference));
    const duplicates = sandboxMessages.length - references.size;
    await full.stop();
    full = undefined;

    // ── raw BullMQ: three queues, no-op workers ─────────────────────────────────────────────────────────────────
    chain = await startChild('bench/pipelineServer.ts', ['chain'], env);
    const first = new Queue(CHAIN[0], { connection: redis, prefix });
    const last = new Queue(CHAIN[2], { connection: redis, prefix });
    const opts = { removeOnComplete: 100, removeOnFail: 50 };
    const chainBurst = await (async () => {
      const t0 = Date.now();
      await first.addBulk(Array.from({ length: o.messages }, (_, i) => ({ name: 'orders/paid', data: { i, t0: Date.now() }, opts })));
      return chainLatencies(last, o.messages, t0);
    })();
    await last.obliterate({ force: true });
    const chainPaced = await (async () => {
      const t0 = Date.now();
      const interval = 1000 / o.pacedRate;
      for (let i = 0; i < pacedAmount; i++) {
        const due = t0 + i * interval;
        if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
        await first.add('orders/paid', { i, t0: Date.now() }, opts);
      }
      return chainLatencies(last, pacedAmount, t0);
    })();
    await first.close();
    await last.close();

    const rows: Row[] = [
      { section: 'pipeline', metric: `burst of ${o.messages}: messages/s`, value: burst.perSec, unit: 'msg/s', baseline: chainBurst.perSec, note: 'webhook → sandbox accepted; baseline: 3-queue no-op BullMQ chain' },
      { section: 'pipeline', metric: 'burst p50 latency', value: burst.p50, unit: 'ms', baseline: chainBurst.p50, note: burst.stages },
      { section: 'pipeline', metric: 'burst p99 latency', value: burst.p99, unit: 'ms', baseline: chainBurst.p99 },
      { section: 'pipeline', metric: `paced ${o.pacedRate}/s p50 latency`, value: paced.p50, unit: 'ms', baseline: chainPaced.p50, note: paced.stages },
      { section: 'pipeline', metric: `paced ${o.pacedRate}/s p99 latency`, value: paced.p99, unit: 'ms', baseline: chainPaced.p99 },
      {
        section: 'pipeline',
        metric: 'webhooks accepted / messages at the sandbox',
        value: burst.count + paced.count,
        unit: 'msgs',
        baseline: references.size,
        note: `duplicates at the sandbox: ${duplicates}; HTTP non-2xx ${burstHttp.non2xx + pacedHttp.non2xx}`,
      },
    ];
    return {
      rows,
      summary: {
        burstMessages: o.messages,
        burstPerSec: burst.perSec,
        burstP50: burst.p50,
        burstP99: burst.p99,
        pacedRate: o.pacedRate,
        pacedP50: paced.p50,
        pacedP99: paced.p99,
        chainBurstPerSec: chainBurst.perSec,
        chainBurstP50: chainBurst.p50,
        chainBurstP99: chainBurst.p99,
        chainPacedP50: chainPaced.p50,
        chainPacedP99: chainPaced.p99,
        ratio: burst.perSec / chainBurst.perSec,
        sandboxAccepted: references.size,
        sandboxDuplicates: duplicates,
      },
    };
  } finally {
    await full?.stop();
    await chain?.stop();
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await db.end().catch(() => undefined);
    await deleteKeys(redis, prefix);
    redis.disconnect();
  }
}

/** Waits until `expected` messages of the shop were accepted by the provider; their throughput and latencies. */
async function sentLatencies(db: pg.Client, schema: string, shop: string, expected: number): Promise<Phase & { stages: string }> {
  const deadline = Date.now() + DEADLINE_MS;
  const countSql = `SELECT count(*)::int AS n FROM "${schema}".messages m JOIN "${schema}".shops s ON s.id = m.shop_id WHERE s.domain = $1 AND m.trigger = 'order_paid' AND m.sent_at IS NOT NULL`;
  for (;;) {
    const n = (await db.query(countSql, [shop]).catch(() => ({ rows: [{ n: 0 }] }))).rows[0].n as number;
    if (n >= expected) break;
    if (Date.now() > deadline) throw new Error(`pipeline benchmark: ${n} of ${expected} messages sent for ${shop} after ${DEADLINE_MS} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const { rows } = await db.query(
    `SELECT extract(epoch FROM m.sent_at - e.received_at) * 1000 AS ms,
            extract(epoch FROM e.received_at) * 1000 AS received, extract(epoch FROM m.sent_at) * 1000 AS sent,
            extract(epoch FROM m.queued_at - e.received_at) * 1000 AS to_queued,
            extract(epoch FROM m.sending_at - m.queued_at) * 1000 AS to_sending,
            extract(epoch FROM m.sent_at - m.sending_at) * 1000 AS to_sent
       FROM "${schema}".messages m
       JOIN "${schema}".shops s ON s.id = m.shop_id
       JOIN "${schema}".events e ON e.shop_domain = s.domain AND e.request_id = m.request_id
      WHERE s.domain = $1 AND m.trigger = 'order_paid' AND m.sent_at IS NOT NULL`,
    [shop],
  );
  const median = (key: string) => percentile(rows.map((r) => Number(r[key])).sort((a, b) => a - b), 50);
  return {
    ...phase(
      rows.map((r) => Number(r.ms)),
      Math.min(...rows.map((r) => Number(r.received))),
      Math.max(...rows.map((r) => Number(r.sent))),
    ),
    stages: `p50 per stage: webhook→message row ${median('to_queued').toFixed(0)} ms, row→claimed ${median('to_sending').toFixed(0)} ms, claimed→accepted ${median('to_sent').toFixed(0)} ms`,
  };
}

/** Waits until `expected` jobs completed the chain's last hop; their throughput and latencies. */
async function chainLatencies(last: Queue, expected: number, t0: number): Promise<Phase> {
  const deadline = Date.now() + DEADLINE_MS;
  while ((await last.getCompletedCount()) < expected) {
    if (Date.now() > deadline) throw new Error(`pipeline benchmark: the BullMQ chain did not finish ${expected} jobs in ${DEADLINE_MS} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const jobs = await last.getCompleted(0, expected - 1);
  const finished = jobs.map((j) => j.finishedOn ?? 0);
  return phase(
    jobs.map((j) => (j.finishedOn ?? 0) - Number(j.data.t0)),
    t0,
    Math.max(...finished),
  );
}

function phase(latencies: number[], start: number, end: number): Phase {
  const sorted = latencies.sort((a, b) => a - b);
  return { count: sorted.length, perSec: sorted.length / Math.max(0.001, (end - start) / 1000), p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}
