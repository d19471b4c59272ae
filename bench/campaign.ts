/**
 * Campaign: one campaign to N subscribed contacts (seeded straight into the database, outside the measured window),
 * created and sent through the merchant API, measured from the send until every message was accepted by the provider
 * and its delivery report settled. While the audience is being materialised (60 s at most), order webhooks arrive at
 * a steady rate: the latency of an order confirmation during a campaign. Also reported: peak Redis `used_memory` and
 * the service's peak RSS, which must not grow with the audience. Beside it, the raw BullMQ reference: no-op jobs on
 * one queue, added with addBulk and processed with the delivery worker's concurrency.
 */
import { Queue } from 'bullmq';
import { orderWebhook } from '../test/faults/lib/workload.js';
import { benchId, deleteKeys, percentiles, SINGLE, waitFor, type BenchContext, type PathResult } from './lib.js';
import { perMessage, startMeter } from './meter.js';
import { startRaw } from './processes.js';
import { withService } from './service.js';

export interface CampaignOptions {
  sizes: number[];
  /** Order webhooks per second while the largest campaign's audience is materialised; 0 for none. */
  orderRate: number;
}

const DEADLINE_MS = 3_600_000;
/** An hour, or 20 ms a recipient for a larger campaign (a million: 5.5 h). */
const deadlineFor = (size: number) => Math.max(DEADLINE_MS, size * 20);
const RAW_MAX_JOBS = 100_000;

async function runOne(ctx: BenchContext, size: number, orderRate: number): Promise<Omit<PathResult, 'reference'>> {
  return withService(ctx, {}, async (run) => {
    const shop = `bench-campaign-${run.id}.myshopify.com`;
    const orderShop = `bench-campaign-orders-${run.id}.myshopify.com`;
    const {
      rows: [s],
    } = await run.db.query(`INSERT INTO shops (domain, country_code, settings) VALUES ($1, 'CH', '{"quietHours":{"enabled":false},"frequencyCap":null}') RETURNING id`, [shop]);
    await run.db.query(
      `INSERT INTO contacts (shop_id, phone, first_name, country_code, sms_consent, tags)
       SELECT $1::bigint, '+4179' || lpad(g::text, 7, '0'), 'Fan' || g, 'CH', 'subscribed', ARRAY['fan'] FROM generate_series(1, $2::int) g`,
      [s.id, size],
    );
    await run.db.query('ANALYZE contacts');
    const campaign = await run.merchant(shop, 'POST', '/api/campaigns', {
      name: `bench ${size}`,
      body: 'Hi {{ customer.firstName }}! 20% off today with {{ discountCode }}: {{ link }}',
      discountCode: 'BENCH20',
      linkUrl: 'https://shop.example/sale',
      filter: { tags: { any: ['fan'] } },
    });

    // The sandbox keeps every message it accepted in memory; a large campaign needs its counts only.
    const trim = setInterval(() => void fetch(`${run.sandbox.url}/__sandbox/messages`, { method: 'DELETE' }).catch(() => undefined), 10_000);
    const meter = await run.meter();
    let orders = 0;
    try {
      await run.merchant(shop, 'POST', `/api/campaigns/${campaign.id}/send`);
      if (orderRate > 0) {
        const until = Date.now() + 60_000;
        while (Date.now() < until) {
          const {
            rows: [c],
          } = await run.db.query('SELECT status, materialized_at FROM campaigns WHERE id = $1', [campaign.id]);
          if (c.status !== 'sending' || c.materialized_at) break;
          const { body, headers } = orderWebhook(2_000_000 + orders, orderShop);
          const res = await fetch(`${run.service.url}/webhooks/shopify`, { method: 'POST', headers, body: new Uint8Array(body) });
          if (!res.ok) throw new Error(`order webhook during the campaign: ${res.status}`);
          orders++;
          await new Promise((r) => setTimeout(r, 1000 / orderRate));
        }
      }
      // The campaign's progress as the merchant reads it (its counters: one statement, whatever the size — a count
      // over a million messages every poll would load the machine being measured); the orders' messages are few.
      let state = { status: '', sent: 0, settled: 0 };
      const deadline = deadlineFor(size);
      await waitFor(
        () => `campaign benchmark: ${size} recipients: status ${state.status}, ${state.sent} sent, ${state.settled} settled after ${deadline} ms`,
        async () => {
          const p = await run.merchant(shop, 'GET', `/api/campaigns/${campaign.id}/progress`);
          const { rows } = await run.db.query(
            `SELECT count(*) FILTER (WHERE sent_at IS NOT NULL)::int AS sent,
                    count(*) FILTER (WHERE delivered_at IS NOT NULL OR status IN ('delivered', 'failed'))::int AS settled
               FROM messages WHERE shop_id = (SELECT id FROM shops WHERE domain = $1)`,
            [orderShop],
          );
          state = { status: p.status, sent: p.sent + p.failed + rows[0].sent, settled: p.delivered + p.failed + rows[0].settled };
          return state.status === 'sent' && state.sent >= size + orders && state.settled >= size + orders;
        },
        deadline,
        1000,
      );
    } finally {
      clearInterval(trim);
    }
    const cost = await meter.stop();
    const {
      rows: [r],
    } = await run.db.query(
      `SELECT count(*) FILTER (WHERE sent_at IS NOT NULL)::int AS sent,
              extract(epoch FROM max(sent_at) - (SELECT started_at FROM campaigns WHERE id = $1)) AS secs
         FROM messages WHERE campaign_id = $2`,
      [campaign.id, String(campaign.id)],
    );
    if (r.sent !== size) throw new Error(`campaign benchmark: ${r.sent} of ${size} sent`);
    const { rows: lat } = await run.db.query(
      `SELECT extract(epoch FROM m.sent_at - e.received_at) * 1000 AS ms FROM messages m
         JOIN shops s ON s.id = m.shop_id JOIN events e ON e.shop_domain = s.domain AND e.request_id = m.request_id
        WHERE s.domain = $1 AND m.sent_at IS NOT NULL`,
      [orderShop],
    );
    const stats = (await (await fetch(`${run.sandbox.url}/__sandbox/stats`)).json()) as { accepted: number };
    const seconds = Number(r.secs);
    const mb = (b: number) => Math.round((b / 1_048_576) * 10) / 10;
    return {
      path: 'campaign',
      label: `one campaign to ${size.toLocaleString('en-US')} subscribed contacts${orders ? ` (${orders} order confirmations at ${orderRate}/s while its audience is read)` : ''}`,
      count: size + orders,
      unit: 'messages',
      throughput: size / seconds,
      seconds,
      latency: orders ? { ordersDuringCampaign: percentiles(lat.map((x) => Number(x.ms))) } : ({} as Record<string, never>),
      cost,
      per: perMessage(cost, size + orders),
      checks: { recipients: size, campaignSent: r.sent, orders, ordersSent: lat.length, acceptedByProvider: stats.accepted, duplicatesAtProvider: stats.accepted - size - orders },
      extra: { 'peak Redis used_memory, MB': mb(cost.peakRedisBytes), 'Redis used_memory before the send, MB': mb(cost.baseRedisBytes), 'peak service RSS, MB': mb(cost.peakRssBytes) },
    };
  });
}

