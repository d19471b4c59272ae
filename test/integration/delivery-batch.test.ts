/**
 * A campaign's delivery batch (`delivery:send` with `messageIds`) on real Redis, real databases and the bundled Mitto
 * sandbox over a real socket: each message sent once, what is off the common path handed to one-message jobs, a 503
 * or a 429 mid-batch stopping it with the unsent messages back to `queued`, and a second run of a batch whose first
 * run died mid-send resending nothing.
 *
 * Waits on job state and database rows; never on fixed sleeps.
 */
import { eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { messages, type Message } from '../../src/db/schema.js';
import { createLogger } from '../../src/logger.js';
import { deliverMessages, type BatchDeliveryControl, type DeliveryDeps, type HandOff } from '../../src/messages/delivery.js';
import { createMittoProvider } from '../../src/messages/providers/mitto.js';
import { isProviderError } from '../../src/messages/providers/types.js';
import { jobIdFrom, parseJobData } from '../../src/queue/queues.js';
import { seedMessage, uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';

const DLR_TOKEN = 'delivery-batch-dlr-token-0123456789';
const silent = createLogger({ level: 'silent' });

/** `n` queued marketing messages of one shop, each to its own subscribed contact. */
async function seedBatch(sys: TestSystem, n: number): Promise<{ shopDomain: string; ids: number[] }> {
  const shopDomain = uniqueShop('batch');
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const { message } = await seedMessage(sys.db.db, { shop: shopDomain, kind: 'marketing', trigger: 'campaign', body: `Spring sale ${i}` });
    ids.push(message.id);
  }
  return { shopDomain, ids };
}

async function rows(sys: TestSystem, ids: number[]): Promise<Message[]> {
  return sys.db.db.select().from(messages).where(inArray(messages.id, ids)).orderBy(messages.id);
}

const byStatus = (list: Message[]) =>
  list.reduce<Record<string, number>>((acc, m) => ({ ...acc, [m.status]: (acc[m.status] ?? 0) + 1 }), {});

describe.each(DB_KINDS)('delivery batches on %s', (kind) => {
  let sys: TestSystem;
  let deps: DeliveryDeps;

  /** A control that records what the batch asks of the queue instead of doing it. */
  function recordingControl(attemptsMade = 0) {
    const handedOff: HandOff[] = [];
    const rateLimits: number[] = [];
    const control: BatchDeliveryControl = {
      jobKey: 'batch-test',
      attemptsMade,
      maxAttempts: 5,
      reconcileRound: 0,
      deferUntil: async () => Promise.reject(new Error('a batch is never deferred whole')),
      async rateLimited(ms) {
        rateLimits.push(ms);
        throw new Error('rate limited');
      },
      async handOff(items) {
        handedOff.push(...items);
      },
    };
    return { control, handedOff, rateLimits };
  }

  const jobData = (shopDomain: string, ids: number[]) =>
    parseJobData('delivery', 'send', { shopId: shopDomain, messageIds: ids, requestId: 'req_batch', enqueuedAt: new Date().toISOString() });

  /** Adds a batch job as campaigns do and waits for the worker to finish it. */
  async function runBatchJob(shopDomain: string, ids: number[], opts: { priority?: number } = {}) {
    const jobId = jobIdFrom('msgs', ids[0]!, ids.at(-1)!);
    await sys.queues.get('delivery').add('send', jobData(shopDomain, ids), { jobId, ...opts });
    return vi.waitFor(
      async () => {
        const job = await sys.queues.get('delivery').getJob(jobId);
        if (!job?.finishedOn) throw new Error('batch job not finished');
        return job;
      },
      { timeout: 20_000, interval: 20 },
    );
  }

  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: ['delivery'], listen: true, env: { SMS_PROVIDER: 'sandbox', DLR_TOKEN } });
    deps = {
      db: sys.db.db,
      provider: createMittoProvider({ baseUrl: await sys.sandbox!.listen(), apiKey: sys.config.sms.mittoApiKey, timeoutMs: 300 }),
      logger: silent,
      callbackUrl: (id) => `${sys.url}/webhooks/mitto/dlr?token=${DLR_TOKEN}&ref=${id}`,
      reconcileDelayMs: 60_000,
      reconcileAttempts: 3,
      renderer: sys.services.renderer,
      sms: sys.config.sms,
    };
  });
  afterAll(async () => {
    await sys?.teardown();
  });
  beforeEach(() => {
    sys.sandbox!.reset();
  });

  it('one job sends each of its messages once, through the worker, and their reports settle them', async () => {
    const { shopDomain, ids } = await seedBatch(sys, 30);
    const done = await runBatchJob(shopDomain, ids);
    expect(done.failedReason).toBeUndefined();
    expect(done.returnvalue).toMatchObject({ status: 'batch', messages: 30, sent: 30, already: 0, handedOff: 0 });
    await vi.waitFor(async () => expect(byStatus(await rows(sys, ids))).toEqual({ delivered: 30 }), { timeout: 20_000, interval: 50 });
    const atProvider = sys.sandbox!.messages();
    expect(atProvider).toHaveLength(30);
    expect(new Set(atProvider.map((m) => m.reference))).toEqual(new Set(ids.map(String)));
    expect((await rows(sys, ids)).every((m) => m.sendAttempts === 1 && m.providerMessageId !== null)).toBe(true);
  });

  it('sends whose answer never comes wait for their reports in one-message jobs; a second run resends nothing', async () => {
    const { shopDomain, ids } = await seedBatch(sys, 10);
    sys.sandbox!.setFaults({ timeoutRate: 1, hangMs: 2_000, dlrRate: 0 });
    try {
      const first = recordingControl();
      const outcome = await deliverMessages(ids, jobData(shopDomain, ids), deps, first.control);
      expect(outcome).toMatchObject({ sent: 0, handedOff: 10 });
      expect(first.handedOff.map((h) => h.messageId).sort((a, b) => a - b)).toEqual(ids);
      expect(first.handedOff.every((h) => h.reconcileRound === 1 && h.at.getTime() > Date.now() + 50_000)).toBe(true);
      expect(byStatus(await rows(sys, ids))).toEqual({ sending: 10 });
      expect(sys.sandbox!.messages()).toHaveLength(10);

      // The same job run again (a stalled job picked up after its first run died mid-send): nothing is sent.
      const second = recordingControl(1);
      expect(await deliverMessages(ids, jobData(shopDomain, ids), deps, second.control)).toMatchObject({ sent: 0, handedOff: 10 });
      expect(sys.sandbox!.stats().requests).toBe(10);
      expect(byStatus(await rows(sys, ids))).toEqual({ sending: 10 });
    } finally {
      sys.sandbox!.setFaults({ timeoutRate: 0, dlrRate: 1 });
    }
  });

  it('a 503 stops the batch: what was accepted is settled, the rest goes back to queued, and the retry sends only that', async () => {
    const { shopDomain, ids } = await seedBatch(sys, 20);
    sys.sandbox!.setFaults({ errorBurst: 3 });
    const first = recordingControl();
    const failed = await deliverMessages(ids, jobData(shopDomain, ids), deps, first.control).catch((err: unknown) => err);
    expect(isProviderError(failed, 'transient')).toBe(true);
    const after = byStatus(await rows(sys, ids));
    // The first round of 8 went out at once: 3 refused, 5 accepted; the later rounds were never sent.
    expect(after.queued).toBe(15);
    expect((after.sent ?? 0) + (after.delivered ?? 0)).toBe(5);
    expect(sys.sandbox!.messages()).toHaveLength(5);

    const retry = recordingControl(1);
    expect(await deliverMessages(ids, jobData(shopDomain, ids), deps, retry.control)).toMatchObject({ sent: 15, already: 5 });
    const references = sys.sandbox!.messages().map((m) => m.reference);
    expect(references).toHaveLength(20);
    expect(new Set(references).size).toBe(20);
  });

  it('on the last attempt, a 503 fails what was not sent instead of leaving it queued', async () => {
    const { shopDomain, ids } = await seedBatch(sys, 4);
    sys.sandbox!.setFaults({ errorBurst: 4 });
    const last = recordingControl(4);
    await expect(deliverMessages(ids, jobData(shopDomain, ids), deps, last.control)).rejects.toMatchObject({ kind: 'transient' });
    const list = await rows(sys, ids);
    expect(byStatus(list)).toEqual({ failed: 4 });
    expect(list.every((m) => m.errorCode === 'HTTP_503' && m.errorText?.startsWith('retries exhausted'))).toBe(true);
  });

  it('a 429 puts the unsent messages back to queued and rate-limits the queue for the time the provider asked', async () => {
    const { shopDomain, ids } = await seedBatch(sys, 12);
    sys.sandbox!.setFaults({ rateLimitBurst: 1 });
    const first = recordingControl();
    await expect(deliverMessages(ids, jobData(shopDomain, ids), deps, first.control)).rejects.toThrow('rate limited');
    expect(first.rateLimits).toEqual([1000]);
    const after = byStatus(await rows(sys, ids));
    expect(after.queued).toBe(5);
    expect(after.sending ?? 0).toBe(0);
    expect(sys.sandbox!.messages()).toHaveLength(7);
  });

  it('a message another run holds, one due later and one already final are left to one-message jobs or alone', async () => {
    const { shopDomain, ids } = await seedBatch(sys, 6);
    const [held, later, done] = ids as [number, number, number];
    const at = new Date(Date.now() + 3_600_000);
    await sys.db.db.update(messages).set({ status: 'sending' }).where(eq(messages.id, held));
    await sys.db.db.update(messages).set({ scheduledFor: at }).where(eq(messages.id, later));
    await sys.db.db.update(messages).set({ status: 'delivered' }).where(eq(messages.id, done));

    const job = await runBatchJob(shopDomain, ids, { priority: 10 });
    expect(job.returnvalue).toMatchObject({ sent: 3, already: 1, handedOff: 2 });
    expect(sys.sandbox!.messages().map((m) => Number(m.reference)).sort((a, b) => a - b)).toEqual(ids.slice(3));

    const reconcile = await sys.queues.get('delivery').getJob(jobIdFrom('msg', held));
    expect(reconcile?.data).toMatchObject({ messageId: held, reconcileRound: 1, shopId: shopDomain });
    expect(reconcile?.opts.priority).toBe(10);
    expect(await reconcile?.getState()).toBe('delayed');
    const due = await sys.queues.get('delivery').getJob(jobIdFrom('msg', later));
    expect(due?.data).toMatchObject({ messageId: later });
    expect(due?.data.reconcileRound).toBeUndefined();
    expect(Math.abs(due!.timestamp + due!.opts.delay! - at.getTime())).toBeLessThan(5_000);
  });
});
