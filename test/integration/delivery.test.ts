/**
 * The `delivery` queue end to end on real Redis and a real database: the production worker sends through the real
 * Mitto client to the bundled sandbox (a real socket), and the sandbox's delivery reports come back to the API on a
 * real port. Faults are injected at the sandbox: 503s, 429, a permanent responseCode, a request that reached the
 * provider but was never answered, a report that never comes, and a worker process killed mid-send.
 *
 * Waits on job state, database state and the sandbox's records; never on fixed sleeps.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import type { Job, JobsOptions } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { listSkips } from '../../src/db/messages.js';
import { contacts, deadLetters, type Message } from '../../src/db/schema.js';
import { getShopByDomain, markShopUninstalled } from '../../src/db/shops.js';
import { createLogger } from '../../src/logger.js';
import { completeCheckout } from '../../src/db/checkouts.js';
import { createMittoProvider } from '../../src/messages/providers/mitto.js';
import { deliverMessage, type DeliveryControl, type DeliveryDeps } from '../../src/messages/delivery.js';
import { jobIdFrom, parseJobData } from '../../src/queue/queues.js';
import { createSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { startFastDeliveryWorker, type FastDeliveryWorker } from '../helpers/deliveryWorker.js';
import { messageRow, messagesOfShop, seedMessage, uniqueShop } from '../helpers/messages.js';
import { childEnv, PROJECT_ROOT } from '../helpers/spawn.js';
import { DB_KINDS, SHOPIFY_SECRET, startTestSystem, TEST_DATABASE_URL, TEST_REDIS_URL, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook } from '../helpers/webhooks.js';

const DLR_TOKEN = 'delivery-test-dlr-token-0123456789';
/** Small retries so a test sees several attempts quickly. */
const FAST_RETRIES: JobsOptions = { attempts: 5, backoff: { type: 'fixed', delay: 20 } };
const silent = createLogger({ level: 'silent' });

/** Resolves once the job is completed or failed (whichever), with its final state. */
async function finished(sys: TestSystem, jobId: string, timeout = 10_000): Promise<{ state: 'completed' | 'failed'; job: Job }> {
  const queue = sys.queues.get('delivery');
  return vi.waitFor(
    async () => {
      const state = await queue.getJobState(jobId);
      if (state !== 'completed' && state !== 'failed') throw new Error(`delivery job ${jobId} is "${state}"`);
      return { state, job: (await queue.getJob(jobId))! };
    },
    { timeout, interval: 20 },
  );
}

async function jobInState(sys: TestSystem, jobId: string, state: string, timeout = 10_000): Promise<Job> {
  const queue = sys.queues.get('delivery');
  return vi.waitFor(
    async () => {
      const current = await queue.getJobState(jobId);
      if (current !== state) throw new Error(`delivery job ${jobId} is "${current}", waiting for "${state}"`);
      return (await queue.getJob(jobId))!;
    },
    { timeout, interval: 20 },
  );
}

async function rowIn(sys: TestSystem, id: number, status: Message['status'], timeout = 10_000): Promise<Message> {
  return vi.waitFor(
    async () => {
      const row = await messageRow(sys.db.db, id);
      if (row.status !== status) throw new Error(`message ${id} is "${row.status}" (${row.errorCode ?? 'no error'}), waiting for "${status}"`);
      return row;
    },
    { timeout, interval: 20 },
  );
}

/** Queues a message and its `delivery:send` job exactly as the automations processor does. */
async function queueSend(sys: TestSystem, seed: Parameters<typeof seedMessage>[1] = {}, opts: JobsOptions = FAST_RETRIES) {
  const seeded = await seedMessage(sys.db.db, seed);
  const jobId = await enqueueSend(sys, seeded.shop.domain, seeded.message.id, seeded.requestId, opts);
  return { ...seeded, jobId };
}

function enqueueSend(sys: TestSystem, shopDomain: string, messageId: number, requestId: string, opts: JobsOptions = FAST_RETRIES) {
  return sys.queues.enqueueJob('delivery', 'send', { shopId: shopDomain, messageId, requestId }, { jobId: jobIdFrom('msg', messageId), ...opts });
}

async function deadLettersOf(sys: TestSystem, jobId: string) {
  return sys.db.db
    .select()
    .from(deadLetters)
    .where(and(eq(deadLetters.queue, 'delivery'), eq(deadLetters.jobId, jobId)));
}

