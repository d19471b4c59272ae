/**
 * Redis and PostgreSQL crash and come back in the middle of a run. Each test runs its own server (a private
 * redis-server with AOF, a private PostgreSQL cluster) so it can `kill -9` it without disturbing anything else, sends
 * orders the way Shopify does (503 → retried), and checks that every accepted order became exactly one delivered
 * message and that the system recovered by itself.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTestSystem, type TestSystem } from '../helpers/system.js';
import { startPrivatePostgres, startPrivateRedis } from './lib/services.js';
import { countAtProvider, eventually, orderMessageRefs, orderWebhook, sendLikeShopify } from './lib/workload.js';

const ORDERS = 300;
const SHOP = 'restarts.myshopify.com';

interface Counts {
  events: number;
  processed: number;
  messages: number;
  delivered: number;
}

/** The orders' confirmations (each new subscribed customer also gets a welcome message, deferred by quiet hours). */
async function counts(sys: TestSystem): Promise<Counts> {
  const [row] = await sys.db.query<{ events: number; processed: number; messages: number; delivered: number }>(
    `SELECT (SELECT count(*)::int FROM events) AS events,
            (SELECT count(*)::int FROM events WHERE status = 'processed') AS processed,
            (SELECT count(*)::int FROM messages WHERE trigger = 'order_paid') AS messages,
            (SELECT count(*)::int FROM messages WHERE trigger = 'order_paid' AND status = 'delivered') AS delivered`,
  );
  return row!;
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
});

async function system(env: Record<string, string>): Promise<TestSystem> {
  const sys = await startTestSystem('postgres', {
    listen: true,
    workers: ['events', 'automations', 'delivery'],
    env: { DELIVERY_RECONCILE_DELAY_MS: '1000', MITTO_TIMEOUT_MS: '2000', ...env },
  });
  cleanups.push(() => sys.teardown());
  return sys;
}

async function expectEveryOrderDeliveredOnce(sys: TestSystem): Promise<void> {
  const final = await eventually('every order delivered', () => counts(sys), (c) => c.delivered >= ORDERS, 180_000);
  expect(final).toEqual({ events: ORDERS, processed: ORDERS, messages: ORDERS, delivered: ORDERS });
  const provider = countAtProvider(sys.sandbox!.messages(), await orderMessageRefs(sys.db));
  expect(provider.duplicated).toEqual([]);
  expect(provider.references).toBe(ORDERS);
}

describe('faults: a restarted Redis or PostgreSQL loses nothing', () => {
  it('Redis killed (-9) and restarted with AOF while webhooks arrive: every order delivered once', async () => {
    const redis = await startPrivateRedis();
    cleanups.push(() => redis.stop());
    const sys = await system({ REDIS_URL: redis.url });
    const webhooks = Array.from({ length: ORDERS }, (_, i) => orderWebhook(i, SHOP));

    const sending = sendLikeShopify(sys.url!, webhooks);
    await eventually('a third of the orders in', () => counts(sys), (c) => c.events >= ORDERS / 3, 60_000);
    await redis.crashAndRestart(1000);
    const sent = await sending;

    expect(sent.unexpected).toEqual([]);
    expect(sent.retries).toBeGreaterThan(0); // the outage was seen: intake answered 503 while Redis was away
    await expectEveryOrderDeliveredOnce(sys);
  });

  it('PostgreSQL stopped (immediate) and restarted while webhooks arrive: the system recovers by itself, every order delivered once', async () => {
    const postgres = await startPrivatePostgres();
    cleanups.push(() => postgres.stop());
    const sys = await system({ DATABASE_URL: postgres.url });
    const webhooks = Array.from({ length: ORDERS }, (_, i) => orderWebhook(i, SHOP));

    const sending = sendLikeShopify(sys.url!, webhooks);
    await eventually('a third of the orders in', () => counts(sys), (c) => c.events >= ORDERS / 3, 60_000);
    await postgres.crashAndRestart(1500);
    const sent = await sending;

    expect(sent.unexpected).toEqual([]);
    expect(sent.retries).toBeGreaterThan(0); // the outage was seen: intake answered 503 while the database was away
    await expectEveryOrderDeliveredOnce(sys);
    // Health says so too, without a restart of the process.
    const health = await sys.app!.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(200);
  });
});
