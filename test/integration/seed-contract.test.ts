/**
 * The seed's producer contract: a plain BullMQ producer (`new Queue(name).add(name, data)`, not our enqueue helper, so
 * no `enqueuedAt` and no validation on the way in) that follows the seed's "Usage Examples" and "Queue Definitions"
 * gets its jobs done. An example that names something that does not exist (`campaignId: 'campaign-123'`) fails for
 * good on its first attempt with an error naming the field, instead of being retried. On a private queue prefix, real
 * Redis, real PostgreSQL and PGlite.
 */
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { and, eq } from 'drizzle-orm';
import { getEventById, insertEvent } from '../../src/db/events.js';
import { contacts, events, messages, shops } from '../../src/db/schema.js';
import { DEFAULT_JOB_OPTIONS, parseJobData, QUEUE_NAMES, type QueueName } from '../../src/queue/queues.js';
import { DIRECT_SEND_TRIGGER, deliverMessage, type DeliveryControl } from '../../src/messages/delivery.js';
import { runSeedExample, SEED_SHOP, seedExamples, type SeedExample } from '../../scripts/enqueueSmoke.js';
import { seedContact, uniquePhone, uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, startTestSystem, TEST_REDIS_URL, type TestSystem } from '../helpers/system.js';

const title = (ex: SeedExample) =>
  ex.expect === 'completed'
    ? `${ex.queue}:${ex.name} (${ex.data.requestId}) is accepted and completed`
    : `${ex.queue}:${ex.name} (${ex.data.requestId}) names a ${ex.expect.failsOn} that does not exist: fails permanently on attempt 1 naming ${ex.expect.failsOn}`;

