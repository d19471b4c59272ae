/**
 * The housekeeping tasks, as plain functions of `(input, deps)` that know nothing of how they were started (a job
 * scheduler, an operator enqueueing `housekeeping:cleanup` by hand, a test). Each is idempotent: running it twice in a
 * row changes nothing the second time.
 */
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import {
  claimFailedForRetry,
  deleteExpiredEvents,
  deleteExpiredMessages,
  failUnconfirmed,
  findStuckMessages,
  findUnfinishedEvents,
  type StuckEvent,
  touchStuckQueued,
} from '../db/housekeeping.js';
import { rollupDay, shopsActiveSince, type ShopRef } from '../db/reports.js';
import { getShopByDomain } from '../db/shops.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { anyJobAlive } from '../privacy/jobs.js';
import { HOUSEKEEPING_TASKS, jobIdFrom, newRequestId, type HousekeepingTask, type QueueRegistry } from '../queue/queues.js';
import { dayWindow, daysToRollUp } from './days.js';

// The task list is part of the job catalog (a housekeeping job naming another task is refused there).
export { HOUSEKEEPING_TASKS, type HousekeepingTask };

export function isHousekeepingTask(task: string): task is HousekeepingTask {
  return (HOUSEKEEPING_TASKS as readonly string[]).includes(task);
}

export interface HousekeepingDeps {
  db: Db;
  queues: QueueRegistry;
  logger: Logger;
  settings: Config['housekeeping'];
  now?: () => Date;
}

export interface TaskInput {
  /** Limit the task to one shop (its domain); all shops when absent. */
  shopDomain?: string;
  requestId: string;
}

export type TaskResult = Record<string, unknown> & { task: HousekeepingTask };

/** Failed messages younger than this are retried. */
const RETRY_WINDOW_MS = 24 * 3_600_000;
/** Rows looked at per reconcile run (the next run takes the rest). */
const RECONCILE_BATCH = 500;

/** The delivery job ids a message may have: the automations' / campaigns' own, a retry's, a sweep's. */
export const deliveryJobIds = (messageId: number) => [jobIdFrom('msg', messageId), jobIdFrom('retry', messageId)];

export async function runHousekeepingTask(task: string, input: TaskInput, deps: HousekeepingDeps): Promise<TaskResult> {
  if (!isHousekeepingTask(task)) {
    throw new AppError('UNKNOWN_HOUSEKEEPING_TASK', `unknown housekeeping task "${task}" (known: ${HOUSEKEEPING_TASKS.join(', ')})`, { details: { task } });
  }
  const now = deps.now?.() ?? new Date();
  const shop = input.shopDomain ? await getShopByDomain(deps.db, input.shopDomain) : undefined;
  // A task for a shop we do not know has nothing to do (not an error: the shop may have been redacted meanwhile).
  if (input.shopDomain && !shop) return { task, shop: input.shopDomain, skipped: 'unknown_shop' };
  switch (task) {
    case 'cleanup_old_messages':
      return { task, ...(await deleteExpiredMessages(deps.db, { now, defaultDays: deps.settings.messageRetentionDays, shopId: shop?.id })) };
    case 'cleanup_events':
      return { task, events: await deleteExpiredEvents(deps.db, { now, days: deps.settings.eventRetentionDays, shopDomain: input.shopDomain }) };
    case 'retry_failed_messages':
      return { task, ...(await retryFailedMessages(now, shop?.id, deps)) };
    case 'rollup_reports':
      return { task, ...(await rollupReports(now, shop, deps)) };
    case 'reconcile':
      return { task, ...(await reconcile(now, shop?.id, input.shopDomain, deps)) };
  }
}

/** Re-queues messages that failed for a transient cause in the last 24 h, each at most once ever, at most N a run. */
export async function retryFailedMessages(now: Date, shopId: number | undefined, deps: HousekeepingDeps): Promise<{ retried: number; enqueueFailed: number }> {
  const claims = await claimFailedForRetry(deps.db, {
    since: new Date(now.getTime() - RETRY_WINDOW_MS),
    limit: deps.settings.retryFailedMaxPerRun,
    shopId,
    jobIdOf: (id) => jobIdFrom('retry', id),
  });
  let enqueueFailed = 0;
  for (const c of claims) {
    try {
      await deps.queues.enqueueJob(
        'delivery',
        'send',
        {
          shopId: c.shopDomain,
          messageId: c.id,
          ...(c.contactId !== null ? { contactId: c.contactId } : {}),
          ...(c.automationId !== null ? { automationId: c.automationId } : {}),
          ...(c.campaignId !== null ? { campaignId: Number(c.campaignId) } : {}),
          requestId: newRequestId(),
        },
        { jobId: c.jobId },
      );
    } catch (err) {
      // The row is queued again; `reconcile` enqueues it once it has waited past the stuck timeout.
      enqueueFailed++;
      deps.logger.warn({ messageId: c.id, err: (err as Error).message }, 'Retry not enqueued; reconcile will pick it up');
    }
  }
  if (claims.length) deps.logger.info({ retried: claims.length, enqueueFailed }, 'Failed messages queued again');
  return { retried: claims.length, enqueueFailed };
}

