/**
 * The "several processes, several machines" recipe, run as separate processes: two API processes, an events and
 * automations worker, two delivery and campaign workers, two housekeeping and sync workers with the schedules on, the
 * Mitto-compatible sandbox as the provider. Once on the default topology (one Redis, PostgreSQL reached directly) and
 * once on the scaled-out one (a 3-master Redis Cluster, PostgreSQL behind PgBouncer in transaction mode), the same
 * checks: signed webhooks in through both APIs and each order confirmation at the provider exactly once; a campaign of
 * a few thousand recipients, each texted once; a dead letter replayed from the operator API once its cause is fixed;
 * `/queue/health`, `/queue/metrics` and the dashboard's API answering from an API process; the housekeeping schedulers
 * existing once although two processes register them.
 *
 *   npm run test:scale-out        (CI installs pgbouncer; redis-server comes with Redis)
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HOUSEKEEPING_TASKS } from '../../src/queue/queues.js';
import { getRedisConnection, type RedisClient } from '../../src/queue/redis.js';
import type { SandboxMessage } from '../../src/sandbox/server.js';
import { countAtProvider, orderMessageRefs, orderWebhook, sendLikeShopify } from '../faults/lib/workload.js';
import { merchantHeaders } from '../helpers/merchant.js';
import { inspectDatabase, seedCampaignShop, startRecipe, TOPOLOGIES, uniqueShopDomain, type Recipe, type Topology } from '../helpers/recipe.js';
import { run } from '../helpers/spawn.js';
import { ADMIN_TOKEN } from '../helpers/system.js';

const ORDERS = 60;
const CAMPAIGN_RECIPIENTS = 2_000;
const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };

describe.each(TOPOLOGIES)('the pipeline as separate processes, on %s', (_label, build) => {
  let topology: Topology;
  let recipe: Recipe;
  let db: pg.Pool;
  let redis: RedisClient;
  let apis: string[];

  const queue = (name: string) => new Queue(name, { connection: redis, prefix: topology.prefix });
  const atProvider = () => recipe.sandbox.messages();

  beforeAll(async () => {
    topology = await build();
    recipe = await startRecipe(topology, { apis: 2, deliveryWorkers: 2, housekeepingWorkers: 2 });
    apis = recipe.apis;
    db = inspectDatabase(topology);
    redis = getRedisConnection(topology.redis, 'worker');
  }, 240_000);

  afterAll(async () => {
    await recipe?.stop();
    await redis?.quit().catch(() => redis.disconnect());
    await db?.end();
    await topology?.stop();
  }, 120_000);

  it('texts each order confirmation once, whichever API process took its webhook', { timeout: 180_000 }, async () => {
    const shop = uniqueShopDomain('orders');
    const webhooks = Array.from({ length: ORDERS }, (_, i) => orderWebhook(i, shop));
    const sent = await Promise.all([
      sendLikeShopify(apis[0]!, webhooks.filter((_, i) => i % 2 === 0), 8),
      sendLikeShopify(apis[1]!, webhooks.filter((_, i) => i % 2 === 1), 8),
    ]);
    expect(sent.flatMap((s) => s.unexpected)).toEqual([]);
    const refs = await vi.waitFor(
      async () => {
        const ids = await orderMessageRefs({ query: async (text, params) => (await db.query(text, params)).rows });
        if (ids.size < ORDERS) throw new Error(`${ids.size} of ${ORDERS} order confirmations stored`);
        const count = countAtProvider(atProvider(), ids);
        if (count.references < ORDERS) throw new Error(`${count.references} of ${ORDERS} order confirmations at the provider`);
        return ids;
      },
      { timeout: 150_000, interval: 250 },
    );
    expect(countAtProvider(atProvider(), refs)).toEqual({ accepted: ORDERS, references: ORDERS, duplicated: [] });
  });

  it(`sends a campaign to ${CAMPAIGN_RECIPIENTS} subscribers, each once, through both delivery workers`, { timeout: 240_000 }, async () => {
    const shop = uniqueShopDomain('camp');
    await seedCampaignShop(db, shop, CAMPAIGN_RECIPIENTS, '+4176');
    const merchant = async () => merchantHeaders(shop);
    const created = await fetch(`${apis[1]}/api/campaigns`, {
      method: 'POST',
      headers: { ...(await merchant()), 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Scale-out sale', body: 'Hi {{ customer.firstName }}, 20% off today', filter: { tags: { any: ['fan'] } } }),
    });
    expect(created.status, await created.clone().text()).toBe(201);
    const { id } = (await created.json()) as { id: number };
    const started = await fetch(`${apis[0]}/api/campaigns/${id}/send`, { method: 'POST', headers: await merchant() });
    expect(started.status, await started.clone().text()).toBe(202);

    await vi.waitFor(
      async () => {
        const progress = (await (await fetch(`${apis[1]}/api/campaigns/${id}/progress`, { headers: await merchant() })).json()) as { status: string; sent: number };
        if (progress.status !== 'sent') throw new Error(`campaign ${progress.status}, ${progress.sent} sent`);
      },
      { timeout: 220_000, interval: 500 },
    );
    const texts = atProvider().filter((m: SandboxMessage) => m.to.startsWith('+4176') && m.text.includes('20% off today'));
    expect(texts).toHaveLength(CAMPAIGN_RECIPIENTS);
    expect(new Set(texts.map((m) => m.to)).size).toBe(CAMPAIGN_RECIPIENTS);
    // Both delivery workers took part.
    const { rows: by } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM messages WHERE campaign_id = $1 AND status IN ('sent', 'delivered')`, [String(id)]);
    expect(Number(by[0]!.n)).toBe(CAMPAIGN_RECIPIENTS);
    const sendingPids = new Set(recipe.processes.filter((p) => p.lines.some((l) => l.msg === 'Job completed' && l.queue === 'delivery')).map((p) => p.proc.pid));
    expect(sendingPids.size).toBe(2);
  });

  it('replays a dead letter from the operator API once its cause is fixed, and the message is sent once', { timeout: 120_000 }, async () => {
    const shop = uniqueShopDomain('dlq');
    const phone = '+41799990001';
    // A plain BullMQ producer, as the specification's examples add jobs: for a shop not installed yet.
    const delivery = queue('delivery');
    await delivery.add('send', { shopId: shop, recipient: phone, template: 'Welcome back, {{ name }}', context: { name: 'Ada' }, requestId: `req_${randomUUID().slice(0, 8)}` });
    const letter = await vi.waitFor(
      async () => {
        const res = await fetch(`${apis[0]}/admin/dlq?queue=delivery&shop=${shop}`, { headers: operator });
        const items = ((await res.json()) as { items: Array<{ id: number; errorCode?: string; error?: { code?: string } }> }).items;
        if (!items.length) throw new Error('no dead letter yet');
        return items[0]!;
      },
      { timeout: 60_000, interval: 250 },
    );
    await delivery.close();
    // The fix: the shop installs and the recipient subscribes.
    const { rows } = await db.query<{ id: string }>(`INSERT INTO shops (domain, country_code) VALUES ($1, 'CH') RETURNING id`, [shop]);
    await db.query(`INSERT INTO contacts (shop_id, phone, first_name, country_code, sms_consent) VALUES ($1, $2, 'Ada', 'CH', 'subscribed')`, [rows[0]!.id, phone]);
    const replay = await fetch(`${apis[1]}/admin/dlq/${letter.id}/replay`, { method: 'POST', headers: operator });
    expect(replay.status, await replay.clone().text()).toBeLessThan(300);
    await vi.waitFor(
      () => {
        if (!atProvider().some((m) => m.to === phone)) throw new Error('not at the provider yet');
      },
      { timeout: 60_000, interval: 250 },
    );
    expect(atProvider().filter((m) => m.to === phone).map((m) => m.text)).toEqual([expect.stringContaining('Welcome back, Ada')]);
  });

  it("runs the smoke on this Redis: the seed's example jobs from a plain BullMQ producer end as expected", { timeout: 120_000 }, async () => {
    // Its own key prefix under ours (so the cluster's hash tag holds) and an in-memory database: it leaves nothing behind.
    const redisEnv = Object.fromEntries(Object.entries(topology.env).filter(([k]) => k.startsWith('REDIS_')));
    const smoke = await run(process.execPath, ['--import', 'tsx', 'scripts/enqueueSmoke.ts'], { ...redisEnv, REDIS_EMBEDDED: 'false', LOG_LEVEL: 'warn' }, 110_000);
    expect(smoke.code, smoke.stdout + smoke.stderr).toBe(0);
    expect(smoke.stdout).toContain('All jobs ended as expected');
  });

  it('answers /queue/health, /queue/metrics and the dashboard from an API process', async () => {
    const health = await fetch(`${apis[0]}/queue/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ redis: true });
    const metrics = await fetch(`${apis[1]}/queue/metrics`);
    expect(metrics.status).toBe(200);
    const body = (await metrics.json()) as { redis: boolean; queues: Record<string, unknown> | Array<{ name: string }> };
    expect(body.redis).toBe(true);
    expect(JSON.stringify(body.queues)).toContain('delivery');
    const board = await fetch(`${apis[0]}/admin/queues/api/queues?page=1`, { headers: operator });
    expect(board.status).toBe(200);
    const queues = ((await board.json()) as { queues: Array<{ name: string; counts: Record<string, number> }> }).queues;
    expect(queues.map((q) => q.name).sort()).toEqual(['automations', 'campaigns', 'delivery', 'events', 'housekeeping', 'sync']);
    expect(queues.find((q) => q.name === 'delivery')!.counts.completed).toBeGreaterThanOrEqual(ORDERS);
  });

  it('keeps one of each housekeeping scheduler although two processes register them', async () => {
    const registered = recipe.processes.filter((p) => p.lines.some((l) => l.msg === 'Housekeeping schedules registered'));
    expect(registered).toHaveLength(2);
    const housekeeping = queue('housekeeping');
    const sync = queue('sync');
    try {
      const ids = (await housekeeping.getJobSchedulers()).map((s) => s.key ?? s.id);
      expect(ids).toHaveLength(HOUSEKEEPING_TASKS.length);
      expect(new Set(ids).size).toBe(HOUSEKEEPING_TASKS.length);
      expect(await sync.getJobSchedulersCount()).toBe(1);
      // One upcoming run per scheduler, not one per registering process.
      expect(await housekeeping.getDelayedCount()).toBe(HOUSEKEEPING_TASKS.length);
    } finally {
      await housekeeping.close();
      await sync.close();
    }
  });
});
