/**
 * Webhook intake through `app.inject()` on real Redis and a real database (PostgreSQL and PGlite): signature,
 * shape and size checks, persistence, de-duplication, the `events` job, request ids, and 503 when Redis or the
 * database cannot take the event.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { count, desc, eq } from 'drizzle-orm';
import type { Job, JobType } from 'bullmq';
import type { LightMyRequestResponse } from 'fastify';
import { getEvent } from '../../src/db/events.js';
import { events } from '../../src/db/schema.js';
import { jobIdFrom } from '../../src/queue/queues.js';
import { signWebhook } from '../../src/shopify/hmac.js';
import { DB_KINDS, SHOPIFY_SECRET, startTestSystem, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook, webhookRequest } from '../helpers/webhooks.js';

const SHOP = 'blossom-demo.myshopify.com';
const ALL_STATES: JobType[] = ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed', 'waiting-children'];

function errorCode(res: LightMyRequestResponse): string | undefined {
  return (res.json() as { error?: { code?: string } }).error?.code;
}

/** Every `events` job carrying this webhook id, whatever its state. */
async function eventJobsFor(sys: TestSystem, webhookId: string): Promise<Job[]> {
  const jobs = await sys.queues.get('events').getJobs(ALL_STATES);
  return jobs.filter((j) => j?.data?.webhookId === webhookId);
}

async function eventRowCount(sys: TestSystem): Promise<number> {
  const [row] = await sys.db.db.select({ n: count() }).from(events);
  return Number(row!.n);
}