/** Recomputes today and yesterday (in each shop's time zone) for every shop, or one. */
export async function rollupReports(now: Date, shop: ShopRef | undefined, deps: HousekeepingDeps): Promise<{ shops: number; days: number; rows: number }> {
  // A report for a quiet shop is all zeros, stored as nothing: only shops with anything in the last three days.
  const shops = shop ? [shop] : await shopsActiveSince(deps.db, new Date(now.getTime() - 3 * 24 * 3_600_000));
  let days = 0;
  let rows = 0;
  for (const s of shops) {
    for (const day of daysToRollUp(now, s.timezone)) {
      rows += (await rollupDay(deps.db, s.id, day, dayWindow(day, s.timezone))).length;
      days++;
    }
  }
  return { shops: shops.length, days, rows };
}

/**
 * The sweep for what fell between two states:
 * - a message `queued` and due for longer than the stuck timeout with no delivery job alive → enqueued again (the
 *   delivery processor's claim makes a second run harmless);
 * - a message `sending` that long with no job alive to reconcile it → failed as unconfirmed, never resent;
 * - a webhook stored that long ago and not finished (`received`; `queued` on rows from before intake stopped marking
 *   them), with no job under the id intake used — never queued (the process died between the insert and the enqueue)
 *   or lost with Redis (a restart without persistence, a failover to a replica behind) — and no dead letter → queued
 *   under that id (`eventsQueued`; `eventsRequeued` for `queued` rows).
 */
export async function reconcile(
  now: Date,
  shopId: number | undefined,
  shopDomain: string | undefined,
  deps: HousekeepingDeps,
): Promise<{ requeued: number; unconfirmed: number; eventsQueued: number; eventsRequeued: number }> {
  const before = new Date(now.getTime() - deps.settings.stuckMessageTimeoutMinutes * 60_000);
  let requeued = 0;
  let unconfirmed = 0;
  for (const m of await findStuckMessages(deps.db, { before, limit: RECONCILE_BATCH, shopId })) {
    if (await anyJobAlive(deps.queues, 'delivery', [...deliveryJobIds(m.id), jobIdFrom('rec', m.id)])) continue;
    if (m.status === 'sending') {
      if (await failUnconfirmed(deps.db, m.id, before)) unconfirmed++;
      continue;
    }
    if (!(await touchStuckQueued(deps.db, m.id, before))) continue;
    const rec = deps.queues.get('delivery');
    // A finished job under the sweep's id would make `add` a no-op: clear it first.
    const old = await rec.getJob(jobIdFrom('rec', m.id));
    if (old) await old.remove().catch(() => undefined);
    await deps.queues.enqueueJob(
      'delivery',
      'send',
      {
        shopId: m.shopDomain,
        messageId: m.id,
        ...(m.contactId !== null ? { contactId: m.contactId } : {}),
        ...(m.automationId !== null ? { automationId: m.automationId } : {}),
        ...(m.campaignId !== null ? { campaignId: Number(m.campaignId) } : {}),
        requestId: newRequestId(),
      },
      { jobId: jobIdFrom('rec', m.id) },
    );
    requeued++;
  }
  const enqueueEvent = (e: StuckEvent) =>
    deps.queues.enqueueJob(
      'events',
      e.topic,
      {
        topic: e.topic,
        shopId: e.shopDomain,
        objectId: e.objectId,
        storedEventId: e.id,
        webhookId: e.webhookId,
        ...(e.eventId ? { eventId: e.eventId } : {}),
        ...(e.triggeredAt ? { triggeredAt: e.triggeredAt.toISOString() } : {}),
        requestId: e.requestId ?? newRequestId(),
      },
      { jobId: jobIdFrom('wh', e.shopDomain, e.webhookId) },
    );
  // Webhooks stored and not finished, whose job is not in Redis: never queued (the process died between the insert and
  // the enqueue) or lost with Redis. Any job state but "unknown" means a job holds it or ended and was recorded.
  let eventsQueued = 0;
  let eventsRequeued = 0;
  for (const e of await findUnfinishedEvents(deps.db, { before, limit: RECONCILE_BATCH, shopDomain })) {
    if ((await deps.queues.get('events').getJobState(jobIdFrom('wh', e.shopDomain, e.webhookId))) !== 'unknown') continue;
    await enqueueEvent(e);
    if (e.status === 'queued') eventsRequeued++;
    else eventsQueued++;
  }
  if (requeued || unconfirmed || eventsQueued || eventsRequeued) deps.logger.warn({ requeued, unconfirmed, eventsQueued, eventsRequeued }, 'Reconcile swept stuck work');
  return { requeued, unconfirmed, eventsQueued, eventsRequeued };
}
