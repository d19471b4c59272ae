import { describe, expect, it } from 'vitest';
import { isAppError } from '../../src/errors.js';
import { DEFAULT_JOB_OPTIONS, QUEUE_CATALOG, QUEUE_NAMES, jobIdFrom, newRequestId, parseJobData } from '../../src/queue/queues.js';

const stamps = { requestId: 'req_1', enqueuedAt: new Date().toISOString() };

describe('queue catalog', () => {
  it('names the five queues of the specification', () => {
    expect(QUEUE_NAMES).toEqual(['events', 'automations', 'campaigns', 'delivery', 'housekeeping']);
    expect(Object.keys(QUEUE_CATALOG).sort()).toEqual([...QUEUE_NAMES].sort());
  });

  it('uses the specification default job options on every queue', () => {
    expect(DEFAULT_JOB_OPTIONS).toEqual({ removeOnComplete: 100, removeOnFail: 50, attempts: 5, backoff: { type: 'exponential', delay: 2000 } });
    for (const q of QUEUE_NAMES) expect(QUEUE_CATALOG[q].jobOptions).toBe(DEFAULT_JOB_OPTIONS);
  });

  it('accepts the specification usage examples', () => {
    expect(
      parseJobData('events', 'orders/paid', { topic: 'orders/paid', shopId: 'shop.myshopify.com', objectId: 'gid://shopify/Order/1', raw: {}, ...stamps }),
    ).toMatchObject({ topic: 'orders/paid' });
    expect(parseJobData('campaigns', 'batch', { campaignId: 'campaign-123', shopId: 'shop.myshopify.com', batchSize: 100, ...stamps })).toMatchObject({ batchSize: 100 });
    expect(parseJobData('housekeeping', 'cleanup', { task: 'cleanup_old_messages', shopId: 'shop.myshopify.com', ...stamps })).toMatchObject({ task: 'cleanup_old_messages' });
    expect(parseJobData('automations', 'evaluate', { trigger: 'orders/paid', shopId: 'shop.myshopify.com', context: {}, ...stamps })).toMatchObject({ trigger: 'orders/paid' });
    expect(parseJobData('delivery', 'send', { shopId: 'shop.myshopify.com', template: 'Hi', ...stamps })).toMatchObject({ context: {} });
  });

  it('names every bad field in one typed error', () => {
    try {
      parseJobData('events', 'orders/paid', { topic: 'nope', shopId: '', raw: 'x', ...stamps });
      expect.unreachable();
    } catch (err) {
      expect(isAppError(err, 'INVALID_JOB_DATA')).toBe(true);
      expect((err as Error).message).toMatch(/topic: /);
      expect((err as Error).message).toMatch(/shopId: /);
      expect((err as Error).message).toMatch(/raw: /);
    }
  });

  it('rejects unknown job names', () => {
    expect(() => parseJobData('campaigns', 'explode', { campaignId: 'c', shopId: 'shop.myshopify.com', ...stamps })).toThrow(
      expect.objectContaining({ code: 'UNKNOWN_JOB_NAME' }),
    );
  });

  it('mints request ids in the req_<ms>_<random> format', () => {
    expect(newRequestId(1700000000000)).toMatch(/^req_1700000000000_[0-9a-f]{8}$/);
    expect(newRequestId()).not.toBe(newRequestId());
  });

  it('builds job ids without ":"', () => {
    expect(jobIdFrom('wh', 'shop.myshopify.com', 'a:b c')).toBe('wh-shop.myshopify.com-a_b_c');
  });
});