async function totalJobs(sys: TestSystem): Promise<number> {
  const counts = await sys.queues.get('events').getJobCounts(...ALL_STATES);
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

describe.each(DB_KINDS)('webhook intake on %s', (kind) => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem(kind);
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  /** Asserts a rejected request left nothing behind: no event row, no job. */
  /** A signed delivery whose body cannot be taken: one event row `failed` / `rejected` without payload, no job. */
  async function expectRecordedAsRejected(act: () => Promise<LightMyRequestResponse>): Promise<LightMyRequestResponse> {
    const [rowsBefore, jobsBefore] = [await eventRowCount(sys), await totalJobs(sys)];
    const res = await act();
    expect(await eventRowCount(sys)).toBe(rowsBefore + 1);
    expect(await totalJobs(sys)).toBe(jobsBefore);
    const [row] = await sys.db.db.select().from(events).orderBy(desc(events.id)).limit(1);
    expect(row).toMatchObject({ status: 'failed', outcome: 'rejected', payload: null });
    return res;
  }

  async function expectNothingPersisted(act: () => Promise<LightMyRequestResponse>): Promise<LightMyRequestResponse> {
    const [rowsBefore, jobsBefore] = [await eventRowCount(sys), await totalJobs(sys)];
    const res = await act();
    expect(await eventRowCount(sys)).toBe(rowsBefore);
    expect(await totalJobs(sys)).toBe(jobsBefore);
    return res;
  }

  describe('a valid signed webhook', () => {
    it('is persisted (received) and enqueued once, with the specification data shape and a job id from the webhook id', async () => {
      const webhookId = randomUUID();
      const eventId = randomUUID();
      const body = fixture('orders-paid');
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', body, webhookId, eventId });

      expect(res.statusCode).toBe(200);
      const json = res.json() as { ok: boolean; duplicate: boolean; requestId: string };
      expect(json).toEqual({ ok: true, duplicate: false, requestId: expect.any(String) });
      expect(res.headers['x-request-id']).toBe(json.requestId);

      const row = await getEvent(sys.db.db, SHOP, webhookId);
      // One statement on the request's path: the row stays `received` until the events worker is done with it.
      expect(row).toMatchObject({
        status: 'received',
        topic: 'orders/paid',
        shopDomain: SHOP,
        objectId: '5812345678901',
        eventId,
        apiVersion: '2025-07',
        requestId: json.requestId,
      });
      expect(row!.queuedAt).toBeNull();
      expect(row!.payload).toEqual(body);

      const jobs = await eventJobsFor(sys, webhookId);
      expect(jobs).toHaveLength(1);
      const job = jobs[0]!;
      expect(job.id).toBe(jobIdFrom('wh', SHOP, webhookId));
      expect(job.id).toContain(webhookId);
      expect(job.name).toBe('orders/paid');
      expect(job.data).toEqual({
        topic: 'orders/paid',
        shopId: SHOP,
        objectId: '5812345678901',
        // The stored event's id, not its payload: personal data stays in the database.
        storedEventId: row!.id,
        requestId: json.requestId,
        webhookId,
        eventId,
        triggeredAt: expect.any(String),
        enqueuedAt: expect.any(String),
      });
      expect(Date.now() - Date.parse(job.data.enqueuedAt)).toBeLessThan(60_000);
      expect(job.opts).toMatchObject({ attempts: 5, backoff: { type: 'exponential', delay: 2000 } });
    });

    it('takes the topic from the URL path, with or without X-Shopify-Topic, and rejects a mismatch', async () => {
      const withoutHeader = randomUUID();
      const res1 = await postWebhook(sys.app!, {
        topic: 'orders/paid',
        body: fixture('orders-paid'),
        webhookId: withoutHeader,
        url: '/webhooks/shopify/orders/paid',
        headers: { 'x-shopify-topic': undefined },
      });
      expect(res1.statusCode).toBe(200);
      expect((await getEvent(sys.db.db, SHOP, withoutHeader))?.topic).toBe('orders/paid');
      const [job1] = await eventJobsFor(sys, withoutHeader);
      expect(job1?.name).toBe('orders/paid');
      expect(job1?.data.topic).toBe('orders/paid');

      const withHeader = randomUUID();
      const res2 = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId: withHeader, url: '/webhooks/shopify/orders/paid' });
      expect(res2.statusCode).toBe(200);
      expect(await eventJobsFor(sys, withHeader)).toHaveLength(1);

      const res3 = await expectNothingPersisted(() =>
        postWebhook(sys.app!, { topic: 'orders/create', body: fixture('orders-paid'), url: '/webhooks/shopify/orders/paid' }),
      );
      expect(res3.statusCode).toBe(400);
      expect(errorCode(res3)).toBe('VALIDATION_FAILED');
    });

    it.each([
      ['text/plain; charset=utf-8', 'text/plain; charset=utf-8'],
      ['no content type', undefined],
    ])('takes the raw body whatever the content type says (%s)', async (_what, contentType) => {
      const webhookId = randomUUID();
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId, headers: { 'content-type': contentType } });
      expect(res.statusCode, res.body).toBe(200);
      expect(await eventJobsFor(sys, webhookId)).toHaveLength(1);
    });

    it.each([
      ['customers/redact', 'customers-redact'],
      ['customers/data_request', 'customers-data_request'],
      ['shop/redact', 'shop-redact'],
      ['app/uninstalled', 'app-uninstalled'],
    ])('accepts %s', async (topic, name) => {
      const webhookId = randomUUID();
      const res = await postWebhook(sys.app!, { topic, body: fixture(name), webhookId });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ ok: true, duplicate: false });
      // Stored, its job added, and nothing more on the request's path: the worker marks it done.
      expect((await getEvent(sys.db.db, SHOP, webhookId))?.status).toBe('received');
      const jobs = await eventJobsFor(sys, webhookId);
      expect(jobs.map((j) => j.name)).toEqual([topic]);
    });
  });

  describe('signature', () => {
    it('rejects a wrong HMAC with 401 and stores nothing', async () => {
      const good = webhookRequest({ topic: 'orders/paid', body: fixture('orders-paid') });
      const sig = good.headers['x-shopify-hmac-sha256']!;
      const flipped = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
      const res = await expectNothingPersisted(() => sys.app!.inject({ ...good, headers: { ...good.headers, 'x-shopify-hmac-sha256': flipped } }));
      expect(res.statusCode).toBe(401);
      expect(errorCode(res)).toBe('INVALID_SIGNATURE');
    });

    it('rejects a missing HMAC with 401 and stores nothing', async () => {
      const res = await expectNothingPersisted(() =>
        postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), headers: { 'x-shopify-hmac-sha256': undefined } }),
      );
      expect(res.statusCode).toBe(401);
      expect(errorCode(res)).toBe('INVALID_SIGNATURE');
    });

    it('rejects an HMAC made with another secret with 401 and stores nothing', async () => {
      const res = await expectNothingPersisted(() =>
        postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), secret: 'some-other-apps-secret' }),
      );
      expect(res.statusCode).toBe(401);
      expect(errorCode(res)).toBe('INVALID_SIGNATURE');
    });

    it('rejects a valid signature of another body (a tampered payload)', async () => {
      const original = JSON.stringify(fixture('orders-paid'));
      const tampered = original.replace('"79.43"', '"0.01"');
      expect(tampered).not.toBe(original);
      const res = await expectNothingPersisted(() =>
        postWebhook(sys.app!, { topic: 'orders/paid', body: tampered, headers: { 'x-shopify-hmac-sha256': signWebhook(original, SHOPIFY_SECRET) } }),
      );
      expect(res.statusCode).toBe(401);
    });

    it('checks the signature before anything else: an unsigned malformed body is a 401, not a 400', async () => {
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', body: '{nope', headers: { 'x-shopify-hmac-sha256': 'bm9wZQ==' } });
      expect(res.statusCode).toBe(401);
    });
  });

  describe('de-duplication', () => {
    it('answers a repeated webhook id with duplicate:true and enqueues nothing more', async () => {
      const webhookId = randomUUID();
      const first = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId });
      expect(first.json()).toMatchObject({ duplicate: false });
      const again = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId });
      expect(again.statusCode).toBe(200);
      expect(again.json()).toMatchObject({ ok: true, duplicate: true });
      expect(await eventJobsFor(sys, webhookId)).toHaveLength(1);
      const rows = await sys.db.db.select().from(events).where(eq(events.webhookId, webhookId));
      expect(rows).toHaveLength(1);
    });

    it('treats the same X-Shopify-Event-Id under another webhook id (a second subscription) as a duplicate', async () => {
      const eventId = randomUUID();
      const [a, b] = [randomUUID(), randomUUID()];
      const first = await postWebhook(sys.app!, { topic: 'customers/update', body: fixture('customers-update'), webhookId: a, eventId });
      expect(first.json()).toMatchObject({ duplicate: false });
      const second = await postWebhook(sys.app!, { topic: 'customers/update', body: fixture('customers-update'), webhookId: b, eventId });
      expect(second.statusCode).toBe(200);
      expect(second.json()).toMatchObject({ duplicate: true });
      expect(await eventJobsFor(sys, a)).toHaveLength(1);
      expect(await eventJobsFor(sys, b)).toHaveLength(0);
      const rows = await sys.db.db.select().from(events).where(eq(events.eventId, eventId));
      expect(rows.map((r) => r.webhookId)).toEqual([a]);
    });

    it('a repeat of an unfinished webhook whose job was lost (Redis restarted empty) queues it again; a repeat of a finished one does not', async () => {
      const webhookId = randomUUID();
      await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId });
      const [job] = await eventJobsFor(sys, webhookId);
      await job!.remove();
      const again = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId });
      expect(again.statusCode).toBe(200);
      expect(again.json()).toMatchObject({ ok: true, duplicate: true });
      expect((await eventJobsFor(sys, webhookId)).map((j) => j.id)).toEqual([jobIdFrom('wh', SHOP, webhookId)]);

      await sys.db.db.update(events).set({ status: 'processed' }).where(eq(events.webhookId, webhookId));
      await (await eventJobsFor(sys, webhookId))[0]!.remove();
      const late = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId });
      expect(late.json()).toMatchObject({ ok: true, duplicate: true });
      expect(await eventJobsFor(sys, webhookId)).toHaveLength(0);
    });

    it('keeps one row and one job when the same delivery arrives ten times at once', async () => {
      const webhookId = randomUUID();
      const eventId = randomUUID();
      const responses = await Promise.all(
        Array.from({ length: 10 }, () => postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId, eventId })),
      );
      expect(responses.map((r) => r.statusCode)).toEqual(Array(10).fill(200));
      expect(responses.filter((r) => (r.json() as { duplicate: boolean }).duplicate === false)).toHaveLength(1);
      expect(await eventJobsFor(sys, webhookId)).toHaveLength(1);
      expect(await sys.db.db.select().from(events).where(eq(events.webhookId, webhookId))).toHaveLength(1);
    });
  });

  describe('malformed requests', () => {
    const LIMIT = 1024 * 1024;

    /** A signed JSON object of exactly `size` bytes. */
    function bodyOfSize(size: number): Buffer {
      const head = '{"id":5812345678901,"note":"';
      const tail = '"}';
      return Buffer.from(head + 'x'.repeat(size - head.length - tail.length) + tail);
    }

    it('accepts a body of exactly 1 MiB', async () => {
      const body = bodyOfSize(LIMIT);
      expect(body.length).toBe(LIMIT);
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', body });
      expect(res.statusCode).toBe(200);
    });

    it('rejects a body over 1 MiB with 413 PAYLOAD_TOO_LARGE', async () => {
      const res = await expectNothingPersisted(() => postWebhook(sys.app!, { topic: 'orders/paid', body: bodyOfSize(LIMIT + 1) }));
      expect(res.statusCode).toBe(413);
      expect(errorCode(res)).toBe('PAYLOAD_TOO_LARGE');
      expect(res.headers['x-request-id']).toEqual(expect.any(String));
    });

    // Signed but unusable: refused for good and recorded, so an operator sees it and Shopify's retry is recognised.
    it('rejects malformed JSON with 400 INVALID_JSON', async () => {
      const res = await expectRecordedAsRejected(() => postWebhook(sys.app!, { topic: 'orders/paid', body: '{"id": 1,' }));
      expect(res.statusCode).toBe(400);
      expect(errorCode(res)).toBe('INVALID_JSON');
    });

    it('rejects bytes that are not UTF-8 with 400', async () => {
      const body = Buffer.concat([Buffer.from('{"id":1,"note":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')]);
      const res = await expectRecordedAsRejected(() => postWebhook(sys.app!, { topic: 'orders/paid', body }));
      expect(res.statusCode).toBe(400);
      expect(errorCode(res)).toBe('INVALID_JSON');
    });

    it.each([
      ['an array', '[{"id":1}]'],
      ['a string', '"orders"'],
      ['null', 'null'],
    ])('rejects a JSON body that is %s with 400', async (_what, body) => {
      const res = await expectRecordedAsRejected(() => postWebhook(sys.app!, { topic: 'orders/paid', body }));
      expect(res.statusCode).toBe(400);
      expect(errorCode(res)).toBe('INVALID_PAYLOAD');
    });

    it('rejects a missing X-Shopify-Shop-Domain with 400 MISSING_HEADER', async () => {
      const res = await expectNothingPersisted(() =>
        postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), headers: { 'x-shopify-shop-domain': undefined } }),
      );
      expect(res.statusCode).toBe(400);
      expect(errorCode(res)).toBe('MISSING_HEADER');
    });

    it.each(['not a domain', 'shop.myshopify-', '-shop.myshopify.com', 'localhost'])('rejects the shop domain %j with 400', async (shop) => {
      const res = await expectNothingPersisted(() => postWebhook(sys.app!, { topic: 'orders/paid', shop, body: fixture('orders-paid') }));
      expect(res.statusCode).toBe(400);
    });

    it('rejects a missing topic (no header, no path) with 400', async () => {
      const res = await expectNothingPersisted(() =>
        postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), headers: { 'x-shopify-topic': undefined } }),
      );
      expect(res.statusCode).toBe(400);
      expect(errorCode(res)).toBe('MISSING_HEADER');
    });

    it('rejects a topic that is not a Shopify topic with 400', async () => {
      const res = await expectNothingPersisted(() => postWebhook(sys.app!, { topic: 'Orders/Paid!', body: fixture('orders-paid') }));
      expect(res.statusCode).toBe(400);
    });

    it('answers an unknown webhook path with 404 JSON', async () => {
      const res = await expectNothingPersisted(() => postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), url: '/webhooks/shopify/orders/paid/extra' }));
      expect(res.statusCode).toBe(404);
      expect(errorCode(res)).toBe('NOT_FOUND');
    });
  });

  describe('awkward but valid payloads are accepted, not refused forever', () => {
    it('accepts a payload whose strings contain U+0000 (which PostgreSQL jsonb cannot store)', async () => {
      const webhookId = randomUUID();
      const body = JSON.stringify({ ...fixture('orders-paid'), note: 'gift\u0000wrap' });
      expect(body).toContain('\\u0000');
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', body, webhookId });
      expect(res.statusCode).toBe(200);
      const row = await getEvent(sys.db.db, SHOP, webhookId);
      expect(row?.status).toBe('received');
      expect(row?.payload?.note).toBe('gift\uFFFDwrap');
      expect(await eventJobsFor(sys, webhookId)).toHaveLength(1);
    });

    it('accepts a payload with an unpaired surrogate escape, keeping paired ones', async () => {
      const webhookId = randomUUID();
      const body = '{"id":5812345678901,"note":"bad \\ud800 half","emoji":"\\ud83c\\udf38","k\\u0000ey":1}';
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', body, webhookId });
      expect(res.statusCode).toBe(200);
      const row = await getEvent(sys.db.db, SHOP, webhookId);
      expect(row?.payload).toEqual({ id: 5812345678901, note: 'bad \uFFFD half', emoji: '\u{1F338}', 'k\uFFFDey': 1 });
    });

    it('accepts an object id longer than a job field allows', async () => {
      const webhookId = randomUUID();
      const res = await postWebhook(sys.app!, { topic: 'checkouts/update', body: { token: 't'.repeat(400) }, webhookId });
      expect(res.statusCode).toBe(200);
      expect(await eventJobsFor(sys, webhookId)).toHaveLength(1);
    });
  });

  describe('request id', () => {
    it('echoes a given X-Request-Id in the response and carries it into the job', async () => {
      const webhookId = randomUUID();
      const requestId = `shopify-retry-${randomUUID()}`;
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId, headers: { 'x-request-id': requestId } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-request-id']).toBe(requestId);
      expect(res.json()).toMatchObject({ requestId });
      const [job] = await eventJobsFor(sys, webhookId);
      expect(job?.data.requestId).toBe(requestId);
      expect((await getEvent(sys.db.db, SHOP, webhookId))?.requestId).toBe(requestId);
    });

    it('generates req_<ms>_<hex> when none is given, and echoes it', async () => {
      const webhookId = randomUUID();
      const before = Date.now();
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId });
      const requestId = res.headers['x-request-id'] as string;
      const match = /^req_(\d{13})_[0-9a-f]{8}$/.exec(requestId);
      expect(match, requestId).not.toBeNull();
      expect(Number(match![1])).toBeGreaterThanOrEqual(before);
      expect(Number(match![1])).toBeLessThanOrEqual(Date.now());
      expect(res.json()).toMatchObject({ requestId });
      const [job] = await eventJobsFor(sys, webhookId);
      expect(job?.data.requestId).toBe(requestId);
    });

    it('replaces an X-Request-Id that is not safe to log', async () => {
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), headers: { 'x-request-id': 'bad id\twith spaces' } });
      expect(res.headers['x-request-id']).toMatch(/^req_\d+_[0-9a-f]+$/);
    });

    it('echoes the request id on errors too', async () => {
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', body: '{', headers: { 'x-request-id': 'err-echo-1' } });
      expect(res.statusCode).toBe(400);
      expect(res.headers['x-request-id']).toBe('err-echo-1');
      expect(res.json()).toMatchObject({ requestId: 'err-echo-1' });
    });
  });
});

