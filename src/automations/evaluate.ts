/**
 * An event against the shop's automations: for each automation it can start, the rules decide send, defer or skip; a
 * send becomes a message row (unique idempotency key, frequency cap reserved atomically) handed to delivery.
 *
 * Abandoned checkouts take a detour: the checkout event asks for a delayed evaluation (trigger
 * `abandoned_checkout`) keyed per checkout, so each later update of the same checkout restarts the delay with the
 * newest data, and only the last one is evaluated — after checking the checkout was not completed meanwhile.
 *
 * Knows nothing about queues: handing a message to delivery and evaluating later are the caller's
 * ({@link AutomationDispatch}; src/queue/processors/automations.ts maps them to jobs).
 */
import { DateTime } from 'luxon';
import { ensureDefaultAutomations, getAutomationByTrigger } from '../db/automations.js';
import { completeCheckout, getCheckout, upsertCheckout } from '../db/checkouts.js';
import type { Db } from '../db/client.js';
import { getContact } from '../db/contacts.js';
import { recordSkip, reserveMessage, recentMarketingSends } from '../db/messages.js';
import type { Automation, AutomationTrigger, Shop } from '../db/schema.js';
import { getShopByDomain, upsertShop } from '../db/shops.js';
import type { Logger } from '../logger.js';
import { contentColumns } from '../messages/compose.js';
import type { Renderer } from '../messages/render.js';
import { evaluateRules, type Decision } from '../rules/pipeline.js';
import { recipientTimezone } from '../rules/quietHours.js';
import { renderAutomationMessage } from './content.js';
import { ABANDONED_CHECKOUT_MAX_AGE_HOURS, TOPIC_TRIGGERS } from './defaults.js';
import { objectKeyFor, pipelineRules, type AutomationContext } from './rules.js';
import { shopSender } from './settings.js';
import type { ShopDirectory } from './shopDirectory.js';

/** An event to evaluate. */
export interface AutomationEvent {
  /** The shop's domain. */
  shopDomain: string;
  /** The Shopify topic, or {@link ABANDONED_CHECKOUT_DUE} for the delayed abandoned-checkout evaluation. */
  trigger: string;
  /** The normalised event (src/shopify/normalize.ts) with the synced contact's id and consent change. */
  context: AutomationContext;
  requestId: string;
}

/** A queued message for delivery to send. */
export interface DeliveryRequest {
  messageId: number;
  shopDomain: string;
  contactId: number;
  automationId: number;
  /** The checkout an abandoned-checkout message recovers: completing it cancels the send. */
  checkoutToken?: string;
  requestId: string;
}

/** What evaluation hands on; both idempotent, so a retried evaluation can call them again. */
export interface AutomationDispatch {
  /** Sends the message after `delayMs` (0: now). Called again for the same message, it adds nothing. */
  deliver(message: DeliveryRequest, delayMs: number): Promise<void>;
  /**
   * Evaluates this event again as {@link ABANDONED_CHECKOUT_DUE} after `delayMs`. A later call for the same checkout
   * replaces the waiting evaluation and restarts its delay.
   */
  evaluateCheckoutLater(checkout: { shopId: number; token: string }, delayMs: number): Promise<void>;
}

export interface AutomationDeps {
  db: Db;
  logger: Logger;
  renderer: Renderer;
  sms: { sender: string; costPerSegment: number };
  dispatch: AutomationDispatch;
  /** Shops and automations held in memory; without it each evaluation reads them from the database. */
  shops?: ShopDirectory;
  now?: () => Date;
}

export type AutomationOutcome =
  | { trigger: AutomationTrigger; action: 'queued'; messageId: number; deferredUntil?: string }
  | { trigger: AutomationTrigger; action: 'scheduled'; delayMinutes: number }
  | { trigger: AutomationTrigger; action: 'skipped'; reason: string; detail?: string }
  | { trigger: AutomationTrigger; action: 'duplicate'; messageId: number };

/** Trigger of the delayed abandoned-checkout evaluation. */
export const ABANDONED_CHECKOUT_DUE = 'abandoned_checkout';

/** How long after a checkout's last touch a consent stamp still counts as given at that checkout. */
const CONSENT_AT_CHECKOUT_GRACE_MS = 10 * 60_000;

const ABANDONED_CHECKOUT_MAX_AGE_MS = ABANDONED_CHECKOUT_MAX_AGE_HOURS * 3_600_000;

/** A Shopify timestamp as a Date, or the fallback when it is missing or unparseable. */
function dateOr<T extends Date | null>(iso: unknown, fallback: T): Date | T {
  const ms = typeof iso === 'string' ? Date.parse(iso) : Number.NaN;
  return Number.isNaN(ms) ? fallback : new Date(ms);
}

