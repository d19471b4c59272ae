/**
 * Orders: N signed `orders/paid` webhooks, each a distinct order and customer, sent over `connections` HTTP connections
 * as fast as the service takes them; measured until every order confirmation was accepted by the provider and its
 * delivery report settled. Beside it, the raw BullMQ reference: N jobs through a chain of three no-op queues.
 *
 * Latencies: the webhook's answer (what Shopify sees), and webhook → provider accepted (`messages.sent_at −
 * events.received_at`, both stamped by the database, joined on the request id that follows the webhook through every
 * hop). The chain's is `finishedOn` of its last hop minus the time the producer stamped in the job.
 */
import { Queue } from 'bullmq';
import { orderWebhook } from '../test/faults/lib/workload.js';
import { CHAIN, deleteKeys, load, percentiles, waitFor, type BenchContext, type PathResult, benchId } from './lib.js';
import { perMessage, startMeter } from './meter.js';
import { startRaw } from './processes.js';
import { withService, type ServiceRun } from './service.js';

export interface OrdersOptions {
  orders: number;
  connections: number;
}

const DEADLINE_MS = 600_000;

/** Order confirmations of `shop` accepted by the provider, and those whose delivery report was settled. */
async function progress(run: ServiceRun, shop: string): Promise<{ sent: number; settled: number }> {
  const { rows } = await run.db.query(
    `SELECT count(*) FILTER (WHERE m.sent_at IS NOT NULL)::int AS sent, count(*) FILTER (WHERE m.delivered_at IS NOT NULL OR m.status IN ('delivered', 'failed'))::int AS settled
       FROM messages m JOIN shops s ON s.id = m.shop_id WHERE s.domain = $1 AND m.trigger = 'order_paid'`,
    [shop],
  );
  return rows[0];
}

async function sendOrders(run: ServiceRun, shop: string, first: number, amount: number, connections: number) {
  let n = first;
  const http = await load({
    url: run.service.url,
    connections,
    amount,
    requests: [{ method: 'POST', path: '/webhooks/shopify', setupRequest: (req) => {
          // Each a distinct order and customer (not an SMS subscriber: one transactional confirmation, no welcome).
          const { body, headers } = orderWebhook(n++, shop);
          return { ...req, body, headers };
        }, }],
  });
  const accepted = amount - http.non2xx - http.errors;
  let last = { sent: 0, settled: 0 };
  await waitFor(
    () => `orders benchmark: ${last.sent} sent, ${last.settled} settled of ${accepted} after ${DEADLINE_MS} ms`,
    async () => {
      last = await progress(run, shop).catch(() => last);
      return last.sent >= accepted && last.settled >= accepted;
    },
    DEADLINE_MS,
  );
  return { http, accepted };
}

export async function benchOrders(ctx: BenchContext, o: OrdersOptions): Promise<PathResult> {
  const measured = await withService(ctx, {}, async (run) => {
    // Warm-up (not measured): code paths compiled, pools filled, the automation cache (if any) primed.
    const warmup = Math.min(100, Math.ceil(o.orders / 10));
    await sendOrders(run, 'bench-warmup.myshopify.com', 1_000_000, warmup, Math.min(o.connections, 8));
    const shop = 'bench-orders.myshopify.com';
    const meter = await run.meter();
    const { http, accepted } = await sendOrders(run, shop, 0, o.orders, o.connections);
    const cost = await meter.stop();
    const { rows } = await run.db.query(
      `SELECT extract(epoch FROM m.sent_at - e.received_at) * 1000 AS ms,
              extract(epoch FROM e.received_at) * 1000 AS received, extract(epoch FROM m.sent_at) * 1000 AS sent
         FROM messages m JOIN shops s ON s.id = m.shop_id JOIN events e ON e.shop_domain = s.domain AND e.request_id = m.request_id
        WHERE s.domain = $1 AND m.trigger = 'order_paid' AND m.sent_at IS NOT NULL`,
      [shop],
    );
    const span = (Math.max(...rows.map((r) => Number(r.sent))) - Math.min(...rows.map((r) => Number(r.received)))) / 1000;
    // What the provider saw: one accepted message per order, none twice (warm-up included).
    const atProvider = ((await (await fetch(`${run.sandbox.url}/__sandbox/messages`)).json()) as { messages: Array<{ reference: string | null }> }).messages;
    const references = new Set(atProvider.map((m) => m.reference));
    return {
      accepted,
      http,
      rows,
      span,
      cost,
      checks: {
        webhooksAccepted: accepted,
        webhooksRefused: http.non2xx + http.errors,
        messagesSent: rows.length,
        atProvider: references.size - warmup,
        duplicatesAtProvider: atProvider.length - references.size,
      },
    };
  });
  const reference = await rawChain(ctx, o.orders);
  return {
    path: 'orders',
    label: `signed \`orders/paid\` webhooks → order confirmation accepted by the provider (${o.orders} orders, ${o.connections} connections)`,
    count: measured.rows.length,
    unit: 'messages',
    throughput: measured.rows.length / measured.span,
    seconds: measured.span,
    latency: { webhook: { p50: measured.http.p50, p99: measured.http.p99 }, endToEnd: percentiles(measured.rows.map((r) => Number(r.ms))) },
    cost: measured.cost,
    per: perMessage(measured.cost, measured.rows.length),
    reference,
    checks: measured.checks,
  };
}

/** Raw BullMQ: `n` jobs added with addBulk to the first of three no-op queues, each worker forwarding to the next. */
async function rawChain(ctx: BenchContext, n: number): Promise<NonNullable<PathResult['reference']>> {
  const prefix = `smsblossom-bench:${benchId()}`;
  const raw = await startRaw('chain', { REDIS_URL: ctx.redisUrl, REDIS_PREFIX: prefix });
  const first = new Queue(CHAIN[0], { connection: ctx.redis, prefix });
  const last = new Queue(CHAIN[2], { connection: ctx.redis, prefix });
  const opts = { removeOnComplete: 100, removeOnFail: 50 };
  try {
    raw.go();
    const run = async (count: number) => {
      const t0 = Date.now();
      await first.addBulk(Array.from({ length: count }, (_, i) => ({ name: 'orders/paid', data: { i, t0: Date.now() }, opts })));
      await waitFor(() => `the BullMQ chain did not finish ${count} jobs in ${DEADLINE_MS} ms`, async () => (await last.getCompletedCount()) >= count, DEADLINE_MS, 100);
      const jobs = await last.getCompleted(0, count - 1);
      const end = Math.max(...jobs.map((j) => j.finishedOn ?? 0));
      return { latencies: jobs.map((j) => (j.finishedOn ?? 0) - Number(j.data.t0)), seconds: (end - t0) / 1000 };
    };
    await run(Math.min(100, Math.ceil(n / 10)));
    await last.obliterate({ force: true });
    const meter = await startMeter({ processes: { raw: raw.pid }, rssOf: raw.pid, redis: ctx.redis });
    const r = await run(n);
    const cost = await meter.stop();
    return {
      label: 'raw BullMQ: 3-queue no-op chain',
      count: n,
      throughput: n / r.seconds,
      latency: percentiles(r.latencies),
      cost,
      per: perMessage(cost, n),
    };
  } finally {
    await raw.stop();
    await first.close();
    await last.close();
    await deleteKeys(ctx.redis, prefix);
  }
}