describe.each(DB_KINDS)('webhook intake on %s when a backing store is down', (kind) => {
  let sys: TestSystem | undefined;
  afterEach(async () => {
    await sys?.teardown();
    sys = undefined;
  });

  it('accepts the very first webhook after start (the producer connection is ready before the app is)', async () => {
    sys = await startTestSystem(kind);
    const res = await postWebhook(sys.app!, { topic: 'app/uninstalled', body: fixture('app-uninstalled') });
    expect(res.statusCode, res.body).toBe(200);
  });

  it('answers 503 REDIS_UNAVAILABLE while Redis is unreachable, keeps nothing as accepted, and accepts the retry', async () => {
    sys = await startTestSystem(kind);
    const webhookId = randomUUID();
    const eventId = randomUUID();
    const delivery = webhookRequest({ topic: 'orders/paid', body: fixture('orders-paid'), webhookId, eventId });
    // Touch the queue once so the failure below is Redis going away, not a queue never initialised.
    await sys.queues.get('events').getJobCounts();

    const ended = once(sys.redis, 'end');
    sys.redis.disconnect();
    // The socket closes on a later turn of the event loop; until then the client still reports "ready".
    await ended;
    const refused = await sys.app!.inject(delivery);
    expect(refused.statusCode).toBe(503);
    expect(errorCode(refused)).toBe('REDIS_UNAVAILABLE');
    expect(await getEvent(sys.db.db, SHOP, webhookId)).toBeUndefined();
    expect(await eventRowCount(sys)).toBe(0);

    await sys.redis.connect();
    await vi.waitFor(() => expect(sys!.redis.status).toBe('ready'), { timeout: 5000, interval: 20 });
    expect(await sys.queues.get('events').getJob(jobIdFrom('wh', SHOP, webhookId))).toBeUndefined();

    // Shopify retries the same delivery: it must be taken as new, not as a duplicate of the refused one.
    const retried = await sys.app!.inject(delivery);
    expect(retried.statusCode).toBe(200);
    expect(retried.json()).toMatchObject({ ok: true, duplicate: false });
    expect((await getEvent(sys.db.db, SHOP, webhookId))?.status).toBe('received');
    expect(await eventJobsFor(sys, webhookId)).toHaveLength(1);
  });

  it('answers 503 DATABASE_UNAVAILABLE when the database is closed, and enqueues nothing', async () => {
    sys = await startTestSystem(kind);
    const webhookId = randomUUID();
    await sys.db.close();
    const res = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid'), webhookId });
    expect(res.statusCode).toBe(503);
    expect(errorCode(res)).toBe('DATABASE_UNAVAILABLE');
    expect(await totalJobs(sys)).toBe(0);
  });
});
