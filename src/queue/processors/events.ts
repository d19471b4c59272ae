/**
 * `events`: one accepted Shopify webhook → a normalised context, the shop and contact brought up to date, and the
 * event forwarded to `automations` when something may be sent for it.
 *
 * Every step is idempotent so a retry of the job is harmless: the upserts converge, and the forward uses a job id
 * derived from the webhook id, so a retry after a successful forward adds nothing.
 */
import type { Db } from '../../db/client.js';
import { findConsentChangeByRequest, upsertContact, type ContactInput, type ContactUpsertResult } from '../../db/contacts.js';
import { markEventDone } from '../../db/events.js';
import { recordContactOrder } from '../../db/segments.js';
import { markShopInstalled, upsertShop } from '../../db/shops.js';
import { handlePrivacyTopic } from '../../privacy/requests.js';
import type { ConsentState, Shop } from '../../db/schema.js';
import { isAppError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { normalizeEventContext, type CustomerContext, type EventContext } from '../../shopify/normalize.js';
import { pickCountry, toE164 } from '../../shopify/phone.js';
import { FORWARDED_TOPICS, PRIVACY_TOPICS } from '../../shopify/topics.js';
import { jobIdFrom, type JobData, type QueueRegistry } from '../queues.js';

export interface EventsDeps {
  db: Db;
  queues: QueueRegistry;
  logger: Logger;
}

export type EventOutcome =
  | { outcome: 'forwarded'; automationsJobId: string; contactId: number | null }
  | { outcome: 'synced'; contactId: number | null }
  | { outcome: 'shop_uninstalled' }
  | { outcome: 'privacy_recorded' }
  | { outcome: 'ignored'; reason: string };

/** The customer as the event describes it, mapped to what the contacts table keeps. */
export function contactInputFrom(context: EventContext, shop: Pick<Shop, 'countryCode'>, triggeredAt: Date | null): ContactInput | null {
  const customer: CustomerContext | null = 'customer' in context ? context.customer : null;
  const checkoutSms = context.kind === 'checkout' ? context.smsMarketing : null;
  const rawPhone = checkoutSms?.phone ?? customer?.phone ?? null;
  if (!customer && !rawPhone) return null;
  const country = pickCountry(customer?.countryCode, shop.countryCode);
  let consent: ContactInput['consent'] = null;
  if (customer?.smsConsent) {
    consent = {
      state: customer.smsConsent.state,
      optInLevel: customer.smsConsent.optInLevel,
      updatedAt: customer.smsConsent.updatedAt ? new Date(customer.smsConsent.updatedAt) : triggeredAt,
      source: `shopify:${context.topic}`,
    };
  } else if (checkoutSms?.accepts === true) {
    // Ticking the SMS box at checkout is an opt-in; leaving it unticked is not an opt-out.
    consent = { state: 'subscribed', optInLevel: 'single_opt_in', updatedAt: triggeredAt, source: `shopify:${context.topic}` };
  }
  if (consent?.updatedAt && Number.isNaN(consent.updatedAt.getTime())) consent.updatedAt = triggeredAt;
  return {
    shopifyCustomerId: customer?.shopifyId ?? null,
    phone: toE164(rawPhone, country),
    firstName: customer?.firstName ?? null,
    lastName: customer?.lastName ?? null,
    email: customer?.email ?? null,
    tags: customer && customer.tags.length ? customer.tags : null,
    countryCode: customer?.countryCode ?? null,
    provinceCode: customer?.provinceCode ?? null,
    consent,
  };
}

/**
 * The context handed to `automations`: the normalised event plus the contact id, without the raw phone and email
 * (the contact row holds those), so job payloads carry no more personal data than the next step needs.
 */
export function forwardedContext(context: EventContext, sync: ContactUpsertResult | null): Record<string, unknown> {
  const forwarded: Record<string, unknown> = { ...context };
  if ('customer' in context && context.customer) forwarded.customer = { ...context.customer, phone: null, email: null };
  if (context.kind === 'checkout') forwarded.smsMarketing = { ...context.smsMarketing, phone: null };
  forwarded.contactId = sync ? sync.contact.id : null;
  forwarded.consentChange = sync?.consentChange ?? null;
  return forwarded;
}

export async function processEvent(data: JobData<'events'>, deps: EventsDeps, jobId: string): Promise<EventOutcome> {
  const { topic, shopId, requestId } = data;
  // The worker's job logger already carries queue, jobId, requestId and shopId.
  const log = deps.logger.child({ topic });
  const triggeredAt = data.triggeredAt ? new Date(data.triggeredAt) : null;
  let result: EventOutcome;
  try {
    result = await handle();
  } catch (err) {
    // A permanent failure will not be retried: say so on the stored event instead of leaving it `queued` for ever.
    if (data.webhookId && isAppError(err) && err.permanent) {
      await markEventDone(deps.db, shopId, data.webhookId, { status: 'failed', outcome: 'failed', error: `${err.code}: ${err.message}` }).catch(
        (markErr: Error) => log.warn({ err: markErr.message }, 'Could not mark the event failed'),
      );
    }
    throw err;
  }
  if (data.webhookId) {
    const status = result.outcome === 'ignored' ? 'ignored' : 'processed';
    await markEventDone(deps.db, shopId, data.webhookId, { status, outcome: result.outcome });
  }
  return result;

  async function handle(): Promise<EventOutcome> {
    if (topic === 'app/uninstalled' || PRIVACY_TOPICS.has(topic)) {
      // Carried out and recorded in privacy_requests (src/privacy/requests.ts): uninstall, export, erasure.
      const meta = { shopDomain: shopId, webhookId: data.webhookId ?? null, requestId, triggeredAt };
      await handlePrivacyTopic(topic, data.raw, meta, deps);
      return topic === 'app/uninstalled' ? { outcome: 'shop_uninstalled' } : { outcome: 'privacy_recorded' };
    }
    const context = normalizeEventContext(topic, data.raw, shopId);
    if (context.kind === 'unknown') {
      log.warn('Unknown topic: stored and ignored');
      return { outcome: 'ignored', reason: 'unknown_topic' };
    }
    const { shop } = await upsertShop(deps.db, shopId);
    // Shopify sends webhooks only to an installed app: one triggered after the uninstall means it was installed again.
    if (shop.uninstalledAt && triggeredAt && triggeredAt.getTime() > shop.uninstalledAt.getTime()) {
      await markShopInstalled(deps.db, shopId, triggeredAt);
      log.info('Shop installed again');
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
        shopId,
        context: forwardedContext(context, sync),
        originalEvent: { topic, webhookId: data.webhookId, objectId: context.objectId },
        requestId,
      },
      { jobId: jobIdFrom('evt', data.webhookId ?? jobId) },
    );
    return { outcome: 'forwarded', automationsJobId, contactId };
  }

  /**
   * On a retry the opt-in is already stored, so the upsert reports no change, yet the first run may have failed before
   * forwarding it. The consent_changes row this request wrote tells the two cases apart.
   */
  async function withEarlierConsentChange(sync: ContactUpsertResult, input: ContactInput, reqId: string): Promise<ContactUpsertResult> {
    if (sync.consentChange || !input.consent || sync.contact.smsConsent !== input.consent.state) return sync;
    const earlier = await findConsentChangeByRequest(deps.db, sync.contact.id, reqId, input.consent.source);
    if (!earlier || earlier.newState !== input.consent.state) return sync;
    return { ...sync, consentChange: { from: (earlier.previousState ?? 'not_subscribed') as ConsentState, to: earlier.newState as ConsentState } };
  }
}
