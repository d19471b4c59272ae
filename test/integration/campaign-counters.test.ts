/**
 * Issue 13 (Growth): a campaign's progress comes from counters kept as its messages change status
 * (`0008_campaign_counters.sql`), not from a count over its messages. The counters must equal a full count after
 * sends, failures, skips, cancels, and delivery reports received twice, out of order and concurrently; and reading
 * progress must be one statement that never reads `messages`.
 */
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { materializeNextPage, type CampaignDeps } from '../../src/campaigns/batch.js';
import { campaignProgress, createCampaign, sendCampaign, type CampaignServiceDeps } from '../../src/campaigns/service.js';
import { campaignCounts, campaignCountsQuery, cancelQueuedMessages, getCampaign, lockCampaign } from '../../src/db/campaigns.js';
import { applyDeliveryReport, claimForSending, markFailed, markNotSent, markSent, releaseClaim } from '../../src/db/messages.js';
import { messages, type Shop } from '../../src/db/schema.js';
import { toQuery } from '../../src/db/segmentFilter.js';
import { upsertShop } from '../../src/db/shops.js';
import { createLogger } from '../../src/logger.js';
import { createRenderer } from '../../src/messages/render.js';
import { uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';

const silent = createLogger({ level: 'silent' });

/** A shop (quiet hours and the cap off) whose first `notSubscribed` of `n` contacts tagged `fan` are not subscribed. */
async function seedShop(sys: TestSystem, n: number, notSubscribed: number): Promise<Shop> {
  const { shop } = await upsertShop(sys.db.db, uniqueShop('count'));
  await sys.db.query(
    `WITH s AS (
       UPDATE shops SET country_code = 'CH', settings = '{"quietHours": {"enabled": false}, "frequencyCap": null, "sender": "Blossom"}'::jsonb
        WHERE id = $1::bigint RETURNING id)
     INSERT INTO contacts (shop_id, phone, first_name, country_code, sms_consent, tags)
     SELECT s.id, '+4178' || lpad(g::text, 7, '0'), 'Fan', 'CH', CASE WHEN g > $3::int THEN 'subscribed' ELSE 'not_subscribed' END, '{fan}'
       FROM s, generate_series(1, $2::int) AS g`,
    [shop.id, n, notSubscribed],
  );
  return (await upsertShop(sys.db.db, shop.domain)).shop;
}

async function fullCount(sys: TestSystem, id: number): Promise<Record<string, number>> {
  const rows = await sys.db.db
    .select({ status: messages.status, n: sql<number>`count(*)::int` })
    .from(messages)
    .where(eq(messages.campaignId, String(id)))
    .groupBy(messages.status);
  const by = Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  return Object.fromEntries(['queued', 'sending', 'sent', 'delivered', 'failed', 'skipped', 'cancelled'].map((s) => [s, by[s] ?? 0]));
}

async function fullSkipCount(sys: TestSystem, id: number): Promise<Record<string, number>> {
  const rows = await sys.db.db
    .select({ reason: messages.errorCode, n: sql<number>`count(*)::int` })
    .from(messages)
    .where(sql`${messages.campaignId} = ${String(id)} AND ${messages.status} = 'skipped'`)
    .groupBy(messages.errorCode);
  return Object.fromEntries(rows.map((r) => [r.reason ?? 'unknown', Number(r.n)]));
}

describe.each(DB_KINDS)('campaign counters on %s', (kind) => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: [], env: { SMS_PROVIDER: 'sandbox' } });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  it('equal a full count of the messages after sends, failures, skips, a cancel and duplicate, late and concurrent delivery reports', async () => {
    const shop = await seedShop(sys, 120, 20);
    const svc: CampaignServiceDeps = { database: sys.db, queues: sys.queues, logger: silent, renderer: createRenderer(), sms: sys.config.sms, pacing: { batchSize: 40 } };
    const draft = await createCampaign(svc, shop, { name: 'Count me', body: 'Hi {{ customer.firstName }}', filter: { tags: { any: ['fan'] } } });
    const started = await sendCampaign(svc, shop, draft.id);
    const deps: CampaignDeps = { ...svc, pacing: { batchSize: 40, maxBacklog: 1_000_000, pollMs: 10, maxPagesPerRun: 100 } };
    const created: number[] = [];
    for (;;) {
      const page = await materializeNextPage(draft.id, started.generation, shop, deps, 'req_counters');
      if (page.kind !== 'page') throw new Error(`unexpected ${page.kind}`);
      created.push(...page.created.map((m) => m.id));
      if (page.exhausted) break;
    }
    expect(created).toHaveLength(100);
    expect(await campaignCounts(sys.db.db, draft.id)).toMatchObject({ queued: 100, skipped: 20, skippedByReason: { not_subscribed: 20 } });

    const [a, b, c, d, e, f, g, ...rest] = created as [number, number, number, number, number, number, number, ...number[]];
    // Claimed twice at once: one claim wins, one transition counted.
    await Promise.all([claimForSending(sys.db.db, a, 'mitto'), claimForSending(sys.db.db, a, 'mitto')]);
    await markSent(sys.db.db, a, 'p-a', new Date());
    // The same delivery report twice, concurrently, then once more.
    const dlr = { providerMessageId: 'p-a', reference: String(a), status: 'delivered' as const, errorCode: null, at: new Date() };
    await Promise.all([applyDeliveryReport(sys.db.db, 'mitto', dlr), applyDeliveryReport(sys.db.db, 'mitto', dlr)]);
    await applyDeliveryReport(sys.db.db, 'mitto', dlr);
    // A late "pending" and a late "failed" after delivered move nothing; markSent after delivered moves nothing.
    await applyDeliveryReport(sys.db.db, 'mitto', { ...dlr, status: 'pending' });
    await applyDeliveryReport(sys.db.db, 'mitto', { ...dlr, status: 'failed', errorCode: 'X' });
    await markSent(sys.db.db, a, 'p-a', new Date());
    // Delivery report before the send is recorded (the provider answered the report first).
    await claimForSending(sys.db.db, b, 'mitto');
    await applyDeliveryReport(sys.db.db, 'mitto', { providerMessageId: null, reference: String(b), status: 'delivered', errorCode: null, at: new Date() });
    await markSent(sys.db.db, b, 'p-b', new Date());
    // Sent, then failed by a report.
    await claimForSending(sys.db.db, c, 'mitto');
    await markSent(sys.db.db, c, 'p-c', new Date());
    await applyDeliveryReport(sys.db.db, 'mitto', { providerMessageId: 'p-c', reference: null, status: 'failed', errorCode: 'ABSENT', at: new Date() });
    // Failed at send, twice.
    await claimForSending(sys.db.db, d, 'mitto');
    await markFailed(sys.db.db, d, { code: 'INVALID', text: 'invalid number' });
    await markFailed(sys.db.db, d, { code: 'INVALID', text: 'invalid number' });
    // A claim released for a retry, then sent.
    await claimForSending(sys.db.db, e, 'mitto');
    await releaseClaim(sys.db.db, e, { code: 'NETWORK', text: 'reset' });
    await claimForSending(sys.db.db, e, 'mitto');
    await markSent(sys.db.db, e, 'p-e', new Date());
    // Skipped at send time (consent withdrawn since the page), twice; left sending.
    await markNotSent(sys.db.db, f, 'skipped', 'opted_out');
    await markNotSent(sys.db.db, f, 'skipped', 'opted_out');
    await claimForSending(sys.db.db, g, 'mitto');
    // Every message still queued is cancelled with the campaign.
    expect(await cancelQueuedMessages(sys.db.db, draft.id)).toBe(rest.length);

    const counts = await campaignCounts(sys.db.db, draft.id);
    const { skippedByReason, ...byStatus } = counts;
    expect(byStatus).toEqual(await fullCount(sys, draft.id));
    expect(skippedByReason).toEqual(await fullSkipCount(sys, draft.id));
    expect(byStatus).toEqual({ queued: 0, sending: 1, sent: 1, delivered: 2, failed: 2, skipped: 21, cancelled: rest.length });
    expect(skippedByReason).toEqual({ not_subscribed: 20, opted_out: 1 });

    const progress = await campaignProgress(svc, (await getCampaign(sys.db.db, draft.id))!);
    expect(progress).toMatchObject({ total: 120, processed: 120, enqueued: 99, sent: 3, delivered: 2, failed: 2, skipped: 21, sending: 1 });
  });

  it.runIf(kind === 'postgres')('a page holding its campaign never blocks a delivery worker counting a status change (no deadlock)', async () => {
    // A page locks its campaign row while a delivery worker's status change may add the first counter row of its
    // session, whose foreign key check takes a KEY SHARE lock on that campaign row. Were the page's lock FOR UPDATE,
    // the worker would wait on the page; if the page then upserted the counter key the worker had just inserted, each
    // would wait on the other (CI saw "deadlock detected" in the campaigns test). The page's lock must let the check pass.
    const shop = await seedShop(sys, 5, 0);
    const svc: CampaignServiceDeps = { database: sys.db, queues: sys.queues, logger: silent, renderer: createRenderer(), sms: sys.config.sms, pacing: { batchSize: 2 } };
    const draft = await createCampaign(svc, shop, { name: 'Locks', body: 'Hi', filter: { tags: { any: ['fan'] } } });
    const started = await sendCampaign(svc, shop, draft.id);
    const deps: CampaignDeps = { ...svc, pacing: { batchSize: 2, maxBacklog: 1_000_000, pollMs: 10, maxPagesPerRun: 100 } };
    const page = await materializeNextPage(draft.id, started.generation, shop, deps, 'req_locks');
    if (page.kind !== 'page') throw new Error(`unexpected ${page.kind}`);
    // No counter row yet for any session: the worker's change takes the insert path and its foreign key check.
    await sys.db.query('DELETE FROM campaign_counters WHERE campaign_id = $1', [draft.id]);
    const outcome = await sys.db.transaction(async (pageTx) => {
      expect(await lockCampaign(pageTx, draft.id)).toMatchObject({ status: 'sending' });
      // Another connection, as a delivery worker: bounded by a lock timeout that only a blocked statement reaches.
      return sys.db.transaction(async (worker) => {
        await worker.exec("SET LOCAL lock_timeout = '5s'");
        await worker.query(`UPDATE messages SET status = 'sending' WHERE id = $1`, [page.created[0]!.id]);
        return 'counted';
      });
    });
    expect(outcome).toBe('counted');
    expect(await campaignCounts(sys.db.db, draft.id)).toMatchObject({ sending: 1 });
  });

  it('progress is one statement over the counters: it never reads messages, and message rows removed by retention do not change it', async () => {
    const q = toQuery(campaignCountsQuery(424242));
    const explained = await sys.db.query<Record<string, string>>(`EXPLAIN ${q.sql}`, q.params);
    const text = explained.map((r) => Object.values(r).join(' ')).join('\n');
    expect(text).toMatch(/campaign_counters/);
    expect(text).not.toMatch(/\bmessages\b/);

    const shop = await seedShop(sys, 10, 0);
    const svc: CampaignServiceDeps = { database: sys.db, queues: sys.queues, logger: silent, renderer: createRenderer(), sms: sys.config.sms, pacing: { batchSize: 40 } };
    const draft = await createCampaign(svc, shop, { name: 'Kept', body: 'Hi', filter: { tags: { any: ['fan'] } } });
    const started = await sendCampaign(svc, shop, draft.id);
    const deps: CampaignDeps = { ...svc, pacing: { batchSize: 40, maxBacklog: 1_000_000, pollMs: 10, maxPagesPerRun: 100 } };
    await materializeNextPage(draft.id, started.generation, shop, deps, 'req_kept');
    const before = await campaignCounts(sys.db.db, draft.id);
    expect(before.queued).toBe(10);
    await sys.db.query(`DELETE FROM messages WHERE campaign_id = $1`, [String(draft.id)]);
    expect(await campaignCounts(sys.db.db, draft.id)).toEqual(before);
  });
});
