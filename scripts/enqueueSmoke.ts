/**
 * The specification's smoke test: enqueue its usage examples for every queue that has a processor, wait until each
 * job has finished, print a summary per queue, exit non-zero if anything failed or timed out.
 *
 *   npm run smoke
 *
 * Starts workers in this process (jobs may equally be taken by workers already running elsewhere on the same Redis).
 */
import { pathToFileURL } from 'node:url';
import { QueueEvents } from 'bullmq';
import { loadConfigOrExit, withOverrides, type Config } from '../src/config.js';
import { signWebhook } from '../src/shopify/hmac.js';
import { createLogger } from '../src/logger.js';
import { newRequestId, type EnqueueData, type QueueName } from '../src/queue/queues.js';
import { getRedisConnection } from '../src/queue/redis.js';
import { PROCESSORS } from '../src/queue/worker.js';
import { startSystem, type System } from '../src/system.js';

type Example = { [Q in QueueName]: { queue: Q; name: string; data: EnqueueData<Q> } }[QueueName];

function examples(): Example[] {
  const stamp = Date.now();
  const list: Example[] = [
    {
      queue: 'events',
      name: 'orders/paid',
      data: {
        topic: 'orders/paid',
        shopId: 'shop.myshopify.com',
        objectId: 'gid://shopify/Order/123456789',
        raw: {
          id: 123456789,
          admin_graphql_api_id: 'gid://shopify/Order/123456789',
          name: `#S${stamp}`,
          order_number: 1001,
          total_price: '49.00',
          currency: 'EUR',
          financial_status: 'paid',
          customer: {
            id: 987654321,
            first_name: 'Smoke',
            last_name: 'Test',
            phone: '+49 1512 3456789',
            sms_marketing_consent: { state: 'subscribed', opt_in_level: 'single_opt_in', consent_updated_at: new Date(stamp).toISOString() },
          },
          shipping_address: { country_code: 'DE' },
        },
        requestId: 'req_smoke_events',
      },
    },
    {
      queue: 'campaigns',
      name: 'batch',
      data: { campaignId: 'campaign-123', shopId: 'shop.myshopify.com', batchSize: 100, requestId: 'req_456' },
    },
    {
      queue: 'housekeeping',
      name: 'cleanup',
      data: { task: 'cleanup_old_messages', shopId: 'shop.myshopify.com', requestId: 'req_789' },
    },
  ];
  return list;
}

/**
 * A signed `orders/paid` webhook for a subscribed customer, through HTTP, the three queues and the provider, until the
 * message is `delivered` by the provider's delivery report.
 */
async function orderPaidEndToEnd(system: System, timeoutMs: number): Promise<string> {
  const stamp = Date.now();
  const shop = `smoke-${stamp}.myshopify.com`;
  const order = {
    id: stamp,
    name: `#${stamp % 100000}`,
    total_price: '49.00',
    currency: 'EUR',
    financial_status: 'paid',
    customer: {
      id: stamp + 1,
      first_name: 'Smoke',
      phone: '+49 1512 3456789',
      sms_marketing_consent: { state: 'subscribed', opt_in_level: 'single_opt_in', consent_updated_at: new Date(stamp).toISOString() },
    },
    shipping_address: { country_code: 'DE' },
  };
  const body = JSON.stringify(order);
  const res = await fetch(`${system.url}/webhooks/shopify/orders/paid`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-shopify-hmac-sha256': signWebhook(body, system.config.shopify.apiSecret),
      'x-shopify-shop-domain': shop,
      'x-shopify-webhook-id': `smoke-${stamp}`,
      'x-request-id': `req_smoke_${stamp}`,
    },
    body,
  });
  if (res.status !== 200) return `FAILED: webhook answered ${res.status}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await system.db.query<{ id: number; status: string; request_id: string }>(
      `SELECT m.id, m.status, m.request_id FROM messages m JOIN shops s ON s.id = m.shop_id WHERE s.domain = $1`,
      [shop],
    );
    const m = rows[0];
    if (m?.status === 'delivered') return `delivered: message ${m.id}, request ${m.request_id}`;
    if (m && ['failed', 'skipped', 'cancelled'].includes(m.status)) return `FAILED: message ${m.id} ended ${m.status}`;
    if (Date.now() > deadline) return `FAILED: no delivered message after ${timeoutMs} ms (${m ? m.status : 'none'})`;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function runSmoke(config: Config, timeoutMs = 30_000): Promise<number> {
  const logger = createLogger({ level: 'warn' });
  const served = (Object.keys(PROCESSORS) as QueueName[]).filter((q) => config.workers.queues.includes(q));
  // The API listens on a free port so the sandbox's delivery reports can reach it.
  const system = await startSystem({ config: withOverrides(config, { http: { port: 0, host: '127.0.0.1' } }), api: true, workers: served, logger });
  const rows: Array<{ queue: string; job: string; result: string; ms: number }> = [];
  let failures = 0;
  const eventsByQueue = new Map<QueueName, QueueEvents>();
  try {
    for (const ex of examples()) {
      if (!served.includes(ex.queue)) {
        rows.push({ queue: ex.queue, job: ex.name, result: 'skipped (no processor yet)', ms: 0 });
        continue;
      }
      let qe = eventsByQueue.get(ex.queue);
      if (!qe) {
        qe = new QueueEvents(ex.queue, { connection: getRedisConnection({ url: system.config.redis.url }, 'worker'), prefix: system.config.redis.prefix });
        await qe.waitUntilReady();
        eventsByQueue.set(ex.queue, qe);
      }
      const started = Date.now();
      const jobId = await system.queues.enqueueJob(ex.queue, ex.name, { ...ex.data, requestId: ex.data.requestId ?? newRequestId() } as never, {
        jobId: `smoke-${ex.queue}-${started}`,
      });
      const job = await system.queues.get(ex.queue).getJob(jobId);
      try {
        const value = await job!.waitUntilFinished(qe, timeoutMs);
        rows.push({ queue: ex.queue, job: ex.name, result: `completed ${JSON.stringify(value)}`.slice(0, 100), ms: Date.now() - started });
      } catch (err) {
        failures++;
        rows.push({ queue: ex.queue, job: ex.name, result: `FAILED: ${(err as Error).message}`.slice(0, 100), ms: Date.now() - started });
      }
    }
    if (served.includes('events') && served.includes('automations') && served.includes('delivery')) {
      const started = Date.now();
      const result = await orderPaidEndToEnd(system, timeoutMs).catch((err: Error) => `FAILED: ${err.message}`);
      if (result.startsWith('FAILED')) failures++;
      rows.push({ queue: 'webhook→delivery', job: 'orders/paid', result, ms: Date.now() - started });
    }
  } finally {
    await Promise.allSettled([...eventsByQueue.values()].map((qe) => qe.close()));
    await system.stop();
  }
  const width = Math.max(...rows.map((r) => `${r.queue}:${r.job}`.length));
  process.stdout.write('Smoke test\n');
  for (const r of rows) process.stdout.write(`  ${`${r.queue}:${r.job}`.padEnd(width)}  ${String(r.ms).padStart(5)} ms  ${r.result}\n`);
  process.stdout.write(failures ? `${failures} job(s) failed or timed out\n` : 'All jobs finished\n');
  return failures ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runSmoke(loadConfigOrExit());
}
