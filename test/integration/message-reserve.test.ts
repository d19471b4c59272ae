/**
 * `reserveMessage` without a frequency cap: one prepared insert keyed by (shop, idempotency key). Every column it
 * writes reads back as given (nulls, a scheduled time, warnings with quotes and commas), on PostgreSQL and PGlite, and
 * a second reservation under the same key returns the first row.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reserveMessage, type NewMessage } from '../../src/db/messages.js';
import { seedContact, uniquePhone, uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';

describe.each(DB_KINDS)('reserving a message on %s', (kind) => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: [] });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  it('stores every column as given and returns the same row for the same key', async () => {
    const { shop, contact } = await seedContact(sys.db.db, uniqueShop('reserve'), uniquePhone());
    const scheduledFor = new Date('2026-12-01T08:00:00.000Z');
    const full: NewMessage = {
      shopId: shop.id,
      contactId: contact.id,
      campaignId: '42',
      kind: 'marketing',
      trigger: 'abandoned_checkout',
      idempotencyKey: `reserve-${Date.now()}`,
      toPhone: contact.phone,
      sender: 'Blossom',
      body: 'Still thinking about it? «Spring» is 20% off',
      encoding: 'UCS-2',
      segments: 1,
      costEstimate: 0.0325,
      renderWarnings: ['unknown variable "customer.nickname", shown empty', 'a, b {c}'],
      scheduledFor,
      requestId: 'req_reserve',
      checkoutToken: 'tok-123',
    };
    const first = await reserveMessage(sys.db.db, full, null);
    expect(first.outcome).toBe('created');
    if (first.outcome === 'capped') throw new Error('not capped');
    expect(first.message).toMatchObject({
      shopId: shop.id,
      contactId: contact.id,
      automationId: null,
      campaignId: '42',
      kind: 'marketing',
      trigger: 'abandoned_checkout',
      toPhone: contact.phone,
      body: full.body,
      encoding: 'UCS-2',
      segments: 1,
      costEstimate: '0.0325',
      renderWarnings: full.renderWarnings,
      scheduledFor,
      requestId: 'req_reserve',
      checkoutToken: 'tok-123',
      status: 'queued',
    });
    const again = await reserveMessage(sys.db.db, { ...full, body: 'another body' }, null);
    expect(again).toMatchObject({ outcome: 'duplicate', message: { id: first.message.id, body: full.body } });

    const bare = await reserveMessage(
      sys.db.db,
      { ...full, contactId: null, campaignId: null, trigger: null, toPhone: null, sender: null, scheduledFor: null, requestId: null, checkoutToken: null, renderWarnings: [], idempotencyKey: `${full.idempotencyKey}-bare` },
      null,
    );
    expect(bare.outcome).toBe('created');
    if (bare.outcome === 'capped') throw new Error('not capped');
    expect(bare.message).toMatchObject({ contactId: null, campaignId: null, trigger: null, toPhone: null, sender: null, scheduledFor: null, requestId: null, checkoutToken: null, renderWarnings: [] });
  });
});
