import { describe, expect, it } from 'vitest';
import { isAppError } from '../../src/errors.js';
import {
  DEFAULT_JOB_OPTIONS,
  HOUSEKEEPING_TASKS,
  JOB_NAMES,
  QUEUE_CATALOG,
  QUEUE_NAMES,
  jobIdFrom,
  newRequestId,
  parseJobData,
  type QueueRegistry,
} from '../../src/queue/queues.js';

const stamps = { requestId: 'req_1', enqueuedAt: new Date().toISOString() };
const SHOP = 'shop.myshopify.com';

/** The AppError `parseJobData` throws for this data, or a failure when it accepts it. */
function refusal(queue: Parameters<typeof parseJobData>[0], name: string, data: unknown): { code: string; message: string } {
  try {
    parseJobData(queue, name, data);
  } catch (err) {
    if (isAppError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  return expect.unreachable(`${queue}:${name} accepted ${JSON.stringify(data)}`);
}

describe('queue catalog', () => {
  it('names the five queues of the specification, and sync (issue 17)', () => {
    expect(QUEUE_NAMES).toEqual(['events', 'automations', 'campaigns', 'delivery', 'housekeeping', 'sync']);
    expect(Object.keys(QUEUE_CATALOG).sort()).toEqual([...QUEUE_NAMES].sort());
  });

  it('uses the specification default job options on every queue', () => {
    expect(DEFAULT_JOB_OPTIONS).toEqual({ removeOnComplete: 100, removeOnFail: 50, attempts: 5, backoff: { type: 'exponential', delay: 2000 } });
    for (const q of QUEUE_NAMES) expect(QUEUE_CATALOG[q].jobOptions).toBe(DEFAULT_JOB_OPTIONS);
  });

  it('accepts the specification usage examples, as numbers where rows have numbers', () => {
    expect(parseJobData('events', 'orders/paid', { topic: 'orders/paid', shopId: SHOP, objectId: 'gid://shopify/Order/1', raw: {}, ...stamps })).toMatchObject({
      topic: 'orders/paid',
    });
    expect(parseJobData('housekeeping', 'cleanup', { task: 'cleanup_old_messages', shopId: SHOP, ...stamps })).toMatchObject({ task: 'cleanup_old_messages' });
    expect(parseJobData('automations', 'evaluate', { trigger: 'orders/paid', shopId: SHOP, context: {}, ...stamps })).toMatchObject({ trigger: 'orders/paid' });
    // A campaign id sent as a string of digits is the number it spells.
    expect(parseJobData('campaigns', 'batch', { campaignId: '123', shopId: SHOP, batchSize: 100, ...stamps })).toMatchObject({ campaignId: 123, batchSize: 100 });
    // The specification's delivery job: no messageId, a recipient and a template rendered with context.
    expect(parseJobData('delivery', 'send', { shopId: SHOP, recipient: '+15550100000', template: 'Hi {{ name }}', context: { name: 'Ann' }, ...stamps })).toMatchObject({
      recipient: '+15550100000',
    });
    expect(parseJobData('delivery', 'send', { shopId: SHOP, messageId: 42, ...stamps })).toMatchObject({ messageId: 42, context: {} });
  });

  it('stamps enqueuedAt with the job creation time when a plain producer sent none', () => {
    const created = Date.UTC(2026, 0, 2, 3, 4, 5);
    const data = parseJobData('housekeeping', 'cleanup', { task: 'rollup_reports', requestId: 'req_789' }, created);
    expect(data.enqueuedAt).toBe(new Date(created).toISOString());
    // Without a creation time (the producer side) it stays required.
    expect(refusal('housekeeping', 'cleanup', { task: 'rollup_reports', requestId: 'req_789' }).message).toMatch(/enqueuedAt/);
  });

  it('refuses payloads the processors can never run, naming the field', () => {
    // The specification's `campaign-123` names no campaign: refused here, not turned into NaN in SQL.
    expect(refusal('campaigns', 'batch', { campaignId: 'campaign-123', shopId: SHOP, batchSize: 100, ...stamps })).toMatchObject({
      code: 'INVALID_JOB_DATA',
      message: expect.stringMatching(/campaignId: /),
    });
    // A delivery with neither a message nor what makes one.
    const noMessage = refusal('delivery', 'send', { shopId: SHOP, template: 'Hi', ...stamps });
    expect(noMessage.code).toBe('INVALID_JOB_DATA');
    expect(noMessage.message).toMatch(/recipient: /);
    expect(refusal('delivery', 'send', { shopId: SHOP, recipient: '+15550100000', ...stamps }).message).toMatch(/template: /);
    expect(refusal('delivery', 'send', { shopId: SHOP, messageId: '42', ...stamps }).message).toMatch(/messageId: /);
    // A campaign's batch: a list of message ids, never empty, never beside a single messageId.
    expect(parseJobData('delivery', 'send', { shopId: SHOP, messageIds: [1, 2, 3], campaignId: 7, ...stamps })).toMatchObject({ messageIds: [1, 2, 3] });
    expect(refusal('delivery', 'send', { shopId: SHOP, messageIds: [], ...stamps }).message).toMatch(/messageIds: /);
    expect(refusal('delivery', 'send', { shopId: SHOP, messageIds: [1, 'two'], ...stamps }).message).toMatch(/messageIds\.1: /);
    expect(refusal('delivery', 'send', { shopId: SHOP, messageIds: [1], messageId: 1, ...stamps }).message).toMatch(/messageIds: not together with messageId/);
    // An events job with neither a stored event nor a payload.
    expect(refusal('events', 'orders/paid', { topic: 'orders/paid', shopId: SHOP, ...stamps }).message).toMatch(/storedEventId: /);
    // A task no processor knows.
    expect(refusal('housekeeping', 'cleanup', { task: 'drop_everything', ...stamps })).toMatchObject({
      code: 'UNKNOWN_HOUSEKEEPING_TASK',
      message: expect.stringMatching(/task: /),
    });
  });

  it('takes job names and housekeeping tasks from one list each', () => {
    for (const task of HOUSEKEEPING_TASKS) expect(parseJobData('housekeeping', 'run', { task, ...stamps }).task).toBe(task);
    for (const name of JOB_NAMES.housekeeping) expect(parseJobData('housekeeping', name, { task: 'reconcile', ...stamps }).task).toBe('reconcile');
    expect(QUEUE_CATALOG.campaigns.jobNames).toBe(JOB_NAMES.campaigns.join(', '));
  });

  it('types job names by the catalog, so a misspelt one does not compile (checked by tsc)', () => {
    const producer = (registry: QueueRegistry) => [
      // @ts-expect-error delivery has no job named "sned"
      registry.enqueueJob('delivery', 'sned', { shopId: SHOP, messageId: 1 }),
      // @ts-expect-error housekeeping has no task "tidy"
      registry.enqueueJob('housekeeping', 'run', { task: 'tidy' }),
      registry.enqueueJob('events', 'orders/paid', { topic: 'orders/paid', shopId: SHOP, storedEventId: 1 }),
    ];
    expect(producer).toBeTypeOf('function');
  });

  it('names every bad field in one typed error', () => {
    const { code, message } = refusal('events', 'orders/paid', { topic: 'nope', shopId: '', raw: 'x', ...stamps });
    expect(code).toBe('INVALID_JOB_DATA');
    expect(message).toMatch(/topic: /);
    expect(message).toMatch(/shopId: /);
    expect(message).toMatch(/raw: /);
  });

  it('rejects unknown job names', () => {
    expect(() => parseJobData('campaigns', 'explode', { campaignId: 1, shopId: SHOP, ...stamps })).toThrow(expect.objectContaining({ code: 'UNKNOWN_JOB_NAME' }));
  });

  it('mints request ids in the req_<ms>_<random> format', () => {
    expect(newRequestId(1700000000000)).toMatch(/^req_1700000000000_[0-9a-f]{8}$/);
    expect(newRequestId()).not.toBe(newRequestId());
  });

  it('builds job ids without ":"', () => {
    expect(jobIdFrom('wh', 'shop.myshopify.com', 'a:b c')).toBe('wh-shop.myshopify.com-a_b_c');
  });
});