describe.each(DB_KINDS)('delivery on %s', (kind) => {
  let sys: TestSystem;
  let sandbox: Sandbox;

  beforeAll(async () => {
    sys = await startTestSystem(kind, {
      workers: ['events', 'automations', 'delivery'],
      listen: true,
      env: {
        SMS_PROVIDER: 'sandbox',
        DLR_TOKEN,
        MITTO_TIMEOUT_MS: '250',
        // One wait for a report, long enough that a test sees the job parked; tests promote it to run it now.
        DELIVERY_RECONCILE_DELAY_MS: '600000',
        DELIVERY_RECONCILE_ATTEMPTS: '1',
      },
    });
    expect(sys.sandbox, 'SMS_PROVIDER=sandbox starts the bundled sandbox').toBeDefined();
    sandbox = sys.sandbox!;
  });
  afterEach(() => sandbox.reset());
  afterAll(async () => {
    await sys?.teardown();
  });

  it('sends a queued message once through the Mitto client and settles it as delivered from the sandbox report', async () => {
    const { message, jobId, contact } = await queueSend(sys);
    const { state, job } = await finished(sys, jobId);
    expect(state, job.failedReason).toBe('completed');

    const [record, ...more] = sandbox.messages();
    expect(more).toHaveLength(0);
    expect(record).toMatchObject({ to: contact.phone, from: 'Blossom', text: 'Your order #1001 is paid. Thank you!', type: 'GSM', reference: String(message.id), answered: true });
    // The callback carries the secret token and our id; it points at the API's real port.
    const callback = new URL(record!.callback!);
    expect(callback.port).toBe(new URL(sys.url!).port);
    expect(callback.pathname).toBe('/webhooks/mitto/dlr');
    expect(callback.searchParams.get('token')).toBe(DLR_TOKEN);
    expect(callback.searchParams.get('ref')).toBe(String(message.id));
    expect(job.returnvalue).toEqual({ status: 'sent', messageId: message.id, providerMessageId: record!.id });

    const row = await rowIn(sys, message.id, 'delivered');
    expect(row).toMatchObject({ provider: 'mitto', providerMessageId: record!.id, sendAttempts: 1, errorCode: null });
    expect(row.sentAt).toBeInstanceOf(Date);
    expect(row.deliveredAt).toBeInstanceOf(Date);
    await vi.waitFor(() => expect(sandbox.messages()[0]!.dlr.state).toBe('sent'));
  });

  it('retries 503s with backoff and sends exactly one message', async () => {
    sandbox.setFaults({ errorBurst: 2 });
    const { message, jobId } = await queueSend(sys);
    const { state, job } = await finished(sys, jobId);
    expect(state, job.failedReason).toBe('completed');
    expect(sandbox.stats()).toMatchObject({ requests: 3, serverErrors: 2, accepted: 1 });
    expect(job.attemptsMade).toBe(3);
    expect(sandbox.messages()).toHaveLength(1);
    const row = await rowIn(sys, message.id, 'delivered');
    expect(row).toMatchObject({ sendAttempts: 3, providerMessageId: sandbox.messages()[0]!.id, errorCode: null });
    expect(await deadLettersOf(sys, jobId)).toHaveLength(0);
  });

  it('fails the message and dead-letters the job when 503s outlast the attempts, having sent nothing', async () => {
    sandbox.setFaults({ errorRate: 1 });
    const { message, jobId } = await queueSend(sys, {}, { attempts: 2, backoff: { type: 'fixed', delay: 20 } });
    const { state, job } = await finished(sys, jobId);
    expect(state).toBe('failed');
    expect(job.attemptsMade).toBe(2);
    expect(sandbox.stats()).toMatchObject({ requests: 2, serverErrors: 2, accepted: 0 });
    const row = await messageRow(sys.db.db, message.id);
    expect(row).toMatchObject({ status: 'failed', errorCode: 'HTTP_503' });
    expect(row.errorText).toMatch(/retries exhausted/);
    expect(await deadLettersOf(sys, jobId)).toEqual([expect.objectContaining({ attemptsMade: 2, maxAttempts: 2 })]);
  });

  it('a permanent responseCode fails the message after one attempt and dead-letters the job', async () => {
    sandbox.setFaults({ permanentCode: 8, permanentRate: 1 });
    const { message, jobId } = await queueSend(sys);
    const { state, job } = await finished(sys, jobId);
    expect(state).toBe('failed');
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(/^MITTO_INVALID_RECEIVER/);
    expect(sandbox.stats()).toMatchObject({ requests: 1, rejected: 1, accepted: 0 });
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'failed', errorCode: 'MITTO_INVALID_RECEIVER', sendAttempts: 1 });
    expect(await deadLettersOf(sys, jobId)).toEqual([expect.objectContaining({ attemptsMade: 1, maxAttempts: 5, shopId: job.data.shopId })]);
  });

  it('waits out a 429 (Retry-After: 1) and then sends one message', async () => {
    sandbox.setFaults({ rateLimitBurst: 1 });
    const started = Date.now();
    const { message, jobId } = await queueSend(sys);
    const { state, job } = await finished(sys, jobId);
    expect(state, job.failedReason).toBe('completed');
    expect(sandbox.stats()).toMatchObject({ requests: 2, rateLimited: 1, accepted: 1 });
    // A rate limit is not a failed attempt: the job completed on its first counted attempt.
    expect(job.attemptsMade).toBe(1);
    const [record] = sandbox.messages();
    // The second request came after the delay the provider asked for (1 s), not after the 20 ms backoff.
    expect(record!.receivedAt.getTime() - started).toBeGreaterThanOrEqual(950);
    const row = await rowIn(sys, message.id, 'delivered');
    expect(row).toMatchObject({ sendAttempts: 2, providerMessageId: record!.id });
  });

  it('a send that times out is not resent: the row stays sending until the sandbox report settles it, and the next run is a no-op', async () => {
    // The sandbox takes the message and never answers; its report comes 1.5 s later.
    sandbox.setFaults({ timeoutRate: 1, dlrDelayMs: 1500 });
    const { message, jobId } = await queueSend(sys);
    const parked = await jobInState(sys, jobId, 'delayed');
    expect(parked.data.reconcileRound).toBe(1);
    expect(parked.attemptsMade).toBe(0);
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'sending', sendAttempts: 1 });
    expect(sandbox.messages()).toEqual([expect.objectContaining({ reference: String(message.id), answered: false })]);

    const row = await rowIn(sys, message.id, 'delivered');
    expect(row.providerMessageId).toBe(sandbox.messages()[0]!.id);

    await parked.promote();
    const { state, job } = await finished(sys, jobId);
    expect(state, job.failedReason).toBe('completed');
    expect(job.returnvalue).toEqual({ status: 'already', messageId: message.id, messageStatus: 'delivered' });
    expect(sandbox.stats()).toMatchObject({ requests: 1, accepted: 1 });
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'delivered', sendAttempts: 1 });
  });

  it('a send that times out and never gets a report ends DELIVERY_UNCONFIRMED, still sent only once', async () => {
    sandbox.setFaults({ timeoutRate: 1, dlrRate: 0 });
    const { message, jobId } = await queueSend(sys);
    const parked = await jobInState(sys, jobId, 'delayed');
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'sending' });

    // DELIVERY_RECONCILE_ATTEMPTS=1: the next run gives up waiting.
    await parked.promote();
    const { state, job } = await finished(sys, jobId);
    expect(state, job.failedReason).toBe('completed');
    expect(job.returnvalue).toEqual({ status: 'unconfirmed', messageId: message.id });
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'failed', errorCode: 'DELIVERY_UNCONFIRMED', sendAttempts: 1 });
    expect(sandbox.stats()).toMatchObject({ requests: 1, accepted: 1, unanswered: 1 });
    expect(sandbox.messages()[0]!.dlr.state).toBe('none');
  });

  it('the same job run twice at once sends once; the second run waits for the outcome instead of completing', async () => {
    // Latency keeps the first send in flight while the second run looks at the row.
    sandbox.setFaults({ latencyMs: 200 });
    const { message, shop, requestId } = await seedMessage(sys.db.db);
    const deps: DeliveryDeps = {
      db: sys.db.db,
      provider: sys.services.provider!,
      logger: silent,
      callbackUrl: (id) => `${sys.url}/webhooks/mitto/dlr?token=${DLR_TOKEN}&ref=${id}`,
      reconcileDelayMs: 60_000,
      reconcileAttempts: 3,
      renderer: sys.services.renderer,
      sms: sys.config.sms,
    };
    const deferred: Array<{ at: Date; round: number | undefined }> = [];
    const control = (): DeliveryControl => ({
      jobKey: 'direct-test',
      attemptsMade: 0,
      maxAttempts: 5,
      reconcileRound: 0,
      async deferUntil(at, round) {
        deferred.push({ at, round });
        throw new Error('deferred');
      },
      async rateLimited() {
        throw new Error('rate limited');
      },
    });
    const data = parseJobData('delivery', 'send', { shopId: shop.domain, messageId: message.id, requestId, enqueuedAt: new Date().toISOString() });
    const results = await Promise.allSettled([deliverMessage(data, deps, control()), deliverMessage(data, deps, control())]);

    const sent = results.filter((r) => r.status === 'fulfilled' && r.value.status === 'sent');
    expect(sent).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([expect.objectContaining({ reason: expect.objectContaining({ message: 'deferred' }) })]);
    expect(deferred).toEqual([expect.objectContaining({ round: 1 })]);
    expect(sandbox.stats()).toMatchObject({ requests: 1, accepted: 1 });
    expect(await rowIn(sys, message.id, 'delivered')).toMatchObject({ sendAttempts: 1 });
  });

  it('after a send that timed out, the wait for the report is counted from the timeout, not from the job start', async () => {
    sandbox.setFaults({ timeoutRate: 1, dlrRate: 0 });
    const { message, shop, requestId } = await seedMessage(sys.db.db);
    const deps: DeliveryDeps = {
      db: sys.db.db,
      provider: createMittoProvider({ baseUrl: await sandbox.listen(), apiKey: sys.config.sms.mittoApiKey, timeoutMs: 400 }),
      logger: silent,
      callbackUrl: (id) => `${sys.url}/webhooks/mitto/dlr?token=${DLR_TOKEN}&ref=${id}`,
      reconcileDelayMs: 100,
      reconcileAttempts: 3,
      renderer: sys.services.renderer,
      sms: sys.config.sms,
    };
    let deferredTo: Date | undefined;
    const control: DeliveryControl = {
      jobKey: 'direct-test',
      attemptsMade: 0,
      maxAttempts: 5,
      reconcileRound: 0,
      async deferUntil(at) {
        deferredTo = at;
        throw new Error('deferred');
      },
      async rateLimited() {
        throw new Error('rate limited');
      },
    };
    const started = Date.now();
    const data = parseJobData('delivery', 'send', { shopId: shop.domain, messageId: message.id, requestId, enqueuedAt: new Date().toISOString() });
    await expect(deliverMessage(data, deps, control)).rejects.toThrow('deferred');
    expect(deferredTo!.getTime()).toBeGreaterThanOrEqual(started + 400 + 100);
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'sending' });
  });

  it('a marketing message whose contact opted out after it was queued is skipped at send time, nothing sent', async () => {
    const { message, contact, shop, requestId } = await seedMessage(sys.db.db, { kind: 'marketing', trigger: 'abandoned_checkout' });
    await sys.db.db.update(contacts).set({ smsConsent: 'unsubscribed', optedOutAt: new Date() }).where(eq(contacts.id, contact.id));
    const jobId = await enqueueSend(sys, shop.domain, message.id, requestId);
    const { state, job } = await finished(sys, jobId);
    expect(state, job.failedReason).toBe('completed');
    expect(job.returnvalue).toMatchObject({ status: 'skipped' });
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'skipped', sendAttempts: 0 });
    expect(await listSkips(sys.db.db, shop.id, contact.id)).toEqual([expect.objectContaining({ messageId: message.id, detail: 'checked again at send time' })]);
    expect(sandbox.stats().requests).toBe(0);
  });

  it('an abandoned-checkout message whose checkout (named by the job\'s checkoutToken) completed meanwhile is cancelled at send time', async () => {
    const { message, shop, requestId } = await seedMessage(sys.db.db, { kind: 'marketing', trigger: 'abandoned_checkout' });
    const checkoutToken = `tok-${message.id}`;
    await completeCheckout(sys.db.db, shop.id, checkoutToken, new Date());
    const jobId = await sys.queues.enqueueJob(
      'delivery',
      'send',
      { shopId: shop.domain, messageId: message.id, checkoutToken, requestId },
      { jobId: jobIdFrom('msg', message.id), ...FAST_RETRIES },
    );
    const { state, job } = await finished(sys, jobId);
    expect(state, job.failedReason).toBe('completed');
    expect(job.returnvalue).toEqual({ status: 'cancelled', messageId: message.id, reason: 'checkout_completed' });
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'cancelled', sendAttempts: 0 });
    expect(sandbox.stats().requests).toBe(0);
  });

  it('an abandoned-checkout reminder queued again without a checkoutToken (reconcile, retries) is still cancelled by its row\'s checkout', async () => {
    const checkoutToken = `tok-row-${randomUUID()}`;
    const { message, shop, requestId } = await seedMessage(sys.db.db, { kind: 'marketing', trigger: 'abandoned_checkout', checkoutToken });
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ checkoutToken });
    await completeCheckout(sys.db.db, shop.id, checkoutToken, new Date());
    // The job reconcile adds for a stuck message: its id and the message, no checkout token.
    const jobId = await sys.queues.enqueueJob('delivery', 'send', { shopId: shop.domain, messageId: message.id, requestId }, { jobId: jobIdFrom('rec', message.id), ...FAST_RETRIES });
    const { state, job } = await finished(sys, jobId);
    expect(state, job.failedReason).toBe('completed');
    expect(job.returnvalue).toEqual({ status: 'cancelled', messageId: message.id, reason: 'checkout_completed' });
    expect(sandbox.stats().requests).toBe(0);
  });

  it('a transactional message to an opted-out contact is skipped too (not opted out is all it needs)', async () => {
    const { message, contact, shop, requestId } = await seedMessage(sys.db.db);
    await sys.db.db.update(contacts).set({ smsConsent: 'unsubscribed', optedOutAt: new Date() }).where(eq(contacts.id, contact.id));
    const jobId = await enqueueSend(sys, shop.domain, message.id, requestId);
    expect((await finished(sys, jobId)).state).toBe('completed');
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'skipped' });
    expect(sandbox.stats().requests).toBe(0);
  });

  it('a message of a shop uninstalled after it was queued is cancelled, nothing sent', async () => {
    const { message, shop, requestId } = await seedMessage(sys.db.db);
    await markShopUninstalled(sys.db.db, shop.domain, new Date());
    const jobId = await enqueueSend(sys, shop.domain, message.id, requestId);
    const { state, job } = await finished(sys, jobId);
    expect(state, job.failedReason).toBe('completed');
    expect(job.returnvalue).toMatchObject({ status: 'cancelled', reason: 'shop_uninstalled' });
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'cancelled', errorCode: 'shop_uninstalled' });
    expect(sandbox.stats().requests).toBe(0);
  });

  it('a job run again for a message already sent does nothing', async () => {
    const { message, jobId, shop, requestId } = await queueSend(sys);
    expect((await finished(sys, jobId)).state).toBe('completed');
    await rowIn(sys, message.id, 'delivered');
    // A replay (an operator, a duplicate enqueue after the first job was trimmed) of the same message.
    await sys.queues.get('delivery').remove(jobId);
    await enqueueSend(sys, shop.domain, message.id, requestId);
    const { state, job } = await finished(sys, jobId);
    expect(state, job.failedReason).toBe('completed');
    expect(job.returnvalue).toEqual({ status: 'already', messageId: message.id, messageStatus: 'delivered' });
    expect(sandbox.stats()).toMatchObject({ requests: 1, accepted: 1 });
  });

  it('an orders/paid webhook for a subscribed customer ends as one delivered message at the sandbox', async () => {
    const shop = uniqueShop('e2e');
    const res = await postWebhook(sys.app!, { topic: 'orders/paid', shop, body: fixture('orders-paid') });
    expect(res.statusCode, res.body).toBe(200);
    const shopRow = await vi.waitFor(
      async () => {
        const row = await getShopByDomain(sys.db.db, shop);
        if (!row) throw new Error('shop not stored yet');
        return row;
      },
      { timeout: 10_000, interval: 20 },
    );
    const message = await vi.waitFor(
      async () => {
        // The new subscriber's welcome message may go out too (or wait for quiet hours to end, by the hour).
        const m = (await messagesOfShop(sys.db.db, shopRow.id)).find((x) => x.trigger === 'order_paid');
        if (!m || m.status !== 'delivered') throw new Error(`message is ${m?.status ?? 'not created'}`);
        return m;
      },
      { timeout: 15_000, interval: 20 },
    );
    expect(message).toMatchObject({ trigger: 'order_paid', kind: 'transactional', sendAttempts: 1 });
    expect(sandbox.messages().filter((m) => m.to === message.toPhone && m.text === message.body)).toEqual([
      expect.objectContaining({ reference: String(message.id) }),
    ]);
  });
});