export async function evaluateAutomation(event: AutomationEvent, deps: AutomationDeps): Promise<AutomationOutcome[]> {
  const now = deps.now?.() ?? new Date();
  const ctx = event.context;
  const shop = deps.shops
    ? await deps.shops.ensureShop(event.shopDomain)
    : ((await getShopByDomain(deps.db, event.shopDomain)) ?? (await upsertShop(deps.db, event.shopDomain)).shop);
  const automationFor = (trigger: AutomationTrigger) =>
    deps.shops ? deps.shops.automation(shop.id, trigger) : getAutomationByTrigger(deps.db, shop.id, trigger);
  const contactId = typeof ctx.contactId === 'number' ? ctx.contactId : null;

  // Bookkeeping that does not depend on any automation being on.
  if (ctx.kind === 'order' && ctx.order?.checkoutToken) await completeCheckout(deps.db, shop.id, ctx.order.checkoutToken, now);
  if (ctx.kind === 'checkout' && ctx.checkout?.token && event.trigger !== ABANDONED_CHECKOUT_DUE) {
    const startedAt = dateOr(ctx.checkout.createdAt, null);
    await upsertCheckout(deps.db, shop.id, {
      token: ctx.checkout.token,
      contactId,
      recoveryUrl: ctx.checkout.recoveryUrl ?? null,
      startedAt,
      // The customer's last touch of the checkout: the moment it was (last) abandoned.
      seenAt: dateOr(ctx.checkout.updatedAt, startedAt ?? now),
      completedAt: ctx.checkout.completed ? new Date(ctx.checkout.completedAt ?? now) : null,
    });
  }

  const triggers: AutomationTrigger[] = [];
  if (event.trigger === ABANDONED_CHECKOUT_DUE) triggers.push('abandoned_checkout');
  else if (TOPIC_TRIGGERS[event.trigger]) triggers.push(TOPIC_TRIGGERS[event.trigger]!);
  // The delayed abandoned-checkout evaluation carries the data of the checkout event, consent change included: the
  // welcome belongs to that event's own evaluation, not to this one.
  if (ctx.consentChange?.to === 'subscribed' && contactId !== null && event.trigger !== ABANDONED_CHECKOUT_DUE) triggers.push('welcome');

  const outcomes: AutomationOutcome[] = [];
  for (const trigger of triggers) {
    // A shop seen for the first time gets its default automations; looked for only when one is missing, so the hot
    // path is one indexed read rather than a five-row upsert per event.
    let automation = await automationFor(trigger);
    if (!automation) {
      await ensureDefaultAutomations(deps.db, shop.id);
      automation = await automationFor(trigger);
    }
    if (!automation) continue;
    if (shop.uninstalledAt) {
      outcomes.push(await skip(deps, shop, automation, contactId, event, 'shop_uninstalled'));
      continue;
    }
    if (trigger === 'abandoned_checkout' && event.trigger !== ABANDONED_CHECKOUT_DUE) {
      outcomes.push(await scheduleAbandonedCheckout(automation, shop, event, deps));
      continue;
    }
    outcomes.push(await evaluateOne(automation, shop, contactId, event, deps, now));
  }
  return outcomes;
}

async function scheduleAbandonedCheckout(automation: Automation, shop: Shop, event: AutomationEvent, deps: AutomationDeps): Promise<AutomationOutcome> {
  const ctx = event.context;
  if (ctx.checkout?.completed) return { trigger: 'abandoned_checkout', action: 'skipped', reason: 'checkout_completed' };
  if (!automation.enabled) return skip(deps, shop, automation, typeof ctx.contactId === 'number' ? ctx.contactId : null, event, 'disabled');
  const delayMs = automation.delayMinutes * 60_000;
  await deps.dispatch.evaluateCheckoutLater({ shopId: shop.id, token: ctx.checkout.token }, delayMs);
  return { trigger: 'abandoned_checkout', action: 'scheduled', delayMinutes: automation.delayMinutes };
}

async function skip(
  deps: AutomationDeps,
  shop: Shop,
  automation: Automation,
  contactId: number | null,
  event: AutomationEvent,
  reason: string,
  detail?: string,
): Promise<AutomationOutcome> {
  const ctx = event.context;
  await recordSkip(deps.db, {
    shopId: shop.id,
    contactId,
    automationId: automation.id,
    trigger: automation.trigger,
    objectId: ctx.objectId ?? null,
    reason,
    detail: detail ?? null,
    requestId: event.requestId,
  });
  deps.logger.info({ automationId: automation.id, trigger: automation.trigger, contactId, reason }, 'Automation skipped');
  return { trigger: automation.trigger, action: 'skipped', reason, ...(detail ? { detail } : {}) };
}

