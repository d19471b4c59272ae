/**
 * Housekeeping on real Redis and a real database (PostgreSQL and PGlite): each task's effect on real rows and its
 * idempotency, tasks enqueued by hand as the specification shows, an unknown task failing permanently, the report
 * endpoint, and the job schedulers registered once by two processes starting together.
 *
 * No delivery worker runs here: a delivery job a task enqueues stays where the task put it, to be looked at.
 */
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ensureDefaultAutomations, getAutomationByTrigger } from '../../src/db/automations.js';
import { getEvent, insertEvent } from '../../src/db/events.js';
import { recordSkip } from '../../src/db/messages.js';
import { deadLetters, messageRetries, reportRollups, shops } from '../../src/db/schema.js';
import { upsertShop } from '../../src/db/shops.js';
import { daysToRollUp, dayWindow } from '../../src/housekeeping/days.js';
import { HOUSEKEEPING_SCHEDULES, schedulerId } from '../../src/housekeeping/schedules.js';
import { HOUSEKEEPING_TASKS, type HousekeepingTask } from '../../src/housekeeping/tasks.js';
import { jobIdFrom } from '../../src/queue/queues.js';
import { waitForJobState } from '../helpers/jobs.js';
import { messageRow, seedMessage, uniqueShop } from '../helpers/messages.js';
import { ADMIN_TOKEN, DB_KINDS, deleteRedisPrefix, startTestSystem, testConfig, type TestSystem } from '../helpers/system.js';

const DAY = 24 * 3_600_000;
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

