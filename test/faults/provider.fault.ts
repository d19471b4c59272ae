/**
 * A provider having a bad day: 30% of sends answered 5xx, 10% held unanswered until the client times out (the message
 * was taken: a send whose outcome is unknown), bursts of 429, and a small share of permanent rejections. Everything
 * that can be delivered is delivered in the end (BullMQ's retries, then the `retry_failed_messages` housekeeping task
 * as its schedule would run it); nothing reaches the provider twice; a permanent rejection ends its message, no retry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSystem, type TestSystem } from '../helpers/system.js';
import { waitForJobState } from '../helpers/jobs.js';
import { countAtProvider, eventually, orderMessageRefs, orderWebhook, sendLikeShopify } from './lib/workload.js';

const ORDERS = 300;
const SHOP = 'flaky-provider.myshopify.com';
const PERMANENT = new Set(['MITTO_INVALID_TEXT', 'MITTO_INVALID_RECEIVER']);

interface Row {
  id: string;
  status: string;
  send_attempts: number;
  error_code: string | null;
}

const rows = (sys: TestSystem) =>
  sys.db.query<Row>(`SELECT id::text, status, send_attempts, error_code FROM messages WHERE trigger = 'order_paid' ORDER BY id`);

describe('faults: 5xx, timeouts, 429 bursts and permanent rejections at the provider', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem('postgres', {
      listen: true,
      workers: ['events', 'automations', 'delivery', 'housekeeping'],
      env: {
        HOUSEKEEPING_SCHEDULES: 'false',
        MITTO_TIMEOUT_MS: '400',
        DELIVERY_RECONCILE_DELAY_MS: '500',
        DELIVERY_RECONCILE_ATTEMPTS: '40',
      },
    });
  });
  afterAll(() => sys?.teardown());

  it('everything deliverable is delivered once; permanent errors fail without a retry', async () => {
    const sandbox = sys.sandbox!;
    sandbox.setFaults({ errorRate: 0.3, timeoutRate: 0.1, hangMs: 1500, permanentCode: 4, permanentRate: 0.03, dlrDelayMs: 20, seed: 7 });

    const sending = sendLikeShopify(sys.url!, Array.from({ length: ORDERS }, (_, i) => orderWebhook(i, SHOP)), 8);
    // Bursts of 429 while the backlog drains.
    let bursts = 0;
    const burster = setInterval(() => {
      if (bursts++ < 5) sandbox.setFaults({ rateLimitBurst: 10 });
    }, 700);
    try {
      expect((await sending).unexpected).toEqual([]);
      // BullMQ's own retries first: every order's message reaches an end state (or waits in a retry no longer).
      await eventually(
        'every message settled by the delivery retries',
        () => rows(sys),
        (rs) => rs.length === ORDERS && rs.every((r) => r.status === 'delivered' || r.status === 'failed'),
        240_000,
      );
    } finally {
      clearInterval(burster);
    }
    expect(sandbox.stats().rateLimited).toBeGreaterThan(0);

    // Then what the `retry_failed_messages` schedule does every 15 minutes: transient failures are sent again.
    const transientFailures = (await rows(sys)).filter((r) => r.status === 'failed' && !PERMANENT.has(r.error_code ?? ''));
    if (transientFailures.length) {
      const jobId = await sys.queues.enqueueJob('housekeeping', 'cleanup', { task: 'retry_failed_messages' });
      await waitForJobState(sys.queues.get('housekeeping'), jobId, 'completed', 30_000);
    }
    const final = await eventually(
      'every deliverable message delivered',
      () => rows(sys),
      (rs) => rs.every((r) => r.status === 'delivered' || (r.status === 'failed' && PERMANENT.has(r.error_code ?? ''))),
      240_000,
    );

    const permanent = final.filter((r) => r.status === 'failed');
    const delivered = final.filter((r) => r.status === 'delivered');
    const provider = countAtProvider(sandbox.messages(), await orderMessageRefs(sys.db));
    const stats = sandbox.stats();
    process.stdout.write(
      `provider faults, ${ORDERS} orders: ${delivered.length} delivered, ${permanent.length} failed permanently, ` +
        `${provider.duplicated.length} duplicated; sandbox saw ${stats.requests} requests, ${stats.serverErrors} 5xx, ` +
        `${stats.rateLimited} 429, ${stats.unanswered} unanswered; ${transientFailures.length} re-sent by retry_failed_messages\n`,
    );
    expect(final).toHaveLength(ORDERS);
    expect(provider.duplicated).toEqual([]); // nothing sent twice, timeouts included: they were reconciled, not resent
    expect(provider.references).toBe(delivered.length); // what the provider took was delivered, and nothing else was
    expect(stats.serverErrors).toBeGreaterThan(0);
    expect(stats.unanswered).toBeGreaterThan(0);
    // Permanent rejections end their message: every code-4 answer the sandbox gave belongs to a message failed for it
    // (a retry after one would have been accepted, and its message delivered), and no 5xx follows it.
    expect(permanent.length).toBeGreaterThan(0);
    expect(permanent.every((r) => r.error_code === 'MITTO_INVALID_TEXT')).toBe(true);
    expect(stats.responseCodes['4']).toBe(permanent.length);
  });
});