/** Raw BullMQ: `n` no-op jobs added to one queue with addBulk, then processed; cost of both, rate of the processing. */
async function rawSingle(ctx: BenchContext, n: number): Promise<NonNullable<PathResult['reference']>> {
  const prefix = `smsblossom-bench:${benchId()}`;
  const raw = await startRaw('single', { REDIS_URL: ctx.redisUrl, REDIS_PREFIX: prefix });
  const queue = new Queue(SINGLE, { connection: ctx.redis, prefix });
  try {
    const meter = await startMeter({ processes: { raw: raw.pid }, rssOf: raw.pid, redis: ctx.redis });
    // The newest completed job is kept: its finishedOn is when the last job was done.
    const opts = { removeOnComplete: { count: 1 } };
    for (let i = 0; i < n; i += 5000) {
      await queue.addBulk(Array.from({ length: Math.min(5000, n - i) }, (_, k) => ({ name: 'noop', data: { i: i + k }, opts })));
    }
    const t0 = Date.now();
    raw.go();
    await waitFor(
      () => `raw BullMQ: ${n} no-op jobs not processed in ${DEADLINE_MS} ms`,
      async () => {
        const c = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized');
        return Object.values(c).every((v) => v === 0);
      },
      DEADLINE_MS,
      50,
    );
    const cost = await meter.stop();
    const [last] = await queue.getCompleted(0, 0);
    const seconds = ((last?.finishedOn ?? Date.now()) - t0) / 1000;
    return { label: 'raw BullMQ: no-op jobs on one queue', count: n, throughput: n / seconds, cost, per: perMessage(cost, n) };
  } finally {
    await raw.stop();
    await queue.close();
    await deleteKeys(ctx.redis, prefix);
  }
}

export async function benchCampaign(ctx: BenchContext, o: CampaignOptions): Promise<PathResult[]> {
  const largest = Math.max(...o.sizes);
  const reference = await rawSingle(ctx, Math.min(largest, RAW_MAX_JOBS));
  const results: PathResult[] = [];
  for (const size of o.sizes) results.push({ ...(await runOne(ctx, size, size === largest ? o.orderRate : 0)), reference });
  return results;
}
