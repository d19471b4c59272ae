/**
 * The dead-letter queue on real Redis and a real database (PostgreSQL and PGlite): what lands in `dead_letters` and
 * when, replay, the start-up sweep, survival past `removeOnFail`, and the operator API over `app.inject()`.
 */
import { UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { getEventById } from '../../src/db/events.js';
import type { DeadLetter } from '../../src/db/schema.js';
import { AppError } from '../../src/errors.js';
import type { Processor } from '../../src/queue/worker.js';
import { waitForJobState } from '../helpers/jobs.js';
import { postWebhook } from '../helpers/webhooks.js';
import { ADMIN_TOKEN, DB_KINDS, startTestSystem, TEST_REDIS_URL, type TestSystem } from '../helpers/system.js';

/** How the test processor behaves for a job, chosen by the `mode` of its payload (`raw`, or the stored event's). */
type Mode = 'fail' | 'unrecoverable' | 'permanent' | 'transient' | 'ok';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
const RETRY_FAST = { attempts: 2, backoff: { type: 'fixed' as const, delay: 10 } };

describe.each(DB_KINDS)('dead letters on %s', (kind) => {
  /** Processor invocations per job id. */
  const calls = new Map<string, number>();
  /** Request ids whose jobs succeed from now on (the "fixed" bug behind a replay). */
  const healed = new Set<string>();
  let shopCounter = 0;
  const nextShop = () => `dlq-${kind}-${++shopCounter}.myshopify.com`;

  const processor: Processor<'events'> = async (job, data, ctx) => {
    calls.set(String(job.id), (calls.get(String(job.id)) ?? 0) + 1);
    if (healed.has(data.requestId)) return { ok: true };
    const payload = data.storedEventId !== undefined ? (await getEventById(ctx.db.db, data.storedEventId))?.payload : data.raw;
    switch (payload?.mode as Mode) {
      case 'fail':
        throw new Error(`boom for ${data.requestId}`);
      case 'unrecoverable':
        throw new UnrecoverableError('customer record is gone');
      case 'permanent':
        throw new AppError('INVALID_PAYLOAD', 'order has no line items');
      case 'transient':
        if (job.attemptsMade === 0) throw new Error('connection reset by peer');
        return { ok: true };
      default:
        return { ok: true };
    }
  };

  let sys: TestSystem;
  let events: Queue;
  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: ['events'], processors: { events: processor } });
    events = sys.queues.get('events');
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  let requestCounter = 0;
  const enqueue = (shopId: string, mode: Mode, opts: { attempts?: number; backoff?: { type: 'fixed'; delay: number } } = {}) => {
    const requestId = `req_${Date.now()}_${kind}${++requestCounter}`;
    return sys.queues
      .enqueueJob('events', 'orders/paid', { topic: 'orders/paid', shopId, objectId: '820982911946154508', raw: { id: 820982911946154508, mode }, requestId }, opts)
      .then((jobId) => ({ jobId, requestId }));
  };
  const deadLettersOf = (shopId: string, expected = 1, timeout = 10_000) =>
    vi.waitFor(
      async () => {
        const rows = await sys.deadLetters.list({ shopId, limit: 500 });
        if (rows.length < expected) throw new Error(`${rows.length} dead letters for ${shopId}, waiting for ${expected}`);
        return rows;
      },
      { timeout, interval: 20 },
    );
  const withoutStamp = (data: Record<string, unknown>) => {
    const { enqueuedAt: _enqueuedAt, ...rest } = data;
    return rest;
  };

  it('records a job that fails its last attempt, once, with everything needed to act on it', async () => {
    const shopId = nextShop();
    const before = Date.now();
    const { jobId, requestId } = await enqueue(shopId, 'fail', RETRY_FAST);

    const job = await waitForJobState(events, jobId, 'failed');
    const rows = await deadLettersOf(shopId);

    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row).toMatchObject({
      queue: 'events',
      jobName: 'orders/paid',
      jobId,
      errorCode: null,
      errorMessage: `boom for ${requestId}`,
      attemptsMade: 2,
      maxAttempts: 2,
      requestId,
      shopId,
      replayCount: 0,
      replayedAt: null,
      replayJobId: null,
    });
    expect(row.data).toEqual(job.data);
    expect(row.stack).toContain(`boom for ${requestId}`);
    expect(row.stack).toMatch(/\n\s+at /);
    expect(row.jobCreatedAt.getTime()).toBe(job.timestamp);
    expect(row.failedAt.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(row.failedAt.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    expect(calls.get(jobId)).toBe(2);
    expect(job.attemptsMade).toBe(2);

    // The worker's `failed` listener records the same failure a second time; a crash-and-rerun would too.
    await sys.deadLetters.record('events', job, new Error('recorded again'), 2);
    expect(await sys.deadLetters.count({ shopId })).toBe(1);
  });

  it('dead-letters an UnrecoverableError after one attempt, with attempts to spare', async () => {
    const shopId = nextShop();
    const { jobId } = await enqueue(shopId, 'unrecoverable'); // catalog default: 5 attempts, 2 s backoff

    const job = await waitForJobState(events, jobId, 'failed');
    const [row] = await deadLettersOf(shopId);

    expect(calls.get(jobId)).toBe(1);
    expect(job.attemptsMade).toBe(1);
    expect(row).toMatchObject({ jobId, errorCode: 'UnrecoverableError', errorMessage: 'customer record is gone', attemptsMade: 1, maxAttempts: 5 });
  });

  it('dead-letters an AppError with a permanent code after one attempt, keeping its code', async () => {
    const shopId = nextShop();
    const { jobId } = await enqueue(shopId, 'permanent');

    const job = await waitForJobState(events, jobId, 'failed');
    const [row] = await deadLettersOf(shopId);

    expect(calls.get(jobId)).toBe(1);
    expect(job.failedReason).toBe('INVALID_PAYLOAD: order has no line items');
    expect(row).toMatchObject({ jobId, errorCode: 'INVALID_PAYLOAD', errorMessage: 'order has no line items', attemptsMade: 1, maxAttempts: 5 });
  });

  it('dead-letters job data the catalog rejects without running the processor', async () => {
    const shopId = nextShop();
    // Bypasses enqueueJob's validation, as a producer on an older version of the catalog might.
    const added = await events.add('orders/paid', { topic: 'orders/paid', shopId, raw: 'not an object', requestId: 'req_1_bad' });
    const jobId = added.id!;

    await waitForJobState(events, jobId, 'failed');
    const [row] = await deadLettersOf(shopId);

    expect(calls.has(jobId)).toBe(false);
    expect(row).toMatchObject({ jobId, errorCode: 'INVALID_JOB_DATA', attemptsMade: 1, maxAttempts: 5, shopId, requestId: 'req_1_bad' });
    expect(row!.errorMessage).toContain('raw');
  });

  it('keeps a stored webhook\'s payload out of the dead letter, and reads it back from the event to replay', async () => {
    const shopId = nextShop();
    const webhookId = `wh-${kind}-${Date.now()}`;
    const body = { id: 4242, mode: 'unrecoverable', customer: { phone: '+41791234567', email: 'jane@example.com' } };
    const res = await postWebhook(sys.app!, { topic: 'orders/paid', shop: shopId, webhookId, body });
    expect(res.statusCode, res.body).toBe(200);
    const row = await vi.waitFor(async () => {
      const [r] = await deadLettersOf(shopId);
      if (!r) throw new Error('no dead letter yet');
      return r;
    });
    // The job named the stored event; the payload was never in Redis.
    expect(row.data).toMatchObject({ webhookId, storedEventId: expect.any(Number) });
    expect(JSON.stringify(row.data)).not.toMatch(/41791234567|jane@example\.com/);

    const requestId = String(row.data.requestId);
    healed.add(requestId);
    const replay = await sys.deadLetters.replay(row.id);
    const replayed = await waitForJobState(events, replay.jobId, 'completed');
    expect(replayed.data).toMatchObject({ requestId, webhookId, storedEventId: row.data.storedEventId });
    expect(replayed.data).not.toHaveProperty('raw');
  });

  it('records nothing for a transient error that succeeds on the next attempt', async () => {
    const shopId = nextShop();
    const { jobId } = await enqueue(shopId, 'transient', RETRY_FAST);

    const job = await waitForJobState(events, jobId, 'completed');

    expect(calls.get(jobId)).toBe(2);
    expect(job.attemptsMade).toBe(2);
    expect(await sys.deadLetters.count({ shopId })).toBe(0);
  });

  it('replays a dead letter onto its queue with its name, data and request id under a new job id', async () => {
    const shopId = nextShop();
    const { jobId, requestId } = await enqueue(shopId, 'fail', { attempts: 1 });
    const [row] = await deadLettersOf(shopId);
    healed.add(requestId);

    const replay = await sys.deadLetters.replay(row!.id);

    expect(replay.queue).toBe('events');
    expect(replay.jobId).not.toBe(jobId);
    const replayed = await waitForJobState(events, replay.jobId, 'completed');
    expect(replayed.name).toBe('orders/paid');
    expect(replayed.data.requestId).toBe(requestId);
    expect(withoutStamp(replayed.data)).toEqual(withoutStamp(row!.data));
    expect(calls.get(replay.jobId)).toBe(1);
    const after = await sys.deadLetters.get(row!.id);
    expect(after).toMatchObject({ replayCount: 1, replayJobId: replay.jobId });
    expect(after!.replayedAt).toBeInstanceOf(Date);
    expect(await sys.deadLetters.count({ shopId })).toBe(1);

    await expect(sys.deadLetters.replay(987_654_321)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('keeps a job alive while its dead letter cannot be written, and records it once the table is back', async () => {
    const shopId = nextShop();
    await sys.db.exec('ALTER TABLE dead_letters RENAME TO dead_letters_offline');
    let jobId: string;
    try {
      ({ jobId } = await enqueue(shopId, 'fail', { attempts: 1 }));
      // Put off rather than failed: a failed job would be a failure nobody recorded.
      await waitForJobState(events, jobId, 'delayed');
      expect(calls.get(jobId)).toBe(1);
      expect(await events.getFailedCount()).toBeLessThanOrEqual(50);
      expect((await events.getFailed(0, -1)).map((j) => j.id)).not.toContain(jobId);
    } finally {
      await sys.db.exec('ALTER TABLE dead_letters_offline RENAME TO dead_letters');
    }

    await (await events.getJob(jobId))!.promote();
    await waitForJobState(events, jobId, 'failed');
    const rows = await deadLettersOf(shopId);

    expect(calls.get(jobId)).toBe(2);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ jobId, errorMessage: expect.stringContaining('boom for'), attemptsMade: 1, maxAttempts: 1 });
  });

  it('keeps every dead letter although removeOnFail trims the failed set to 50', async () => {
    const shopId = nextShop();
    const jobIds = await Promise.all(Array.from({ length: 55 }, () => enqueue(shopId, 'fail', { attempts: 1 }).then((r) => r.jobId)));

    await deadLettersOf(shopId, 55, 20_000);
    await vi.waitFor(
      async () => {
        const counts = await events.getJobCounts('waiting', 'active', 'delayed');
        if (counts.waiting! + counts.active! + counts.delayed! > 0) throw new Error(`still running: ${JSON.stringify(counts)}`);
      },
      { timeout: 10_000, interval: 20 },
    );

    const rows = await sys.deadLetters.list({ shopId, limit: 500 });
    expect(rows).toHaveLength(55);
    expect(new Set(rows.map((r) => r.jobId))).toEqual(new Set(jobIds));
    expect(await events.getFailedCount()).toBeLessThanOrEqual(50);
    const stillInRedis = (await Promise.all(jobIds.map((id) => events.getJob(id)))).filter(Boolean);
    expect(stillInRedis.length).toBeLessThanOrEqual(50);
  });

  describe('operator API', () => {
    const inject = (opts: { method: 'GET' | 'POST' | 'DELETE'; url: string; headers?: Record<string, string>; payload?: unknown }) =>
      sys.app!.inject({ ...opts, payload: opts.payload as never });
    const failOne = async (shopId: string): Promise<DeadLetter> => {
      const { jobId } = await enqueue(shopId, 'fail', { attempts: 1 });
      const rows = await vi.waitFor(
        async () => {
          const found = (await sys.deadLetters.list({ shopId, limit: 500 })).filter((r) => r.jobId === jobId);
          if (!found.length) throw new Error(`no dead letter yet for job ${jobId}`);
          return found;
        },
        { timeout: 10_000, interval: 20 },
      );
      return rows[0]!;
    };

    it('answers 401 UNAUTHORIZED without the operator token or with a wrong one', async () => {
      const attempts: Array<Record<string, string>> = [{}, { authorization: 'Bearer not-the-admin-token' }, { authorization: `Basic ${ADMIN_TOKEN}` }, { authorization: 'Bearer ' }];
      for (const headers of attempts) {
        const res = await inject({ method: 'GET', url: '/admin/dlq', headers });
        expect(res.statusCode, JSON.stringify(headers)).toBe(401);
        expect(res.json().error.code).toBe('UNAUTHORIZED');
      }
      const replay = await inject({ method: 'POST', url: '/admin/dlq/1/replay' });
      expect(replay.statusCode).toBe(401);
      const purge = await inject({ method: 'POST', url: '/admin/dlq/purge', payload: { all: true } });
      expect(purge.statusCode).toBe(401);
    });

    it('accepts the operator token with the scheme in any case', async () => {
      for (const authorization of [`Bearer ${ADMIN_TOKEN}`, `bearer ${ADMIN_TOKEN}`, `BEARER  ${ADMIN_TOKEN} `]) {
        const res = await inject({ method: 'GET', url: '/admin/dlq?limit=1', headers: { authorization } });
        expect(res.statusCode, authorization).toBe(200);
      }
    });

    it('lists by queue and by shop, pages, and shows one', async () => {
      const shopA = nextShop();
      const shopB = nextShop();
      const a1 = await failOne(shopA);
      const a2 = await failOne(shopA);
      const b1 = await failOne(shopB);

      const byQueue = await inject({ method: 'GET', url: '/admin/dlq?queue=events&limit=500', headers: auth });
      expect(byQueue.statusCode).toBe(200);
      const queueBody = byQueue.json();
      expect(queueBody.items.map((r: DeadLetter) => r.id)).toEqual(expect.arrayContaining([a1.id, a2.id, b1.id]));
      expect(queueBody.items.every((r: DeadLetter) => r.queue === 'events')).toBe(true);
      expect(queueBody.size).toBe(await sys.deadLetters.count({ queue: 'events' }));

      const byShop = await inject({ method: 'GET', url: `/admin/dlq?shopId=${shopA}`, headers: auth });
      expect(byShop.statusCode).toBe(200);
      expect(byShop.json()).toMatchObject({ size: 2, nextAfterId: null });
      expect(byShop.json().items.map((r: DeadLetter) => r.id)).toEqual([a2.id, a1.id]);

      const page1 = (await inject({ method: 'GET', url: `/admin/dlq?shopId=${shopA}&limit=1`, headers: auth })).json();
      expect(page1.items.map((r: DeadLetter) => r.id)).toEqual([a2.id]);
      expect(page1.nextAfterId).toBe(a2.id);
      const page2 = (await inject({ method: 'GET', url: `/admin/dlq?shopId=${shopA}&limit=1&afterId=${page1.nextAfterId}`, headers: auth })).json();
      expect(page2.items.map((r: DeadLetter) => r.id)).toEqual([a1.id]);

      const otherQueue = await inject({ method: 'GET', url: `/admin/dlq?queue=automations&shopId=${shopA}`, headers: auth });
      expect(otherQueue.json()).toMatchObject({ items: [], size: 0 });
      const badQueue = await inject({ method: 'GET', url: '/admin/dlq?queue=nope', headers: auth });
      expect(badQueue.statusCode).toBe(400);
      expect(badQueue.json().error.code).toBe('VALIDATION_FAILED');

      const one = await inject({ method: 'GET', url: `/admin/dlq/${b1.id}`, headers: auth });
      expect(one.statusCode).toBe(200);
      expect(one.json()).toMatchObject({
        id: b1.id,
        queue: 'events',
        jobName: 'orders/paid',
        jobId: b1.jobId,
        shopId: shopB,
        requestId: b1.requestId,
        attemptsMade: 1,
        data: b1.data,
      });
      const unknown = await inject({ method: 'GET', url: '/admin/dlq/987654321', headers: auth });
      expect(unknown.statusCode).toBe(404);
      expect(unknown.json().error.code).toBe('NOT_FOUND');
      const notAnId = await inject({ method: 'GET', url: '/admin/dlq/abc', headers: auth });
      expect(notAnId.statusCode).toBe(400);
    });

    it('replays over HTTP, and the replayed job completes', async () => {
      const shopId = nextShop();
      const row = await failOne(shopId);
      healed.add(row.requestId!);

      const res = await inject({ method: 'POST', url: `/admin/dlq/${row.id}/replay`, headers: auth });

      expect(res.statusCode).toBe(200);
      const { jobId, queue } = res.json();
      expect(queue).toBe('events');
      const job: Job = await waitForJobState(events, jobId, 'completed');
      expect(job.data.requestId).toBe(row.requestId);
      const shown = (await inject({ method: 'GET', url: `/admin/dlq/${row.id}`, headers: auth })).json();
      expect(shown).toMatchObject({ replayCount: 1, replayJobId: jobId });
      const all = (await inject({ method: 'GET', url: `/admin/dlq?shopId=${shopId}`, headers: auth })).json();
      expect(all).toMatchObject({ size: 1, items: [{ id: row.id }] });
      const notReplayed = (await inject({ method: 'GET', url: `/admin/dlq?shopId=${shopId}&includeReplayed=false`, headers: auth })).json();
      expect(notReplayed).toMatchObject({ size: 0, items: [] });
      const unknown = await inject({ method: 'POST', url: '/admin/dlq/987654321/replay', headers: auth });
      expect(unknown.statusCode).toBe(404);
    });

    it('deletes one dead letter (204), then it is gone (404)', async () => {
      const shopId = nextShop();
      const row = await failOne(shopId);

      const res = await inject({ method: 'DELETE', url: `/admin/dlq/${row.id}`, headers: auth });

      expect(res.statusCode).toBe(204);
      expect(res.body).toBe('');
      expect((await inject({ method: 'GET', url: `/admin/dlq/${row.id}`, headers: auth })).statusCode).toBe(404);
      expect((await inject({ method: 'DELETE', url: `/admin/dlq/${row.id}`, headers: auth })).statusCode).toBe(404);
      expect(await sys.deadLetters.count({ shopId })).toBe(0);
    });

    it('shows the DLQ size in /queue/metrics', async () => {
      const before = (await inject({ method: 'GET', url: '/queue/metrics' })).json();
      expect(before.dlq.size).toBe(await sys.deadLetters.count());

      await failOne(nextShop());

      const after = await inject({ method: 'GET', url: '/queue/metrics' });
      expect(after.statusCode).toBe(200);
      expect(after.json().dlq.size).toBe(before.dlq.size + 1);
    });

    it('purges by queue and refuses a purge that names nothing', async () => {
      await failOne(nextShop());
      const total = await sys.deadLetters.count({ queue: 'events' });
      expect(total).toBeGreaterThan(0);

      const unfiltered = await inject({ method: 'POST', url: '/admin/dlq/purge', headers: auth, payload: {} });
      expect(unfiltered.statusCode).toBe(400);
      expect(unfiltered.json().error.code).toBe('VALIDATION_FAILED');
      expect(await sys.deadLetters.count({ queue: 'events' })).toBe(total);

      const res = await inject({ method: 'POST', url: '/admin/dlq/purge', headers: auth, payload: { queue: 'events' } });

      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ purged: total });
      expect(await sys.deadLetters.count({ queue: 'events' })).toBe(0);
      expect((await inject({ method: 'GET', url: '/queue/metrics' })).json().dlq.size).toBe(0);
    });
  });
});

