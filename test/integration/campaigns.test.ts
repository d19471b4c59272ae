/**
 * Campaigns on real Redis, real databases and the bundled sandbox (a real HTTP Mitto-compatible server): end to end,
 * exactly once under a batch job run twice and a crash between a page's commit and its delivery jobs, pause / resume /
 * cancel, scheduling that survives a restart of every process, and fairness (an order confirmation is delivered while
 * a campaign's backlog is still queued; a second shop's campaign is not stalled behind the first's).
 *
 * Waits poll job state and database rows with deadlines; never fixed sleeps.
 */
import { and, eq, sql } from 'drizzle-orm';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { materializeNextPage, runCampaignBatch, type CampaignDeps } from '../../src/campaigns/batch.js';
import { createCampaign, sendCampaign, type CampaignServiceDeps } from '../../src/campaigns/service.js';
import { getCampaign } from '../../src/db/campaigns.js';
import { campaigns, messages, shops, type Shop } from '../../src/db/schema.js';
import { upsertShop } from '../../src/db/shops.js';
import { createLogger } from '../../src/logger.js';
import { createRenderer } from '../../src/messages/render.js';
import { startSystem } from '../../src/system.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, deleteRedisPrefix, dropSchema, startTestSystem, testConfig, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook } from '../helpers/webhooks.js';

const silent = createLogger({ level: 'silent' });
const PACING = { CAMPAIGN_BATCH_SIZE: '50', CAMPAIGN_MAX_BACKLOG: '100', CAMPAIGN_POLL_MS: '50', CAMPAIGN_PAUSED_RECHECK_MS: '1000' };

/** A shop with `n` contacts (ids in order), `unsubscribed` of them not subscribed; quiet hours and the cap off unless asked. */
async function seedShop(sys: TestSystem, n: number, o: { notSubscribed?: number; settings?: Record<string, unknown> } = {}): Promise<Shop> {
  const { shop } = await upsertShop(sys.db.db, uniqueShop('camp'));
  await sys.db.db
    .update(shops)
    .set({ settings: o.settings ?? { quietHours: { enabled: false }, frequencyCap: null, sender: 'Blossom' }, countryCode: 'CH' })
    .where(eq(shops.id, shop.id));
  const bad = o.notSubscribed ?? 0;
  await sys.db.query(
    `INSERT INTO contacts (shop_id, phone, first_name, country_code, sms_consent, tags)
     SELECT $1::bigint, '+4179' || lpad(g::text, 7, '0'), 'Fan' || g, 'CH',
            CASE WHEN g <= $3::int THEN 'not_subscribed' ELSE 'subscribed' END, ARRAY['fan']
       FROM generate_series(1, $2::int) AS g`,
    [shop.id, n, bad],
  );
  return (await upsertShop(sys.db.db, shop.domain)).shop;
}

function serviceDeps(sys: TestSystem): CampaignServiceDeps {
  return { database: sys.db, queues: sys.queues, logger: silent, renderer: createRenderer(), sms: sys.config.sms, pacing: sys.config.campaigns };
}

function batchDeps(sys: TestSystem, pacing: Partial<CampaignDeps['pacing']> = {}): CampaignDeps {
  return {
    database: sys.db,
    queues: sys.queues,
    logger: silent,
    renderer: createRenderer(),
    sms: sys.config.sms,
    pacing: { batchSize: 50, maxBacklog: 1_000_000, pollMs: 10, maxPagesPerRun: 1000, ...pacing },
  };
}

class Deferred extends Error {}
const deferControl = { deferUntil: async (): Promise<never> => { throw new Deferred(); } };

async function campaignRow(sys: TestSystem, id: number) {
  return (await getCampaign(sys.db.db, id))!;
}

async function waitForStatus(sys: TestSystem, id: number, status: string, timeout = 30_000) {
  return vi.waitFor(
    async () => {
      const c = await campaignRow(sys, id);
      if (c.status !== status) throw new Error(`campaign ${id} is ${c.status}, waiting for ${status}`);
      return c;
    },
    { timeout, interval: 50 },
  );
}

