import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook } from '../helpers/webhooks.js';

describe.each(DB_KINDS)('harness on %s', (kind) => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem(kind);
  });
  afterAll(async () => {
    await sys?.teardown();
  });
  it('accepts a signed webhook', async () => {
    const res = await postWebhook(sys.app!, { topic: 'orders/paid', body: fixture('orders-paid') });
    expect(res.statusCode).toBe(200);
    expect(await sys.queues.get('events').getJobCounts('waiting')).toEqual({ waiting: 1 });
  });
});