describe.each(DB_KINDS)('housekeeping on %s', (kind) => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem(kind, {
      workers: ['housekeeping'],
      env: { HOUSEKEEPING_SCHEDULES: 'false', RETRY_FAILED_MAX_PER_RUN: '2', STUCK_MESSAGE_TIMEOUT_MINUTES: '10', MESSAGE_RETENTION_DAYS: '90' },
    });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  /** Enqueues a task by hand, as the specification shows, and returns what the job returned. */
  async function runTask(task: HousekeepingTask, shopId?: string): Promise<Record<string, unknown>> {
    const jobId = await sys.queues.enqueueJob('housekeeping', 'cleanup', { task, ...(shopId ? { shopId } : {}) });
    const job = await waitForJobState(sys.queues.get('housekeeping'), jobId, 'completed');
    return job.returnvalue as Record<string, unknown>;
  }
  const setRow = (table: string, id: number, assignments: string) => sys.db.query(`UPDATE ${table} SET ${assignments} WHERE id = $1`, [id]);
  const exists = async (id: number) => (await sys.db.query(`SELECT 1 FROM messages WHERE id = $1`, [id])).length === 1;

  it('cleanup_old_messages deletes finished messages and skips past retention (per shop), keeps the rest, and is idempotent', async () => {
    const shop = uniqueShop('retention');
    const old = await seedMessage(sys.db.db, { shop });
    const oldQueued = await seedMessage(sys.db.db, { shop });
    const recent = await seedMessage(sys.db.db, { shop });
    await setRow('messages', old.message.id, `status = 'delivered', created_at = now() - interval '100 days'`);
    await setRow('messages', oldQueued.message.id, `created_at = now() - interval '100 days'`);
    await setRow('messages', recent.message.id, `status = 'delivered', created_at = now() - interval '10 days'`);
    await recordSkip(sys.db.db, { shopId: old.shop.id, contactId: old.contact.id, trigger: 'order_paid', objectId: null, reason: 'opted_out', requestId: null });
    await sys.db.query(`UPDATE message_skips SET created_at = now() - interval '100 days' WHERE shop_id = $1`, [old.shop.id]);

    // A shop that keeps messages 5 days only.
    const short = uniqueShop('short');
    const shortMsg = await seedMessage(sys.db.db, { shop: short });
    await sys.db.db.update(shops).set({ settings: { messageRetentionDays: 5 } }).where(eq(shops.id, shortMsg.shop.id));
    await setRow('messages', shortMsg.message.id, `status = 'failed', created_at = now() - interval '10 days'`);

    expect(await runTask('cleanup_old_messages', shop)).toEqual({ task: 'cleanup_old_messages', messages: 1, messageSkips: 1 });
    expect(await exists(old.message.id)).toBe(false);
    expect(await exists(oldQueued.message.id)).toBe(true); // not finished: reconcile's business, not retention's
    expect(await exists(recent.message.id)).toBe(true);
    expect(await exists(shortMsg.message.id)).toBe(true); // another shop, untouched by a per-shop run

    expect(await runTask('cleanup_old_messages', short)).toEqual({ task: 'cleanup_old_messages', messages: 1, messageSkips: 0 });
    expect(await exists(shortMsg.message.id)).toBe(false);

    expect(await runTask('cleanup_old_messages', shop)).toEqual({ task: 'cleanup_old_messages', messages: 0, messageSkips: 0 });
  });

  it('cleanup_events deletes stored webhooks (payloads) older than 30 days and nothing newer', async () => {
    const shop = uniqueShop('events');
    const add = async (ageDays: number) => {
      const webhookId = randomUUID();
      const { inserted } = await insertEvent(sys.db.db, {
        shopDomain: shop,
        topic: 'orders/paid',
        objectId: '1',
        webhookId,
        eventId: null,
        apiVersion: null,
        triggeredAt: null,
        payload: { id: 1 },
        requestId: 'req_1_a',
      });
      await sys.db.query(`UPDATE events SET received_at = now() - make_interval(days => $2), status = 'processed' WHERE id = $1`, [inserted!.id, ageDays]);
      return webhookId;
    };
    const stale = await add(31);
    const fresh = await add(29);
    // Events of shops we do not know as shop rows are still cleaned (intake stores events before any shop exists).
    await sys.db.query(`INSERT INTO shops (domain) VALUES ($1) ON CONFLICT DO NOTHING`, [shop]);

    expect(await runTask('cleanup_events', shop)).toEqual({ task: 'cleanup_events', events: 1 });
    expect(await getEvent(sys.db.db, shop, stale)).toBeUndefined();
    expect(await getEvent(sys.db.db, shop, fresh)).toBeDefined();
    expect(await runTask('cleanup_events', shop)).toEqual({ task: 'cleanup_events', events: 0 });
  });

  it('retry_failed_messages re-queues transient failures of the last 24 h once each, at most N a run, never permanent ones', async () => {
    const shop = uniqueShop('retry');
    const seed = () => seedMessage(sys.db.db, { shop });
    const transient = [await seed(), await seed(), await seed()];
    const permanent = await seed();
    const unconfirmed = await seed();
    const tooOld = await seed();
    for (const [i, t] of transient.entries()) {
      await setRow('messages', t.message.id, `status = 'failed', error_code = 'HTTP_503', error_text = 'retries exhausted: HTTP 503', failed_at = now() - make_interval(mins => ${30 + i})`);
    }
    await setRow('messages', permanent.message.id, `status = 'failed', error_code = 'MITTO_INVALID_RECEIVER', error_text = 'invalid receiver', failed_at = now()`);
    await setRow('messages', unconfirmed.message.id, `status = 'failed', error_code = 'DELIVERY_UNCONFIRMED', error_text = 'no delivery report', failed_at = now()`);
    await setRow('messages', tooOld.message.id, `status = 'failed', error_code = 'HTTP_503', error_text = 'retries exhausted: HTTP 503', failed_at = now() - interval '25 hours'`);

    expect(await runTask('retry_failed_messages', shop)).toEqual({ task: 'retry_failed_messages', retried: 2, enqueueFailed: 0 });
    expect(await runTask('retry_failed_messages', shop)).toEqual({ task: 'retry_failed_messages', retried: 1, enqueueFailed: 0 });
    expect(await runTask('retry_failed_messages', shop)).toEqual({ task: 'retry_failed_messages', retried: 0, enqueueFailed: 0 });

    const delivery = sys.queues.get('delivery');
    for (const t of transient) {
      expect(await messageRow(sys.db.db, t.message.id)).toMatchObject({ status: 'queued', errorCode: null, failedAt: null });
      const job = await delivery.getJob(jobIdFrom('retry', t.message.id));
      expect(job?.data).toMatchObject({ shopId: shop, messageId: t.message.id, contactId: t.contact.id });
      expect(await job!.getState()).toBe('waiting');
    }
    for (const m of [permanent, unconfirmed, tooOld]) {
      expect((await messageRow(sys.db.db, m.message.id)).status).toBe('failed');
      expect(await delivery.getJob(jobIdFrom('retry', m.message.id))).toBeUndefined();
    }
    expect(await sys.db.db.select().from(messageRetries).where(eq(messageRetries.messageId, transient[0]!.message.id))).toHaveLength(1);

    // Retried once and failed again: never a second time.
    await setRow('messages', transient[0]!.message.id, `status = 'failed', error_code = 'HTTP_503', error_text = 'retries exhausted: HTTP 503', failed_at = now()`);
    expect(await runTask('retry_failed_messages', shop)).toEqual({ task: 'retry_failed_messages', retried: 0, enqueueFailed: 0 });
    expect((await messageRow(sys.db.db, transient[0]!.message.id)).status).toBe('failed');
  });

  it('rollup_reports counts per shop day (shop time zone), per automation and campaign; recomputing gives the same rows; the report endpoint reads them', async () => {
    const tz = 'America/New_York';
    const shop = uniqueShop('rollup');
    const first = await seedMessage(sys.db.db, { shop });
    const shopId = first.shop.id;
    await sys.db.db.update(shops).set({ timezone: tz }).where(eq(shops.id, shopId));
    await ensureDefaultAutomations(sys.db.db, shopId);
    const automation = (await getAutomationByTrigger(sys.db.db, shopId, 'order_paid'))!;
    const [yesterday, today] = daysToRollUp(new Date(), tz) as [string, string];
    const t = (day: string, hours: number) => new Date(dayWindow(day, tz).start.getTime() + hours * 3_600_000).toISOString();
    const second = await seedMessage(sys.db.db, { shop });
    const third = await seedMessage(sys.db.db, { shop });
    const campaignMsg = await seedMessage(sys.db.db, { shop });
    const late = await seedMessage(sys.db.db, { shop }); // sent at 23:59 local yesterday: yesterday, not today (in UTC it is today)
    const auto = `automation_id = ${automation.id}`;
    await setRow('messages', first.message.id, `${auto}, status = 'delivered', sent_at = '${t(today, 1)}', delivered_at = '${t(today, 1.01)}', segments = 2, cost_estimate = 0.06`);
    await setRow('messages', second.message.id, `${auto}, status = 'failed', sent_at = '${t(today, 2)}', failed_at = '${t(today, 2.5)}', segments = 1, cost_estimate = 0.03`);
    await setRow('messages', third.message.id, `${auto}, status = 'queued'`);
    await setRow('messages', campaignMsg.message.id, `campaign_id = 'camp-1', status = 'delivered', created_at = '${t(yesterday, 9)}', sent_at = '${t(yesterday, 10)}', delivered_at = '${t(yesterday, 10.1)}', segments = 3, cost_estimate = 0.09`);
    await setRow('messages', late.message.id, `${auto}, status = 'sent', created_at = '${t(yesterday, 23.9)}', sent_at = '${t(yesterday, 23.98)}', segments = 1, cost_estimate = 0.03`);
    const skip = (reason: string, o: { automationId?: number; campaignId?: string }) =>
      recordSkip(sys.db.db, { shopId, contactId: first.contact.id, trigger: 'order_paid', objectId: null, reason, requestId: null, ...o });
    await skip('frequency_capped', { automationId: automation.id });
    await skip('frequency_capped', { automationId: automation.id });
    await skip('opted_out', { automationId: automation.id });
    await skip('not_subscribed', { campaignId: 'camp-1' });
    await sys.db.query(`UPDATE message_skips SET created_at = $2 WHERE shop_id = $1`, [shopId, t(today, 3)]);

    expect(await runTask('rollup_reports', shop)).toEqual({ task: 'rollup_reports', shops: 1, days: 2, rows: 4 });
    const stored = async () =>
      (await sys.db.db.select().from(reportRollups).where(eq(reportRollups.shopId, shopId)))
        .map(({ id: _id, computedAt: _c, ...r }) => r)
        .sort((a, b) => `${a.day}${a.dimension}`.localeCompare(`${b.day}${b.dimension}`));
    const rows = await stored();
    const zero = { sent: 0, delivered: 0, failed: 0, skipped: 0, skippedByReason: {}, parts: 0, cost: '0.0000' };
    expect(rows).toEqual([
      { shopId, day: yesterday, dimension: 'automation', dimensionId: String(automation.id), ...zero, sent: 1, parts: 1, cost: '0.0300' },
      { shopId, day: yesterday, dimension: 'campaign', dimensionId: 'camp-1', ...zero, sent: 1, delivered: 1, parts: 3, cost: '0.0900' },
      {
        shopId,
        day: today,
        dimension: 'automation',
        dimensionId: String(automation.id),
        sent: 2,
        delivered: 1,
        failed: 1,
        skipped: 3,
        skippedByReason: { frequency_capped: 2, opted_out: 1 },
        parts: 3,
        cost: '0.0900',
      },
      { shopId, day: today, dimension: 'campaign', dimensionId: 'camp-1', ...zero, skipped: 1, skippedByReason: { not_subscribed: 1 } },
    ]);
    expect(await runTask('rollup_reports', shop)).toEqual({ task: 'rollup_reports', shops: 1, days: 2, rows: 4 });
    expect(await stored()).toEqual(rows);

    const res = await sys.app!.inject({ method: 'GET', url: `/admin/reports?shop=${shop}&from=${yesterday}&to=${today}`, headers: auth });
    expect(res.statusCode).toBe(200);
    const report = res.json();
    expect(report).toMatchObject({
      shop,
      timezone: tz,
      from: yesterday,
      to: today,
      totals: { sent: 4, delivered: 2, failed: 1, skipped: 4, parts: 7, cost: '0.2100', deliveryRate: 0.5 },
      automations: [
        { automationId: automation.id, trigger: 'order_paid', sent: 3, delivered: 1, failed: 1, skipped: 3, parts: 4, cost: '0.1200', deliveryRate: 0.3333 },
      ],
      campaigns: [{ campaignId: 'camp-1', sent: 1, delivered: 1, skipped: 1, skippedByReason: { not_subscribed: 1 }, cost: '0.0900', deliveryRate: 1 }],
      days: [
        { day: yesterday, sent: 2, delivered: 1 },
        { day: today, sent: 2, delivered: 1, failed: 1 },
      ],
    });
    const bad = async (url: string, status: number, code: string, headers: Record<string, string> = auth) => {
      const r = await sys.app!.inject({ method: 'GET', url, headers });
      expect(r.statusCode, url).toBe(status);
      expect(r.json().error.code).toBe(code);
    };
    await bad(`/admin/reports?shop=${shop}&from=${today}&to=${today}`, 401, 'UNAUTHORIZED', {});
    await bad(`/admin/reports?shop=${shop}&from=${today}&to=${yesterday}`, 400, 'VALIDATION_FAILED');
    await bad(`/admin/reports?shop=${shop}&from=2025-02-30&to=${today}`, 400, 'VALIDATION_FAILED');
    await bad(`/admin/reports?shop=nobody.myshopify.com&from=${today}&to=${today}`, 404, 'NOT_FOUND');
  });

  it('reconcile re-queues stuck queued messages, fails stuck sends as unconfirmed, queues stored webhooks never queued; then has nothing to do', async () => {
    const shop = uniqueShop('reconcile');
    const stuck = await seedMessage(sys.db.db, { shop });
    const owned = await seedMessage(sys.db.db, { shop });
    const sending = await seedMessage(sys.db.db, { shop });
    const fresh = await seedMessage(sys.db.db, { shop });
    await setRow('messages', stuck.message.id, `updated_at = now() - interval '1 hour'`);
    await setRow('messages', owned.message.id, `updated_at = now() - interval '1 hour'`);
    await setRow('messages', sending.message.id, `status = 'sending', sending_at = now() - interval '1 hour', updated_at = now() - interval '1 hour'`);
    // `owned` still has its delivery job waiting: not stuck, only slow.
    await sys.queues.enqueueJob('delivery', 'send', { shopId: shop, messageId: owned.message.id }, { jobId: jobIdFrom('msg', owned.message.id) });
    const webhookId = randomUUID();
    const { inserted } = await insertEvent(sys.db.db, {
      shopDomain: shop,
      topic: 'customers/update',
      objectId: '7',
      webhookId,
      eventId: null,
      apiVersion: null,
      triggeredAt: null,
      payload: { id: 7 },
      requestId: 'req_1_b',
    });
    await sys.db.query(`UPDATE events SET received_at = now() - interval '1 hour' WHERE id = $1`, [inserted!.id]);

    expect(await runTask('reconcile', shop)).toEqual({ task: 'reconcile', requeued: 1, unconfirmed: 1, eventsQueued: 1, eventsRequeued: 0 });
    const delivery = sys.queues.get('delivery');
    expect((await delivery.getJob(jobIdFrom('rec', stuck.message.id)))?.data).toMatchObject({ shopId: shop, messageId: stuck.message.id });
    expect(await delivery.getJob(jobIdFrom('rec', owned.message.id))).toBeUndefined();
    expect(await delivery.getJob(jobIdFrom('rec', fresh.message.id))).toBeUndefined();
    expect(await messageRow(sys.db.db, sending.message.id)).toMatchObject({ status: 'failed', errorCode: 'DELIVERY_UNCONFIRMED' });
    expect(await messageRow(sys.db.db, fresh.message.id)).toMatchObject({ status: 'queued' });
    const eventJob = await sys.queues.get('events').getJob(jobIdFrom('wh', shop, webhookId));
    expect(eventJob?.data).toMatchObject({ topic: 'customers/update', shopId: shop, webhookId, storedEventId: inserted!.id });
    expect(eventJob?.data).not.toHaveProperty('raw');
    // Still `received` until the events worker is done with it; the job under its id keeps the next sweep off it.
    expect((await getEvent(sys.db.db, shop, webhookId))?.status).toBe('received');

    expect(await runTask('reconcile', shop)).toEqual({ task: 'reconcile', requeued: 0, unconfirmed: 0, eventsQueued: 0, eventsRequeued: 0 });
  });

  it('reconcile queues again a webhook whose job was lost with Redis, but not one a job still holds or one in the dead letters', async () => {
    const shop = uniqueShop('lostjob');
    await upsertShop(sys.db.db, shop);
    const stored = async (objectId: string) => {
      const webhookId = randomUUID();
      const { inserted } = await insertEvent(sys.db.db, {
        shopDomain: shop,
        topic: 'customers/update',
        objectId,
        webhookId,
        eventId: null,
        apiVersion: null,
        triggeredAt: null,
        payload: { id: Number(objectId) },
        requestId: `req_1_${objectId}`,
      });
      // Handed to the queue an hour ago and never finished.
      await sys.db.query(`UPDATE events SET status = 'queued', received_at = now() - interval '1 hour' WHERE id = $1`, [inserted!.id]);
      return { webhookId, id: inserted!.id, jobId: jobIdFrom('wh', shop, webhookId) };
    };
    const lost = await stored('11');
    const held = await stored('12');
    const dead = await stored('13');
    const events = sys.queues.get('events');
    // A job still waiting for it (a backlog, not a loss).
    await events.add('customers/update', { topic: 'customers/update', shopId: shop, storedEventId: held.id, webhookId: held.webhookId, requestId: 'req_1_12', enqueuedAt: new Date().toISOString() }, { jobId: held.jobId, delay: 3_600_000 });
    // Failed for good and recorded: the operator replays it, the sweep does not.
    await sys.db.query(
      `INSERT INTO dead_letters (queue, job_name, job_id, job_created_at, data, error_message, attempts_made, max_attempts, shop_id)
       VALUES ('events', 'customers/update', $1, now(), $2::jsonb, 'boom', 5, 5, $3)`,
      [dead.jobId, JSON.stringify({ webhookId: dead.webhookId, shopId: shop }), shop],
    );

    expect(await runTask('reconcile', shop)).toEqual({ task: 'reconcile', requeued: 0, unconfirmed: 0, eventsQueued: 0, eventsRequeued: 1 });
    expect((await events.getJob(lost.jobId))?.data).toMatchObject({ topic: 'customers/update', shopId: shop, webhookId: lost.webhookId, storedEventId: lost.id });
    expect(await events.getJobState(dead.jobId)).toBe('unknown');
    expect(await events.getJobState(held.jobId)).toBe('delayed');
    // Queued again once: its job now holds it.
    expect(await runTask('reconcile', shop)).toEqual({ task: 'reconcile', requeued: 0, unconfirmed: 0, eventsQueued: 0, eventsRequeued: 0 });
  });

  it('an unknown task fails at once, permanently, with a clear code in the dead letters', async () => {
    // The catalog refuses it at enqueue; added by a plain BullMQ producer, the worker refuses it on the first attempt.
    await expect(sys.queues.enqueueJob('housekeeping', 'cleanup', { task: 'drop_everything' as HousekeepingTask })).rejects.toMatchObject({
      code: 'UNKNOWN_HOUSEKEEPING_TASK',
    });
    const jobId = (await sys.queues.get('housekeeping').add('cleanup', { task: 'drop_everything', requestId: 'req_unknown_task' })).id!;
    const job = await waitForJobState(sys.queues.get('housekeeping'), jobId, 'failed');
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(/UNKNOWN_HOUSEKEEPING_TASK/);
    const rows = await vi.waitFor(async () => {
      const r = await sys.db.db.select().from(deadLetters).where(eq(deadLetters.jobId, jobId));
      if (!r.length) throw new Error('no dead letter yet');
      return r;
    });
    expect(rows[0]).toMatchObject({ queue: 'housekeeping', errorCode: 'UNKNOWN_HOUSEKEEPING_TASK', attemptsMade: 1 });
  });

  it('a task for a shop we do not know does nothing', async () => {
    expect(await runTask('rollup_reports', 'nobody-here.myshopify.com')).toEqual({ task: 'rollup_reports', shop: 'nobody-here.myshopify.com', skipped: 'unknown_shop' });
  });
});