describe.each(DB_KINDS)('dead-letter sweep and a disabled operator API on %s', (kind) => {
  // No workers here: jobs fail under a plain BullMQ Worker that knows nothing of dead letters, as they would while
  // the recording process is down.
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: [], env: { ADMIN_TOKEN: '' } });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  /** Runs the queue's waiting jobs under a plain Worker until each job named is finished. */
  async function runWithPlainWorker(jobIds: string[]): Promise<void> {
    const connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const worker = new Worker(
      'events',
      async (job) => {
        if (job.data.raw.mode === 'unrecoverable') throw new UnrecoverableError('no such customer');
        if (job.data.raw.mode === 'fail') throw new Error('processor crashed');
        return 'done';
      },
      { connection, prefix: sys.config.redis.prefix },
    );
    try {
      const queue = sys.queues.get('events');
      await vi.waitFor(
        async () => {
          const states = await Promise.all(jobIds.map((id) => queue.getJobState(id)));
          if (!states.every((s) => s === 'failed' || s === 'completed')) throw new Error(`states: ${states.join(', ')}`);
        },
        { timeout: 10_000, interval: 20 },
      );
    } finally {
      await worker.close();
      await connection.quit();
    }
  }

  const enqueue = (mode: string, opts = {}) =>
    sys.queues.enqueueJob('events', 'orders/paid', { topic: 'orders/paid', shopId: `sweep-${kind}.myshopify.com`, raw: { mode } }, opts);

  it('sweep() records finally-failed jobs missing from the table, once', async () => {
    const exhausted = await enqueue('fail', RETRY_FAST);
    const unrecoverable = await enqueue('unrecoverable', { attempts: 5 });
    const completed = await enqueue('ok');
    await runWithPlainWorker([exhausted, unrecoverable, completed]);
    expect(await sys.deadLetters.count()).toBe(0);

    const recorded = await sys.deadLetters.sweep('events', sys.queues.get('events'));

    expect(recorded).toBe(2);
    const rows = await sys.deadLetters.list({ queue: 'events' });
    expect(rows).toHaveLength(2);
    const byJob = new Map(rows.map((r) => [r.jobId, r]));
    expect(byJob.get(exhausted)).toMatchObject({ jobName: 'orders/paid', errorMessage: 'processor crashed', attemptsMade: 2, maxAttempts: 2 });
    expect(byJob.get(exhausted)!.stack).toContain('processor crashed');
    expect(byJob.get(unrecoverable)).toMatchObject({ errorMessage: 'no such customer', attemptsMade: 1, maxAttempts: 5 });
    expect(byJob.has(completed)).toBe(false);

    expect(await sys.deadLetters.sweep('events', sys.queues.get('events'))).toBe(0);
    expect(await sys.deadLetters.count()).toBe(2);
  });

  it('a worker sweeps at start the failures that happened while none was recording', async () => {
    const before = await sys.deadLetters.count();
    const jobId = await enqueue('fail', { attempts: 1 });
    await runWithPlainWorker([jobId]);
    expect(await sys.deadLetters.count()).toBe(before);

    await sys.pool.start(['events']);

    expect(await sys.deadLetters.count()).toBe(before + 1);
    expect((await sys.deadLetters.list({ queue: 'events', limit: 1 }))[0]).toMatchObject({ jobId, attemptsMade: 1 });
  });

  it('answers 403 OPERATOR_DISABLED when ADMIN_TOKEN is unset, whatever token is sent', async () => {
    for (const headers of [{}, auth]) {
      const res = await sys.app!.inject({ method: 'GET', url: '/admin/dlq', headers });
      expect(res.statusCode).toBe(403);
      expect(res.json().error.code).toBe('OPERATOR_DISABLED');
    }
    const purge = await sys.app!.inject({ method: 'POST', url: '/admin/dlq/purge', headers: auth, payload: { all: true } });
    expect(purge.statusCode).toBe(403);
    expect(await sys.deadLetters.count()).toBeGreaterThan(0);
  });
});