async function evaluateOne(
  automation: Automation,
  shop: Shop,
  contactId: number | null,
  event: AutomationEvent,
  deps: AutomationDeps,
  now: Date,
): Promise<AutomationOutcome> {
  const ctx = event.context;
  const trigger = automation.trigger;
  const contact = contactId !== null ? ((await getContact(deps.db, shop.id, contactId)) ?? null) : null;
  if (!contact) return skip(deps, shop, automation, null, event, 'no_contact', 'the event names no customer we can text');

  // When the customer last touched the checkout; a reminder is never sent later than the max age after it.
  let abandonedAt: Date | null = null;
  if (trigger === 'abandoned_checkout') {
    const checkout = await getCheckout(deps.db, shop.id, ctx.checkout?.token ?? '');
    if (checkout?.completedAt) return skip(deps, shop, automation, contact.id, event, 'checkout_completed');
    abandonedAt = checkout?.lastSeenAt ?? dateOr(ctx.checkout?.updatedAt ?? ctx.checkout?.createdAt, now);
    if (now.getTime() - abandonedAt.getTime() > ABANDONED_CHECKOUT_MAX_AGE_MS) {
      return skip(deps, shop, automation, contact.id, event, 'too_late', `abandoned more than ${ABANDONED_CHECKOUT_MAX_AGE_HOURS}h ago`);
    }
    // Consent must predate the abandonment: a customer who subscribed after leaving the checkout (a pop-up, a keyword)
    // agreed to hear from the shop, not to be reminded of that cart. Consent ticked at the checkout itself is stamped
    // when its webhook arrived, moments after the checkout's own time: hence the grace.
    const consentAt = contact.smsConsentUpdatedAt;
    if (consentAt && consentAt.getTime() > abandonedAt.getTime() + CONSENT_AT_CHECKOUT_GRACE_MS) {
      return skip(deps, shop, automation, contact.id, event, 'consent_after_abandonment', 'the customer subscribed after leaving the checkout');
    }
  }

  const objectKey = objectKeyFor(trigger, ctx, contact.id);
  if (!objectKey) return skip(deps, shop, automation, contact.id, event, 'no_object', 'the event carries no id to deduplicate on');
  const idempotencyKey = `auto-${automation.id}-${objectKey}`;
  const rules = pipelineRules(automation, shop);
  const cap = rules.transactional ? null : (rules.frequencyCap ?? null);
  const decision: Decision = evaluateRules({
    now,
    automation: rules,
    contact,
    shopTimezone: shop.timezone,
    context: ctx,
    duplicate: false,
    // This message's own row (left by an earlier attempt of this job) is not a reason to cap it: the reservation
    // below finds it by its idempotency key and makes sure its delivery job exists.
    recentSends: cap
      ? await recentMarketingSends(deps.db, shop.id, contact.id, new Date(now.getTime() - cap.windowHours * 3_600_000), idempotencyKey)
      : [],
  });
  if (decision.action === 'skip') return skip(deps, shop, automation, contact.id, event, decision.reason, decision.detail);
  if (decision.action === 'defer' && abandonedAt && decision.until.getTime() - abandonedAt.getTime() > ABANDONED_CHECKOUT_MAX_AGE_MS) {
    return skip(deps, shop, automation, contact.id, event, 'too_late', `quiet hours end more than ${ABANDONED_CHECKOUT_MAX_AGE_HOURS}h after the abandonment`);
  }

  const sms = await renderAutomationMessage(
    {
      template: automation.template,
      shop,
      contact,
      ctx,
      timezone: recipientTimezone(contact, shop.timezone, now),
      transactional: rules.transactional,
      now,
    },
    { renderer: deps.renderer, costPerSegment: deps.sms.costPerSegment },
  );
  const scheduledFor = decision.action === 'defer' ? decision.until : null;
  const reserved = await reserveMessage(
    deps.db,
    {
      shopId: shop.id,
      contactId: contact.id,
      automationId: automation.id,
      kind: rules.transactional ? 'transactional' : 'marketing',
      trigger,
      idempotencyKey,
      toPhone: contact.phone,
      sender: shopSender(shop, deps.sms.sender),
      ...contentColumns(sms),
      renderWarnings: sms.warnings,
      scheduledFor,
      requestId: event.requestId,
      ...(trigger === 'abandoned_checkout' && ctx.checkout?.token ? { checkoutToken: String(ctx.checkout.token) } : {}),
    },
    cap,
    now,
  );
  if (reserved.outcome === 'capped') {
    return skip(deps, shop, automation, contact.id, event, 'frequency_capped', `${reserved.recent} of ${cap!.max} in ${cap!.windowHours}h`);
  }
  const message = reserved.message;
  if (reserved.outcome === 'duplicate' && message.requestId !== event.requestId) {
    return skip(deps, shop, automation, contact.id, event, 'duplicate', `message ${message.id} already exists for ${objectKey}`).then(() => ({
      trigger,
      action: 'duplicate' as const,
      messageId: message.id,
    }));
  }
  // Created now, or created by an earlier attempt of this very job: make sure its delivery job exists (same id).
  if (message.status === 'queued') {
    const delay = message.scheduledFor ? Math.max(0, message.scheduledFor.getTime() - now.getTime()) : 0;
    await deps.dispatch.deliver(
      {
        messageId: message.id,
        shopDomain: shop.domain,
        contactId: contact.id,
        automationId: automation.id,
        ...(trigger === 'abandoned_checkout' && ctx.checkout?.token ? { checkoutToken: String(ctx.checkout.token) } : {}),
        requestId: event.requestId,
      },
      delay,
    );
  }
  if (sms.warnings.length) deps.logger.warn({ messageId: message.id, warnings: sms.warnings }, 'Template rendered with warnings');
  return {
    trigger,
    action: 'queued',
    messageId: message.id,
    ...(scheduledFor ? { deferredUntil: DateTime.fromJSDate(scheduledFor).toISO()! } : {}),
  };
}