describe('housekeeping schedules', () => {
  it('two processes starting together on one prefix register one scheduler per task', async () => {
    const base = testConfig('pglite', { HOUSEKEEPING_SCHEDULES: 'true' });
    const systems = await Promise.all([
      startTestSystem('pglite', { workers: ['housekeeping'], config: base }),
      startTestSystem('pglite', { workers: ['housekeeping'], config: testConfig('pglite', { HOUSEKEEPING_SCHEDULES: 'true', REDIS_PREFIX: base.redis.prefix }) }),
    ]);
    try {
      const queue = systems[0].queues.get('housekeeping');
      const schedulers = await queue.getJobSchedulers(0, -1, true);
      expect(schedulers.map((s) => s.key).sort()).toEqual(HOUSEKEEPING_TASKS.map(schedulerId).sort());
      for (const s of schedulers) {
        const task = s.key.replace(/^housekeeping-/, '') as keyof typeof HOUSEKEEPING_SCHEDULES;
        expect(s.pattern).toBe(HOUSEKEEPING_SCHEDULES[task]);
      }
      expect(await queue.getJobSchedulersCount()).toBe(HOUSEKEEPING_TASKS.length);
      // One next run per scheduler, not one per process.
      expect(await queue.getDelayedCount()).toBe(HOUSEKEEPING_TASKS.length);
      const delayed = await queue.getDelayed();
      expect(new Set(delayed.map((j) => j.data.task))).toEqual(new Set(HOUSEKEEPING_TASKS));

      // Starting again (a restart) changes nothing; turning schedules off removes them.
      const again = await startTestSystem('pglite', { workers: ['housekeeping'], config: testConfig('pglite', { HOUSEKEEPING_SCHEDULES: 'true', REDIS_PREFIX: base.redis.prefix }) });
      expect(await queue.getJobSchedulersCount()).toBe(HOUSEKEEPING_TASKS.length);
      await again.teardown();
      const off = await startTestSystem('pglite', { workers: ['housekeeping'], config: testConfig('pglite', { HOUSEKEEPING_SCHEDULES: 'false', REDIS_PREFIX: base.redis.prefix }) });
      expect(await queue.getJobSchedulersCount()).toBe(0);
      await off.stop();
    } finally {
      await Promise.all(systems.map((s) => s.stop()));
      await deleteRedisPrefix(base.redis.prefix);
    }
  });
});
