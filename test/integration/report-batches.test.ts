/**
 * Delivery reports settled in batches (`applyDeliveryReports`, and the group-commit batcher behind the callback
 * route) against reports applied one by one: the same rows, the same answers, on PostgreSQL and PGlite. Reports that
 * name the same message in one batch are applied in the order they came.
 */
import { inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/client.js';
import { applyDeliveryReport, applyDeliveryReports, claimForSending, markFailed, markSent, UNCONFIRMED, type DeliveryReportUpdate } from '../../src/db/messages.js';
import { messages } from '../../src/db/schema.js';
import { createReportBatcher } from '../../src/messages/reportBatcher.js';
import { seedMessage, uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';

/** The states a report can meet: sending, sent, delivered, failed at send, failed as unconfirmed, queued. */
const STATES = ['sending', 'sent', 'delivered', 'failed', 'unconfirmed', 'queued'] as const;
type State = (typeof STATES)[number];

async function messageIn(db: Db, shop: string, state: State, tag: string): Promise<number> {
  const { message } = await seedMessage(db, { shop });
  const id = message.id;
  if (state === 'queued') return id;
  await claimForSending(db, id, 'mitto');
  if (state === 'sending') return id;
  if (state === 'unconfirmed') {
    await markFailed(db, id, { code: UNCONFIRMED, text: 'no report' });
    return id;
  }
  if (state === 'failed') {
    await markFailed(db, id, { code: 'MITTO_INVALID_RECEIVER', text: 'refused' });
    return id;
  }
  await markSent(db, id, `p-${tag}-${id}`, new Date('2026-11-30T10:00:00Z'));
  if (state === 'delivered') await applyDeliveryReport(db, 'mitto', { providerMessageId: null, reference: String(id), status: 'delivered', errorCode: null, at: new Date('2026-11-30T10:00:05Z') });
  return id;
}

async function snapshot(db: Db, ids: number[]) {
  const rows = await db.select().from(messages).where(inArray(messages.id, ids));
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.map((id) => {
    const r = byId.get(id)!;
    // Times the tests chose compare as they are; one the database stamped (now()) only as set.
    const time = (d: Date | null) => (d === null ? null : d.toISOString().startsWith('2026-11-30T10:0') ? d.toISOString() : 'stamped');
    return { status: r.status, errorCode: r.errorCode, errorText: r.errorText, sentAt: time(r.sentAt), deliveredAt: time(r.deliveredAt), failedAt: time(r.failedAt), pid: r.providerMessageId?.replace(/\d+$/, '') ?? null };
  });
}

describe.each(DB_KINDS)('delivery reports in batches on %s', (kind) => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: [] });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  it('a batch leaves every row as the same reports applied one by one would, and answers the same', async () => {
    const db = sys.db.db;
    const at = new Date('2026-11-30T10:01:00Z');
    const kinds: Array<DeliveryReportUpdate['status']> = ['delivered', 'failed', 'pending'];
    // Two twin sets of messages, one message per (state, kind of report): one set gets the reports one by one,
    // the other in one batch.
    const plan = STATES.flatMap((state) => kinds.map((status) => ({ state, status })));
    const one = uniqueShop('one');
    const many = uniqueShop('many');
    const singles: number[] = [];
    const batched: number[] = [];
    for (const p of plan) {
      singles.push(await messageIn(db, one, p.state, 'twin'));
      batched.push(await messageIn(db, many, p.state, 'twin'));
    }
    const report = (id: number, status: DeliveryReportUpdate['status'], byProviderId: boolean): DeliveryReportUpdate => ({
      providerMessageId: byProviderId ? `late-${id}` : null,
      reference: String(id),
      status,
      errorCode: status === 'failed' ? 'UNDELIV' : null,
      at,
    });
    const oneByOne = [];
    for (const [i, p] of plan.entries()) oneByOne.push(await applyDeliveryReport(db, 'mitto', report(singles[i]!, p.status, i % 2 === 0)));
    const inBatch = await applyDeliveryReports(db, 'mitto', plan.map((p, i) => report(batched[i]!, p.status, i % 2 === 0)));

    const strip = (r: Awaited<ReturnType<typeof applyDeliveryReport>>) => (r ? { status: r.message.status, changed: r.changed } : undefined);
    expect(inBatch.map(strip)).toEqual(oneByOne.map(strip));
    expect(await snapshot(db, batched)).toEqual(await snapshot(db, singles));
    // The sample covers every way a report can go: moved forward, and left alone.
    expect(new Set(oneByOne.map((r) => r?.changed))).toEqual(new Set([true, false]));
  });

  it('reports for one message in one batch are applied in the order they came; unknown ones match nothing', async () => {
    const db = sys.db.db;
    const shop = uniqueShop('order');
    const x = await messageIn(db, shop, 'sent', 'x');
    const y = await messageIn(db, shop, 'sent', 'y');
    const at = new Date();
    const r = (id: number | null, status: DeliveryReportUpdate['status'], pid: string | null = null): DeliveryReportUpdate => ({
      providerMessageId: pid,
      reference: id === null ? null : String(id),
      status,
      errorCode: status === 'failed' ? 'UNDELIV' : null,
      at,
    });
    const results = await applyDeliveryReports(db, 'mitto', [
      r(x, 'pending'),
      r(x, 'delivered'),
      r(x, 'failed'),
      r(y, 'failed'),
      r(null, 'delivered', 'nobody-1'),
      r(null, 'delivered', 'nobody-2'),
      r(999_999_999_999, 'delivered'),
    ]);
    expect(results.map((res) => res && { status: res.message.status, changed: res.changed })).toEqual([
      { status: 'sent', changed: false },
      { status: 'delivered', changed: true },
      { status: 'delivered', changed: false },
      { status: 'failed', changed: true },
      undefined,
      undefined,
      undefined,
    ]);
    expect((await snapshot(db, [x, y])).map((s) => s.status)).toEqual(['delivered', 'failed']);
  });

  it('the batcher answers each of many reports arriving at once, and stores every one', async () => {
    const db = sys.db.db;
    const shop = uniqueShop('burst');
    const ids: number[] = [];
    for (let i = 0; i < 60; i++) ids.push(await messageIn(db, shop, 'sent', 'burst'));
    const batcher = createReportBatcher(db, 'mitto');
    const answers = await Promise.all(
      ids.map((id) => batcher.apply({ providerMessageId: null, reference: String(id), status: 'delivered', errorCode: null, at: new Date() })),
    );
    expect(answers.map((a) => a?.message.id)).toEqual(ids);
    expect(answers.every((a) => a?.changed === true && a.message.status === 'delivered')).toBe(true);
    expect(new Set((await snapshot(db, ids)).map((s) => s.status))).toEqual(new Set(['delivered']));
  });
});