describe.each(DB_KINDS)('the seed producer contract on %s', (kind) => {
  let sys: TestSystem;
  let connection: Redis;
  const plain = new Map<QueueName, { queue: Queue; events: QueueEvents }>();
  const listeners: Redis[] = [];

  /** A plain BullMQ Queue on the test's prefix, with the seed's default job options. */
  async function plainQueue(name: QueueName) {
    let q = plain.get(name);
    if (!q) {
      const prefix = sys.config.redis.prefix;
      const listener = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
      listeners.push(listener);
      q = {
        queue: new Queue(name, { connection, prefix, defaultJobOptions: DEFAULT_JOB_OPTIONS }),
        events: new QueueEvents(name, { connection: listener, prefix }),
      };
      await q.events.waitUntilReady();
      plain.set(name, q);
    }
    return q;
  }

  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: QUEUE_NAMES, listen: true, env: { SMS_PROVIDER: 'sandbox' } });
    connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    for (const { queue, events: qe } of plain.values()) {
      await queue.close();
      await qe.close();
    }
    for (const c of [connection, ...listeners]) c?.disconnect();
    await sys?.teardown();
  });

  // In the seed's order: the order event creates the shop and the subscribed customer the direct send then texts.
  for (const example of seedExamples()) {
    it(title(example), async () => {
      const { queue, events: qe } = await plainQueue(example.queue);
      const { ok, result, job } = await runSeedExample(queue, qe, example, 15_000);
      expect(ok, result).toBe(true);
      expect(job.data).not.toHaveProperty('enqueuedAt');
      if (example.expect !== 'completed') {
        expect(job.attemptsMade).toBe(1);
        expect(job.failedReason).toMatch(new RegExp(`INVALID_JOB_DATA: .*${example.expect.failsOn}: `));
        return;
      }
      if (example.queue === 'events') {
        // The payload went to `events`; the job now names the stored row and holds no copy of it.
        expect(job.data).not.toHaveProperty('raw');
        const stored = await getEventById(sys.db.db, job.data.storedEventId);
        expect(stored).toMatchObject({ shopDomain: SEED_SHOP, topic: 'orders/paid', status: 'processed', requestId: 'req_123' });
        expect(stored!.payload).toMatchObject({ id: 123456789 });
      }
      if (example.queue === 'delivery') {
        expect(job.returnvalue).toMatchObject({ status: 'sent' });
        const [row] = await sys.db.db.select().from(messages).where(eq(messages.id, job.returnvalue.messageId));
        expect(row).toMatchObject({ trigger: DIRECT_SEND_TRIGGER, kind: 'marketing', body: expect.stringContaining('Hi Smoke, your order #1001 is paid.') });
        expect(row!.idempotencyKey).toMatch(/^job-/);
      }
    });
  }

  it('a seed-shaped delivery job run twice creates one message and sends it once', async () => {
    const shopDomain = uniqueShop('direct');
    const phone = uniquePhone();
    await seedContact(sys.db.db, shopDomain, phone);
    const data = parseJobData('delivery', 'send', { shopId: shopDomain, recipient: phone, template: 'Hello {{ who }}', context: { who: 'Jane' }, requestId: 'req_direct_twice' }, Date.now());
    const control: DeliveryControl = {
      jobKey: 'direct-twice-1',
      attemptsMade: 0,
      maxAttempts: 5,
      reconcileRound: 0,
      deferUntil: async () => Promise.reject(new Error('not deferred in this test')),
      rateLimited: async () => Promise.reject(new Error('not rate limited in this test')),
    };
    const deps = {
      db: sys.db.db,
      provider: sys.services.provider!,
      logger: sys.logger,
      callbackUrl: (id: number) => `${sys.url}/webhooks/mitto/dlr?ref=${id}`,
      reconcileDelayMs: 60_000,
      reconcileAttempts: 1,
      renderer: sys.services.renderer,
      sms: sys.config.sms,
    };
    const first = await deliverMessage(data, deps, control);
    const second = await deliverMessage(data, deps, control);
    expect(first).toMatchObject({ status: 'sent' });
    expect(second).toMatchObject({ status: 'already', messageId: first.messageId });
    const [shop] = await sys.db.db.select().from(shops).where(eq(shops.domain, shopDomain));
    expect(await sys.db.db.select().from(messages).where(eq(messages.shopId, shop!.id))).toHaveLength(1);
  });

  it('a seed-shaped delivery job obeys consent: a recipient who never subscribed is skipped, not sent', async () => {
    const shopDomain = uniqueShop('direct-consent');
    const phone = uniquePhone();
    await seedContact(sys.db.db, shopDomain, phone, 'not_subscribed');
    const { queue, events: qe } = await plainQueue('delivery');
    const example: SeedExample = {
      queue: 'delivery',
      name: 'send',
      data: { shopId: shopDomain, recipient: phone, template: 'Sale!', context: {}, requestId: 'req_direct_consent' },
      expect: 'completed',
    };
    const { ok, result, job } = await runSeedExample(queue, qe, example, 15_000);
    expect(ok, result).toBe(true);
    expect(job.returnvalue).toMatchObject({ status: 'skipped', reason: 'not_subscribed' });
  });

  it('a seed-shaped delivery job for an unknown shop fails permanently on attempt 1 naming shopId', async () => {
    const { queue, events: qe } = await plainQueue('delivery');
    const example: SeedExample = {
      queue: 'delivery',
      name: 'send',
      data: { shopId: uniqueShop('nobody'), recipient: uniquePhone(), template: 'Hi', context: {}, requestId: 'req_direct_noshop' },
      expect: { failsOn: 'shopId' },
    };
    const { ok, result } = await runSeedExample(queue, qe, example, 15_000);
    expect(ok, result).toBe(true);
  });

  it('a campaigns:batch job whose campaignId is a number naming no campaign fails permanently on attempt 1 naming campaignId', async () => {
    const { queue, events: qe } = await plainQueue('campaigns');
    const example: SeedExample = {
      queue: 'campaigns',
      name: 'batch',
      data: { campaignId: '987654321', shopId: SEED_SHOP, batchSize: 100, requestId: 'req_no_campaign' },
      expect: { failsOn: 'campaignId' },
    };
    const { ok, result } = await runSeedExample(queue, qe, example, 15_000);
    expect(ok, result).toBe(true);
  });

  it('an events job carrying raw for a stored webhook whose payload was erased does not bring it back', async () => {
    const shopDomain = uniqueShop('erased');
    const webhookId = `erased-${Date.now()}`;
    const raw = { id: 5550001, first_name: 'Gone', phone: uniquePhone() };
    const { inserted } = await insertEvent(sys.db.db, {
      shopDomain,
      topic: 'customers/update',
      objectId: '5550001',
      webhookId,
      eventId: null,
      apiVersion: null,
      triggeredAt: null,
      payload: raw,
      requestId: 'req_erased',
    });
    await sys.db.db.update(events).set({ payload: null }).where(eq(events.id, inserted!.id));
    const { queue, events: qe } = await plainQueue('events');
    const example: SeedExample = {
      queue: 'events',
      name: 'customers/update',
      data: { topic: 'customers/update', shopId: shopDomain, raw, webhookId, requestId: 'req_erased' },
      expect: 'completed',
    };
    const { ok, result, job } = await runSeedExample(queue, qe, example, 15_000);
    expect(ok, result).toBe(true);
    expect(job.returnvalue).toEqual({ outcome: 'ignored', reason: 'payload_erased' });
    expect(job.data).toMatchObject({ storedEventId: inserted!.id });
    expect(job.data).not.toHaveProperty('raw');
    expect(await sys.db.db.select().from(contacts).where(eq(contacts.phone, raw.phone))).toEqual([]);
  });

  it('an events job naming a stored event that does not exist fails permanently on attempt 1 naming storedEventId', async () => {
    const { queue, events: qe } = await plainQueue('events');
    const example: SeedExample = {
      queue: 'events',
      name: 'orders/paid',
      data: { topic: 'orders/paid', shopId: SEED_SHOP, storedEventId: 999_999_999, requestId: 'req_no_event' },
      expect: { failsOn: 'storedEventId' },
    };
    const { ok, result } = await runSeedExample(queue, qe, example, 15_000);
    expect(ok, result).toBe(true);
    expect(await sys.db.db.select().from(events).where(and(eq(events.shopDomain, SEED_SHOP), eq(events.id, 999_999_999)))).toEqual([]);
  });
});