async function statusCounts(sys: TestSystem, id: number): Promise<Record<string, number>> {
  const rows = await sys.db.db
    .select({ status: messages.status, n: sql<number>`count(*)::int` })
    .from(messages)
    .where(eq(messages.campaignId, String(id)))
    .groupBy(messages.status);
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

async function newCampaign(sys: TestSystem, shop: Shop, body = 'Hi {{ customer.firstName }}! Code {{ discountCode }} {{ link }}') {
  return createCampaign(serviceDeps(sys), shop, { name: 'Spring sale', body, discountCode: 'SPRING20', linkUrl: 'https://shop.example/sale', filter: { tags: { any: ['fan'] } } });
}

describe.each(DB_KINDS)('campaigns on %s', (kind) => {
  let sys: TestSystem;

  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: ['campaigns', 'delivery'], listen: true, env: { SMS_PROVIDER: 'sandbox', SHOPIFY_API_KEY, ...PACING } });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  it('sends a campaign over the API: one message per consenting contact, skips recorded by reason, status sent, progress', async () => {
    const shop = await seedShop(sys, 230, { notSubscribed: 30 });
    const auth = await merchantHeaders(shop.domain, { expiresIn: 600 });
    sys.sandbox!.reset();
    const created = await sys.app!.inject({
      method: 'POST', url: '/api/campaigns', headers: auth,
      payload: { name: 'Launch', body: 'Hi {{ customer.firstName }}, use {{ discountCode }}: {{ link }}', discountCode: 'HELLO', linkUrl: 'https://shop.example/new', filter: { tags: { any: ['fan'] } } },
    });
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json().id as number;
    const estimate = await sys.app!.inject({ method: 'GET', url: `/api/campaigns/${id}/estimate`, headers: auth });
    expect(estimate.json()).toMatchObject({ matching: 230, recipients: 200 });

    const test = await sys.app!.inject({ method: 'POST', url: `/api/campaigns/${id}/test`, headers: auth, payload: { phone: '+41 79 000 00 01' } });
    expect(test.statusCode, test.body).toBe(202);
    await sys.sandbox!.waitForMessages(1, 10_000);
    expect(sys.sandbox!.messages()[0]).toMatchObject({ to: '+41790000001' });

    const sent = await sys.app!.inject({ method: 'POST', url: `/api/campaigns/${id}/send`, headers: auth });
    expect(sent.statusCode, sent.body).toBe(202);
    const again = await sys.app!.inject({ method: 'POST', url: `/api/campaigns/${id}/send`, headers: auth });
    expect(again.statusCode).toBe(409);
    expect(again.json().error.code).toBe('CAMPAIGN_STATE_CONFLICT');

    await waitForStatus(sys, id, 'sent');
    const atSandbox = sys.sandbox!.messages().slice(1);
    expect(atSandbox).toHaveLength(200);
    expect(new Set(atSandbox.map((m) => m.to)).size).toBe(200);
    expect(atSandbox[0]!.text).toContain('use HELLO: https://shop.example/new?utm_source=sms&utm_medium=sms&utm_campaign=' + id);
    expect(atSandbox[0]!.text).toMatch(/Reply STOP to unsubscribe$/);

    const progress = await sys.app!.inject({ method: 'GET', url: `/api/campaigns/${id}/progress`, headers: auth });
    expect(progress.json()).toMatchObject({ status: 'sent', total: 230, enqueued: 200, skipped: 30, skippedByReason: { not_subscribed: 30 }, queued: 0, sending: 0, failed: 0, percent: 100 });
    expect(progress.json().sent).toBe(200);
  });

  it('a batch job run twice at once, and again after the end, makes one message and one delivery job per contact', async () => {
    const shop = await seedShop(sys, 120);
    const c = await newCampaign(sys, shop);
    // Status `sending` without a running job: this test runs the batch itself (the campaigns worker gets a job too, so
    // three runs race in all).
    const started = await sendCampaign(serviceDeps(sys), shop, c.id);
    const run = () => runCampaignBatch({ campaignId: c.id, shopId: shop.domain, batchSize: 50, generation: started.generation, requestId: 'req_1_test', enqueuedAt: new Date().toISOString() }, batchDeps(sys), deferControl).catch((e) => (e instanceof Deferred ? 'deferred' : Promise.reject(e)));
    await Promise.all([run(), run()]);
    await run();
    const rows = await sys.db.db.select({ contactId: messages.contactId, key: messages.idempotencyKey }).from(messages).where(eq(messages.campaignId, String(c.id)));
    expect(rows).toHaveLength(120);
    expect(new Set(rows.map((r) => r.contactId)).size).toBe(120);
    await waitForStatus(sys, c.id, 'sent');
    // `sent` once every message is final on our side; delivery reports settle them as delivered shortly after.
    await vi.waitFor(async () => expect(await statusCounts(sys, c.id)).toEqual({ delivered: 120 }), { timeout: 10_000, interval: 50 });
  });

  it('stores a page of 5,000 recipients (past 65,535 bind parameters at 14 per row) in one statement, with each render\'s warnings', async () => {
    const shop = await seedShop(sys, 5000, { notSubscribed: 10 });
    const c = await newCampaign(sys, shop, 'Hi {{ customer.firstName }}{{ customer.nickname }}, code {{ discountCode }}');
    await sys.db.db.update(campaigns).set({ status: 'sending', startedAt: new Date(), totalRecipients: 5000 }).where(eq(campaigns.id, c.id));
    const page = await materializeNextPage(c.id, 0, shop, batchDeps(sys, { batchSize: 5000 }), 'req_big_page');
    expect(page).toMatchObject({ kind: 'page', exhausted: false });
    if (page.kind !== 'page') throw new Error('not a page');
    expect(page.created).toHaveLength(4990);
    expect(await statusCounts(sys, c.id)).toEqual({ queued: 4990, skipped: 10 });
    const [queued] = await sys.db.db
      .select({ body: messages.body, renderWarnings: messages.renderWarnings })
      .from(messages)
      .where(and(eq(messages.campaignId, String(c.id)), eq(messages.contactId, page.created.at(-1)!.contactId)));
    expect(queued).toEqual({ body: expect.stringMatching(/^Hi Fan5000, code SPRING20/), renderWarnings: ['missing variable: customer.nickname'] });
    const [skipped] = await sys.db.db
      .select({ renderWarnings: messages.renderWarnings, errorCode: messages.errorCode })
      .from(messages)
      .where(and(eq(messages.campaignId, String(c.id)), eq(messages.status, 'skipped')))
      .limit(1);
    expect(skipped).toEqual({ renderWarnings: [], errorCode: 'not_subscribed' });
  }, 120_000);

  it('resumes after a crash between a page commit and its delivery jobs: no message lost, none twice', async () => {
    const shop = await seedShop(sys, 130);
    const c = await newCampaign(sys, shop);
    await sys.db.db.update(campaigns).set({ status: 'sending', startedAt: new Date(), totalRecipients: 130 }).where(eq(campaigns.id, c.id));
    // The "crashed" run: the page is committed (cursor moved, rows queued) and the process dies before addBulk.
    const page = await materializeNextPage(c.id, 0, shop, batchDeps(sys), 'req_1_crash');
    expect(page).toMatchObject({ kind: 'page', exhausted: false });
    const crashed = await campaignRow(sys, c.id);
    expect(crashed).toMatchObject({ pendingEnqueue: true, pageStartId: 0 });
    expect(await sys.queues.get('delivery').getJobCounts('prioritized', 'waiting', 'delayed')).toEqual({ prioritized: 0, waiting: 0, delayed: 0 });

    // The job runs again (BullMQ hands a stalled job to another worker): the page's jobs are re-added, then it goes on.
    await sys.queues.enqueueJob('campaigns', 'batch', { campaignId: String(c.id), shopId: shop.domain, batchSize: 50, generation: 0 }, { jobId: `campaign-${c.id}-g0` });
    await waitForStatus(sys, c.id, 'sent');
    await vi.waitFor(async () => expect(await statusCounts(sys, c.id)).toEqual({ delivered: 130 }), { timeout: 10_000, interval: 50 });
    const refs = sys.sandbox!.messages().filter((m) => m.text.includes('SPRING20') && m.to.startsWith('+4179'));
    const ours = await sys.db.db.select({ id: messages.id }).from(messages).where(eq(messages.campaignId, String(c.id)));
    const ourIds = new Set(ours.map((m) => String(m.id)));
    const atProvider = refs.filter((m) => ourIds.has(m.reference ?? ''));
    expect(atProvider).toHaveLength(130);
    expect(new Set(atProvider.map((m) => m.reference)).size).toBe(130);
  });

  it('pauses (queued messages wait), resumes, and cancels (no new messages; sent ones stay sent)', async () => {
    const shop = await seedShop(sys, 300);
    const auth = await merchantHeaders(shop.domain, { expiresIn: 600 });
    sys.sandbox!.reset();
    sys.sandbox!.setFaults({ latencyMs: 20 });
    try {
      const c = await newCampaign(sys, shop);
      await sendCampaign(serviceDeps(sys), shop, c.id);
      await vi.waitFor(async () => expect((await statusCounts(sys, c.id)).delivered ?? 0).toBeGreaterThan(20), { timeout: 20_000, interval: 20 });
      const pause = await sys.app!.inject({ method: 'POST', url: `/api/campaigns/${c.id}/pause`, headers: auth });
      expect(pause.json().status).toBe('paused');
      // Those in flight finish; the rest wait: every delivery job of the campaign ends up delayed (held), none sending.
      // A bound only a stall breaks: on PGlite, beside the whole suite on two cores, held jobs took over 20 s to settle.
      await vi.waitFor(
        async () => {
          const counts = await statusCounts(sys, c.id);
          expect(counts.sending ?? 0).toBe(0);
          expect(await sys.queues.get('delivery').getJobCounts('active', 'waiting', 'prioritized')).toEqual({ active: 0, waiting: 0, prioritized: 0 });
        },
        { timeout: 60_000, interval: 50 },
      );
      const paused = await statusCounts(sys, c.id);
      expect(paused.queued).toBeGreaterThan(0);
      const sentWhilePaused = (paused.sent ?? 0) + (paused.delivered ?? 0);
      expect(sys.sandbox!.messages()).toHaveLength(sentWhilePaused);
      expect((await campaignRow(sys, c.id)).status).toBe('paused');

      const resume = await sys.app!.inject({ method: 'POST', url: `/api/campaigns/${c.id}/resume`, headers: auth });
      expect(resume.json().status).toBe('sending');
      await vi.waitFor(async () => expect((await statusCounts(sys, c.id)).delivered ?? 0).toBeGreaterThan(sentWhilePaused + 20), { timeout: 20_000, interval: 20 });

      const cancel = await sys.app!.inject({ method: 'POST', url: `/api/campaigns/${c.id}/cancel`, headers: auth });
      expect(cancel.json().campaign.status).toBe('cancelled');
      await vi.waitFor(
        async () => {
          const counts = await statusCounts(sys, c.id);
          expect((counts.queued ?? 0) + (counts.sending ?? 0)).toBe(0);
        },
        { timeout: 20_000, interval: 50 },
      );
      const final = await statusCounts(sys, c.id);
      const sentTotal = (final.sent ?? 0) + (final.delivered ?? 0);
      expect(final.cancelled).toBeGreaterThan(0);
      expect(sentTotal + final.cancelled!).toBeLessThanOrEqual(300);
      expect(sys.sandbox!.messages()).toHaveLength(sentTotal);
      expect(new Set(sys.sandbox!.messages().map((m) => m.reference)).size).toBe(sentTotal);
      // The cursor never reached the end: contacts after it never got a message row.
      expect(sentTotal + final.cancelled!).toBeLessThan(300);
      const again = await sys.app!.inject({ method: 'POST', url: `/api/campaigns/${c.id}/resume`, headers: auth });
      expect(again.statusCode).toBe(409);
    } finally {
      sys.sandbox!.setFaults({ latencyMs: 0 });
    }
  }, 120_000);

  it('warns when a scheduled time falls in the shop\'s quiet hours, and takes the time as the shop\'s wall clock', async () => {
    const shop = await seedShop(sys, 1, { settings: {} });
    const auth = await merchantHeaders(shop.domain, { expiresIn: 600 });
    await sys.db.db.update(shops).set({ timezone: 'America/New_York' }).where(eq(shops.id, shop.id));
    const c = await newCampaign(sys, shop);
    const local = DateTime.now().setZone('America/New_York').plus({ days: 2 }).set({ hour: 23, minute: 0, second: 0, millisecond: 0 });
    const res = await sys.app!.inject({ method: 'POST', url: `/api/campaigns/${c.id}/schedule`, headers: auth, payload: { at: local.toFormat("yyyy-MM-dd'T'HH:mm") } });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().warning).toMatch(/quiet hours.*08:00/);
    expect(new Date(res.json().campaign.scheduledAt).getTime()).toBe(local.toMillis());
    const job = await sys.queues.get('campaigns').getJob(`campaign-${c.id}-g1`);
    expect(await job!.getState()).toBe('delayed');
    const cancel = await sys.app!.inject({ method: 'POST', url: `/api/campaigns/${c.id}/cancel`, headers: auth });
    expect(cancel.statusCode).toBe(200);
    expect(await sys.queues.get('campaigns').getJob(`campaign-${c.id}-g1`)).toBeUndefined();
  });
});