describe('a delivery worker process killed mid-send (postgres)', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
  });

  it.each([
    { name: 'the delivery report settles it as delivered', dlrRate: 1, reconcileAttempts: '50', expected: { status: 'delivered', errorCode: null } },
    { name: 'without a report it ends DELIVERY_UNCONFIRMED', dlrRate: 0, reconcileAttempts: '2', expected: { status: 'failed', errorCode: 'DELIVERY_UNCONFIRMED' } },
  ])('the message is never sent twice; $name', async ({ dlrRate, reconcileAttempts, expected }) => {
    const sys = await startTestSystem('postgres', {
      listen: true,
      env: { DLR_TOKEN, DELIVERY_RECONCILE_DELAY_MS: '200', DELIVERY_RECONCILE_ATTEMPTS: reconcileAttempts },
    });
    cleanups.push(() => sys.teardown());
    const sandbox = await createSandbox({ apiKey: 'kill-test-key', faults: { latencyMs: 1500, dlrRate } });
    cleanups.push(() => sandbox.close());
    const sandboxUrl = await sandbox.listen(0);

    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/deliveryWorkerChild.ts'], {
      cwd: PROJECT_ROOT,
      env: childEnv({
        REDIS_URL: TEST_REDIS_URL,
        REDIS_PREFIX: sys.config.redis.prefix,
        REDIS_EMBEDDED: 'false',
        DATABASE_URL: TEST_DATABASE_URL,
        DATABASE_SCHEMA: sys.config.database.schema,
        SHOPIFY_API_SECRET: SHOPIFY_SECRET,
        SMS_PROVIDER: 'mitto',
        MITTO_API_URL: sandboxUrl,
        MITTO_API_KEY: 'kill-test-key',
        MITTO_TIMEOUT_MS: '20000',
        PUBLIC_URL: sys.url!,
        DLR_TOKEN,
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    await vi.waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`worker child exited early: ${stderr}`);
        if (!stdout.includes('"ready"')) throw new Error('waiting for the worker child');
      },
      { timeout: 20_000, interval: 20 },
    );

    const { message, jobId } = await queueSend(sys);
    // The request is at the sandbox (held by its latency): the row is claimed and the send is in flight.
    await vi.waitFor(() => expect(sandbox.stats().requests).toBe(1), { timeout: 10_000, interval: 10 });
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'sending', sendAttempts: 1 });
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    // A new worker: BullMQ finds the dead worker's job stalled once its lock expires and runs it again.
    const replacement: FastDeliveryWorker = startFastDeliveryWorker({
      config: sys.config,
      db: sys.db,
      queues: sys.queues,
      logger: silent,
      provider: createMittoProvider({ baseUrl: sandboxUrl, apiKey: 'kill-test-key', timeoutMs: 20_000 }),
      publicUrl: sys.url!,
    });
    cleanups.push(() => replacement.close());
    const stalled = new Promise<string>((resolve) => replacement.worker.once('active', (job) => resolve(String(job.id))));

    const { state, job } = await finished(sys, jobId, 15_000);
    expect(state, job.failedReason).toBe('completed');
    expect(await stalled).toBe(jobId);
    // The request the dead worker made lands (the sandbox took it); nobody made another.
    await vi.waitFor(() => expect(sandbox.stats().accepted).toBe(1), { timeout: 5_000, interval: 20 });
    expect(sandbox.stats().requests).toBe(1);
    expect(sandbox.messages()).toEqual([expect.objectContaining({ reference: String(message.id) })]);
    expect(await rowIn(sys, message.id, expected.status as Message['status'])).toMatchObject({ errorCode: expected.errorCode, sendAttempts: 1 });
  });
});
