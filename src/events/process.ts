/**
 * One accepted Shopify webhook carried out: a normalised context, the shop and contact brought up to date (consent
 * through the ledger), order statistics, and the event forwarded to `automations` when something may be sent for it.
 * Privacy topics and the uninstall go to src/privacy/, a finished bulk operation wakes the sync waiting on it.
 *
 * The job names the stored event (`storedEventId`); its payload is read from `events`, the one place it is kept. A job
 * shaped as the specification's (`raw` and no stored event) has its payload stored first, keyed by the job, and then
 * takes the same path.
 *
 * Every step is idempotent so a retry of the job is harmless: the upserts converge, and the forward uses a job id
 * derived from the webhook id, so a retry after a successful forward adds nothing.
 */
import type { Db } from '../db/client.js';
import { findConsentChangeByRequest, upsertContact, type ContactInput, type ContactUpsertResult } from '../db/contacts.js';
import { getEvent, getEventById, insertEvent, markEventDone, markEventQueued } from '../db/events.js';
import { recordContactOrder } from '../db/segments.js';
import { markShopInstalled, updateShopFacts, upsertShop } from '../db/shops.js';
import type { ShopDirectory } from '../automations/shopDirectory.js';
import { isValidTimezone } from '../rules/quietHours.js';
import { handlePrivacyTopic } from '../privacy/requests.js';
import type { ConsentState } from '../db/schema.js';
import { AppError, isAppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { contactInputFrom, forwardedContext, validDate } from '../shopify/eventContact.js';
import { normalizeEventContext } from '../shopify/normalize.js';
import { BULK_OPERATIONS_FINISH_TOPIC, FORWARDED_TOPICS, PRIVACY_TOPICS } from '../shopify/topics.js';
import { jobIdFrom, type JobData, type QueueRegistry } from '../queue/queues.js';

export interface EventsDeps {
  db: Db;
  queues: QueueRegistry;
  logger: Logger;
  /** Shops held in memory; without it each event reads its shop from the database. */
  shops?: ShopDirectory;
  /**
   * Called once a `raw` payload has been stored as event `storedEventId`: the worker replaces the job's data with the
   * id, so no copy of the payload stays in Redis.
   */
  onStored?: (storedEventId: number) => Promise<void>;
  /** Wakes the sync waiting on a shop's bulk operation (`bulk_operations/finish`); without it the sync finds out by polling. */
  announceBulkFinish?: (shopDomain: string, operationId: string) => Promise<void>;
}

export type EventOutcome =
  | { outcome: 'forwarded'; automationsJobId: string; contactId: number | null }
  | { outcome: 'synced'; contactId: number | null }
  | { outcome: 'shop_uninstalled' }
  | { outcome: 'privacy_recorded' }
  | { outcome: 'bulk_finish_announced' }
  | { outcome: 'ignored'; reason: string };

/** The event a job is about: its webhook id, trigger time and payload (null once erased). */
interface EventToProcess {
  webhookId: string;
  triggeredAt: Date | null;
  payload: Record<string, unknown> | null;
}

/**
 * Reads the stored event the job names, or stores the job's `raw` payload (keyed by the job, so a retry finds the same
 * row) and marks it queued, so the reconcile sweep does not queue it a second time.
 */
async function eventOf(data: JobData<'events'>, deps: EventsDeps, jobId: string): Promise<EventToProcess> {
  const triggeredAt = data.triggeredAt ? validDate(data.triggeredAt) : null;
  if (data.storedEventId !== undefined) {
    // The row id locates the event; its webhook id is what it is. Intake removes the row of an attempt whose enqueue
    // timed out and answers 503, yet that `add` may still land once Redis is back (ioredis re-sends what went
    // unanswered); Shopify's retry then stores the webhook again under another id, found here by its webhook id.
    const row =
      (await getEventById(deps.db, data.storedEventId)) ?? (data.webhookId ? await getEvent(deps.db, data.shopId, data.webhookId) : undefined);
    if (!row && data.webhookId) {
      // Not stored again yet: a retry of this job (with back-off) gives Shopify's retry the time to arrive.
      throw new Error(`storedEventId: event ${data.storedEventId} (webhook ${data.webhookId}) is not stored; waiting for the webhook's retry`);
    }
    if (!row || row.shopDomain !== data.shopId || row.topic !== data.topic) {
      throw new AppError('NOT_FOUND', `storedEventId: no stored ${data.topic} event ${data.storedEventId} for ${data.shopId}`, {
        details: { field: 'storedEventId' },
      });
    }
    return { webhookId: row.webhookId, triggeredAt: triggeredAt ?? row.triggeredAt, payload: row.payload ?? null };
  }
  const raw = data.raw!;
  const { inserted, existing } = await insertEvent(deps.db, {
    shopDomain: data.shopId,
    topic: data.topic,
    objectId: data.objectId ?? null,
    webhookId: data.webhookId ?? jobIdFrom('job', jobId, data.enqueuedAt),
    eventId: data.eventId ?? null,
    apiVersion: null,
    triggeredAt,
    payload: raw,
    requestId: data.requestId,
  });
  const row = inserted ?? existing!;
  // Stored before (a retry, or the webhook taken in over HTTP): what the row holds now wins, so a payload erased since
  // is not brought back from the job.
  const payload = inserted ? raw : ((await getEventById(deps.db, row.id))?.payload ?? null);
  await markEventQueued(deps.db, row.id);
  await deps.onStored?.(row.id);
  return { webhookId: row.webhookId, triggeredAt: triggeredAt ?? row.triggeredAt, payload };
}

export async function processEvent(data: JobData<'events'>, deps: EventsDeps, jobId: string): Promise<EventOutcome> {
  // The job's `shopId` is the shop's domain; `shop.id` below is the row's number.
  const { topic, shopId: shopDomain, requestId } = data;
  // The worker's job logger already carries queue, jobId, requestId and shopId.
  const log = deps.logger.child({ topic });
  const { webhookId, triggeredAt, payload } = await eventOf(data, deps, jobId);
  let result: EventOutcome;
  try {
    result = await handle();
  } catch (err) {
    // A permanent failure will not be retried: say so on the stored event instead of leaving it `queued` for ever.
    if (isAppError(err) && err.permanent) {
      await markEventDone(deps.db, shopDomain, webhookId, { status: 'failed', outcome: 'failed', error: `${err.code}: ${err.message}` }).catch(
        (markErr: Error) => log.warn({ err: markErr.message }, 'Could not mark the event failed'),
      );
    }
    throw err;
  }
  const status = result.outcome === 'ignored' ? 'ignored' : 'processed';
  await markEventDone(deps.db, shopDomain, webhookId, { status, outcome: result.outcome });
  return result;

  async function handle(): Promise<EventOutcome> {
    // Erased (customers/redact) after the job was queued: nothing is left to act on.
    if (payload === null) return { outcome: 'ignored', reason: 'payload_erased' };
    if (topic === 'app/uninstalled' || PRIVACY_TOPICS.has(topic)) {
      // Carried out and recorded in privacy_requests (src/privacy/requests.ts): uninstall, export, erasure.
      const meta = { shopDomain, webhookId, requestId, triggeredAt };
      await handlePrivacyTopic(topic, payload, meta, deps);
      return topic === 'app/uninstalled' ? { outcome: 'shop_uninstalled' } : { outcome: 'privacy_recorded' };
    }
    if (topic === BULK_OPERATIONS_FINISH_TOPIC) {
      const operationId = payload.admin_graphql_api_id;
      if (typeof operationId !== 'string' || !/^gid:\/\/shopify\/BulkOperation\/\d+$/.test(operationId)) return { outcome: 'ignored', reason: 'no_bulk_operation_id' };
      if (!deps.announceBulkFinish) return { outcome: 'ignored', reason: 'bulk_finish_not_announced' };
      await deps.announceBulkFinish(shopDomain, operationId);
      return { outcome: 'bulk_finish_announced' };
    }
    const context = normalizeEventContext(topic, payload, shopDomain);
    if (context.kind === 'unknown') {
      log.warn('Unknown topic: stored and ignored');
      return { outcome: 'ignored', reason: 'unknown_topic' };
    }
    const shop = deps.shops ? await deps.shops.ensureShop(shopDomain) : (await upsertShop(deps.db, shopDomain)).shop;
    // Shopify sends webhooks only to an installed app: one triggered after the uninstall means it was installed again.
    if (shop.uninstalledAt && triggeredAt && triggeredAt.getTime() > shop.uninstalledAt.getTime()) {
      await markShopInstalled(deps.db, shopDomain, triggeredAt);
      log.info('Shop installed again');
    }
    if (context.kind === 'shop') {
      if (context.shop) {
        const s = context.shop;
        await updateShopFacts(deps.db, shop.id, { ...s, timezone: isValidTimezone(s.timezone) ? s.timezone : null });
      }
      return { outcome: 'synced', contactId: null };
    }
    const input = contactInputFrom(context, shop, triggeredAt);
    const upserted = input ? await upsertContact(deps.db, shop.id, input, { requestId }) : null;
    // Order statistics for segments (orders count, total spent, last order), counted once per order.
    if (upserted && context.kind === 'order' && topic !== 'orders/cancelled') {
      const o = context.order;
      const at = o.createdAt ? new Date(o.createdAt) : (triggeredAt ?? new Date());
      await recordContactOrder(deps.db, shop.id, upserted.contact.id, {
        orderId: o.id,
        total: Number(o.totalPrice ?? 0),
        orderedAt: Number.isNaN(at.getTime()) ? new Date() : at,
      });
    }
    if (input?.shopifyCustomerId === null && input.phone === null) log.debug('Event has no usable customer identity');
    if (upserted?.consentChange) {
      log.info({ contactId: upserted.contact.id, consentFrom: upserted.consentChange.from, consentTo: upserted.consentChange.to }, 'Consent changed');
    }
    const sync = upserted && input ? await withEarlierConsentChange(upserted, input, requestId) : upserted;
    const contactId = sync?.contact.id ?? null;
    const forward = FORWARDED_TOPICS.has(topic) || sync?.consentChange?.to === 'subscribed';
    if (!forward) return { outcome: 'synced', contactId };
    const automationsJobId = await deps.queues.enqueueJob(
      'automations',
      'evaluate',
      {
        trigger: topic,
        shopId: shopDomain,
        context: forwardedContext(context, sync),
        originalEvent: { topic, webhookId, objectId: context.objectId },
        requestId,
      },
      { jobId: jobIdFrom('evt', webhookId) },
    );
    return { outcome: 'forwarded', automationsJobId, contactId };
  }

  /**
   * On a retry the opt-in is already stored, so the upsert reports no change, yet the first run may have failed before
   * forwarding it. The consent_changes row this request wrote tells the two cases apart.
   */
  async function withEarlierConsentChange(sync: ContactUpsertResult, input: ContactInput, reqId: string): Promise<ContactUpsertResult> {
    // A contact this run created was not there for an earlier run to change.
    if (sync.created || sync.consentChange || !input.consent || sync.contact.smsConsent !== input.consent.state) return sync;
    const earlier = await findConsentChangeByRequest(deps.db, sync.contact.id, reqId, input.consent.source);
    if (!earlier || earlier.newState !== input.consent.state) return sync;
    return { ...sync, consentChange: { from: (earlier.previousState ?? 'not_subscribed') as ConsentState, to: earlier.newState as ConsentState } };
  }
}