describe('campaigns on postgres: scheduling across a restart, fairness', () => {
  it('a scheduled campaign starts on time from its delayed job after every process was restarted', async () => {
    const config = testConfig('postgres', { SMS_PROVIDER: 'sandbox', SHOPIFY_API_KEY, PORT: '0', HOST: '127.0.0.1', ...PACING });
    const start = (workers: Array<'campaigns' | 'delivery'>) =>
      startSystem({ config: { ...config, dataDir: 'memory://' } as typeof config, api: true, listen: true, workers, logger: silent });
    let first: Awaited<ReturnType<typeof start>> | undefined;
    let second: Awaited<ReturnType<typeof start>> | undefined;
    try {
      // First life: API only. The campaign is scheduled 2 s ahead; then the process stops.
      first = await start([]);
      const sysLike = first as unknown as TestSystem;
      const shop = await seedShop(sysLike, 40);
      const auth = await merchantHeaders(shop.domain, { expiresIn: 600 });
      const c = await newCampaign(sysLike, shop);
      const at = DateTime.now().plus({ seconds: 2 });
      const res = await first.app!.inject({ method: 'POST', url: `/api/campaigns/${c.id}/schedule`, headers: auth, payload: { at: at.toISO() } });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().campaign.status).toBe('scheduled');
      await first.stop();
      first = undefined;

      // Second life: workers only, same Redis prefix and database. The delayed job fires at its time.
      second = await start(['campaigns', 'delivery']);
      const sent = await waitForStatus(second as unknown as TestSystem, c.id, 'sent', 30_000);
      expect(sent.startedAt!.getTime()).toBeGreaterThanOrEqual(at.toMillis() - 50);
      expect(second.sandbox!.messages()).toHaveLength(40);
    } finally {
      await first?.stop();
      await second?.stop();
      await deleteRedisPrefix(config.redis.prefix);
      await dropSchema(config.database.schema);
    }
  });

  it('an order confirmation is delivered while a large campaign is sending, before its backlog drains; a second shop\'s campaign is not stalled behind the first', async () => {
    const sys = await startTestSystem('postgres', {
      workers: ['events', 'automations', 'campaigns', 'delivery'],
      listen: true,
      env: { SMS_PROVIDER: 'sandbox', CAMPAIGN_BATCH_SIZE: '250', CAMPAIGN_MAX_BACKLOG: '1000', CAMPAIGN_POLL_MS: '50', MITTO_RATE_LIMIT_PER_SEC: '400', DELIVERY_CONCURRENCY: '10' },
    });
    try {
      const big = await seedShop(sys, 3000);
      const small = await seedShop(sys, 200);
      const bigCampaign = await newCampaign(sys, big);
      const smallCampaign = await newCampaign(sys, small);
      await sendCampaign(serviceDeps(sys), big, bigCampaign.id);
      // The big campaign's window is full before the others arrive.
      await vi.waitFor(async () => expect((await statusCounts(sys, bigCampaign.id)).queued ?? 0).toBeGreaterThan(700), { timeout: 20_000, interval: 20 });
      await sendCampaign(serviceDeps(sys), small, smallCampaign.id);
      const order = fixture('orders-paid') as Record<string, any>;
      order.customer.phone = '+41 79 999 88 77';
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', shop: big.domain, body: order });
      expect(res.statusCode).toBe(200);

      const confirmation = await vi.waitFor(
        async () => {
          const [m] = await sys.db.db.select().from(messages).where(and(eq(messages.shopId, big.id), eq(messages.trigger, 'order_paid')));
          if (!m?.sentAt) throw new Error('order confirmation not sent yet');
          return m;
        },
        { timeout: 20_000, interval: 20 },
      );
      // Sent while the campaign still had a backlog: hundreds of its messages went out after it.
      const [after] = await sys.db.db
        .select({ n: sql<number>`count(*)::int` })
        .from(messages)
        .where(and(eq(messages.campaignId, String(bigCampaign.id)), sql`(${messages.status} = 'queued' OR ${messages.sentAt} > ${confirmation.sentAt!.toISOString()}::timestamptz)`));
      expect(Number(after!.n)).toBeGreaterThan(500);

      await waitForStatus(sys, smallCampaign.id, 'sent', 60_000);
      await waitForStatus(sys, bigCampaign.id, 'sent', 60_000);
      const last = async (id: number) =>
        (await sys.db.db.select({ at: sql<string>`max(${messages.sentAt})::text` }).from(messages).where(eq(messages.campaignId, String(id))))[0]!.at;
      // Round robin by bounded windows: the small shop finished well before the big one.
      expect(new Date(await last(smallCampaign.id)).getTime()).toBeLessThan(new Date(await last(bigCampaign.id)).getTime());
      const [bigAfterSmall] = await sys.db.db
        .select({ n: sql<number>`count(*)::int` })
        .from(messages)
        .where(and(eq(messages.campaignId, String(bigCampaign.id)), sql`${messages.sentAt} > ${await last(smallCampaign.id)}::timestamptz`));
      expect(Number(bigAfterSmall!.n)).toBeGreaterThan(500);
      await vi.waitFor(async () => expect(await statusCounts(sys, bigCampaign.id)).toEqual({ delivered: 3000 }), { timeout: 20_000, interval: 100 });
    } finally {
      await sys.teardown();
    }
  }, 120_000);
});
