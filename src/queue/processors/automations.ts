/**
 * `automations:evaluate`: a normalised event → for each automation it can start, the rules decide send, defer or
 * skip; a send becomes a message row (unique idempotency key, frequency cap reserved atomically) and a `delivery` job.
 *
 * Abandoned checkouts take a detour: the checkout event schedules a delayed evaluation (trigger
 * `abandoned_checkout`) deduplicated per checkout, so each later update of the same checkout restarts the delay with
 * the newest data, and only the last one is evaluated — after checking the checkout was not completed meanwhile.
 */
import { DateTime } from 'luxon';
import {
  ABANDONED_CHECKOUT_MAX_AGE_HOURS,
  DEFAULT_FREQUENCY_CAP,
  DEFAULT_QUIET_HOURS,
  TOPIC_TRIGGERS,
} from '../../automations/defaults.js';
import { ensureDefaultAutomations, getAutomationByTrigger } from '../../db/automations.js';
import { completeCheckout, getCheckout, upsertCheckout } from '../../db/checkouts.js';
import type { Db } from '../../db/client.js';
import { getContact } from '../../db/contacts.js';
import { getShopByDomain, upsertShop } from '../../db/shops.js';
import { recordSkip, reserveMessage, recentMarketingSends } from '../../db/messages.js';
import type { Automation, AutomationTrigger, Contact, Shop } from '../../db/schema.js';
import type { Logger } from '../../logger.js';
import { analyzeSms, estimateCost } from '../../messages/encoding.js';
import { appendOptOutFooter, type Renderer } from '../../messages/render.js';
import { evaluateRules, type AutomationRules as PipelineRules, type Decision } from '../../rules/pipeline.js';
import { resolveTimezone, timezoneForAddress } from '../../rules/quietHours.js';
import { jobIdFrom, type JobData, type QueueRegistry } from '../queues.js';

export interface AutomationsDeps {
  db: Db;
  queues: QueueRegistry;
  logger: Logger;
  renderer: Renderer;
  sms: { sender: string; costPerSegment: number };
  now?: () => Date;
}

export type AutomationOutcome =
  | { trigger: AutomationTrigger; action: 'queued'; messageId: number; deferredUntil?: string }
  | { trigger: AutomationTrigger; action: 'scheduled'; delayMinutes: number }
  | { trigger: AutomationTrigger; action: 'skipped'; reason: string; detail?: string }
  | { trigger: AutomationTrigger; action: 'duplicate'; messageId: number };

/** Internal trigger of the delayed abandoned-checkout evaluation. */
/** How long after a checkout's last touch a consent stamp still counts as given at that checkout. */
const CONSENT_AT_CHECKOUT_GRACE_MS = 10 * 60_000;

export const ABANDONED_CHECKOUT_DUE = 'abandoned_checkout';

const ABANDONED_CHECKOUT_MAX_AGE_MS = ABANDONED_CHECKOUT_MAX_AGE_HOURS * 3_600_000;

/** A Shopify timestamp as a Date, or the fallback when it is missing or unparseable. */
function dateOr<T extends Date | null>(iso: unknown, fallback: T): Date | T {
  const ms = typeof iso === 'string' ? Date.parse(iso) : Number.NaN;
  return Number.isNaN(ms) ? fallback : new Date(ms);
}

type Ctx = Record<string, any>;

interface ShopSettings {
  name?: string;
  sender?: string;
  optOutFooter?: string;
  quietHours?: { enabled?: boolean; start?: string; end?: string };
  frequencyCap?: { max: number; windowHours: number } | null;
  locale?: string;
  /** First sentence of the HELP auto-reply. */
  helpText?: string;
}

export function shopSettings(shop: Shop): ShopSettings {
  return (shop.settings ?? {}) as ShopSettings;
}

export function shopDisplayName(shop: Shop): string {
  return shopSettings(shop).name ?? shop.name ?? shop.domain.replace(/\.myshopify\.com$/, '');
}

/** The recovery link with the UTM tags that attribute the sale to SMS. */
export function withUtm(url: string | null | undefined, campaign: string): string | null {
  if (!url) return null;
  try {
    const u = new URL(url);
    u.searchParams.set('utm_source', 'sms');
    u.searchParams.set('utm_medium', 'sms');
    u.searchParams.set('utm_campaign', campaign);
    return u.toString();
  } catch {
    return url;
  }
}

/** The object a message is about, so one automation sends one message per object. */
export function objectKeyFor(trigger: AutomationTrigger, ctx: Ctx, contactId: number | null): string | null {
  switch (trigger) {
    case 'order_paid':
    case 'order_created':
      return ctx.order?.id ? `order-${ctx.order.id}` : null;
    case 'abandoned_checkout':
      return ctx.checkout?.token ? `checkout-${ctx.checkout.token}` : null;
    case 'fulfillment_update':
      return ctx.fulfillment?.id ? `fulfillment-${ctx.fulfillment.id}-${ctx.fulfillment.shipmentStatus ?? ctx.fulfillment.status ?? 'update'}` : null;
    case 'welcome':
      return contactId !== null ? `contact-${contactId}` : null;
  }
}

/** Pipeline rules from the automation row and the shop's settings (the automation's own rules win). */
export function pipelineRules(automation: Automation, shop: Shop): PipelineRules {
  const s = shopSettings(shop);
  const r = automation.rules ?? {};
  const qh = { ...DEFAULT_QUIET_HOURS, ...s.quietHours, ...r.quietHours };
  const cap = r.frequencyCap !== undefined ? r.frequencyCap : s.frequencyCap !== undefined ? s.frequencyCap : DEFAULT_FREQUENCY_CAP;
  return {
    enabled: automation.enabled,
    transactional: automation.transactional,
    consent: r.consent,
    conditions: (r.conditions ?? null) as PipelineRules['conditions'],
    frequencyCap: cap,
    quietHours: { enabled: qh.enabled, window: { start: qh.start, end: qh.end } },
    quietHoursBypass: r.quietHours?.bypass,
  };
}

/** Template variables: the event context plus shop and contact, in the names templates use. */
export function templateVars(shop: Shop, contact: Contact | null, ctx: Ctx): Record<string, unknown> {
  return {
    ...ctx,
    shop: { name: shopDisplayName(shop), domain: shop.domain, currency: shop.currency },
    customer: {
      ...(ctx.customer ?? {}),
      firstName: ctx.customer?.firstName ?? contact?.firstName ?? null,
      lastName: ctx.customer?.lastName ?? contact?.lastName ?? null,
      phone: null,
      email: null,
    },
    checkout: ctx.checkout ? { ...ctx.checkout, recoveryUrl: withUtm(ctx.checkout.recoveryUrl, 'abandoned_checkout') } : undefined,
  };
}

export async function evaluateAutomation(data: JobData<'automations'>, deps: AutomationsDeps): Promise<AutomationOutcome[]> {
  const now = deps.now?.() ?? new Date();
  const ctx = data.context as Ctx;
  const shop = (await getShopByDomain(deps.db, data.shopId)) ?? (await upsertShop(deps.db, data.shopId)).shop;
  const contactId = typeof ctx.contactId === 'number' ? ctx.contactId : null;

  // Bookkeeping that does not depend on any automation being on.
  if (ctx.kind === 'order' && ctx.order?.checkoutToken) await completeCheckout(deps.db, shop.id, ctx.order.checkoutToken, now);
  if (ctx.kind === 'checkout' && ctx.checkout?.token && data.trigger !== ABANDONED_CHECKOUT_DUE) {
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
  if (data.trigger === ABANDONED_CHECKOUT_DUE) triggers.push('abandoned_checkout');
  else if (TOPIC_TRIGGERS[data.trigger]) triggers.push(TOPIC_TRIGGERS[data.trigger]!);
  // The delayed abandoned-checkout evaluation carries the data of the checkout event, consent change included: the
  // welcome belongs to that event's own evaluation, not to this one.
  if (ctx.consentChange?.to === 'subscribed' && contactId !== null && data.trigger !== ABANDONED_CHECKOUT_DUE) triggers.push('welcome');

  const outcomes: AutomationOutcome[] = [];
  for (const trigger of triggers) {
    // A shop seen for the first time gets its default automations; looked for only when one is missing, so the hot
    // path is one indexed read rather than a five-row upsert per event.
    let automation = await getAutomationByTrigger(deps.db, shop.id, trigger);
    if (!automation) {
      await ensureDefaultAutomations(deps.db, shop.id);
      automation = await getAutomationByTrigger(deps.db, shop.id, trigger);
    }
    if (!automation) continue;
    if (shop.uninstalledAt) {
      outcomes.push(await skip(deps, shop, automation, contactId, data, 'shop_uninstalled'));
      continue;
    }
    if (trigger === 'abandoned_checkout' && data.trigger !== ABANDONED_CHECKOUT_DUE) {
      outcomes.push(await scheduleAbandonedCheckout(automation, shop, data, deps));
      continue;
    }
    outcomes.push(await evaluateOne(automation, shop, contactId, data, deps, now));
  }
  return outcomes;
}

async function scheduleAbandonedCheckout(automation: Automation, shop: Shop, data: JobData<'automations'>, deps: AutomationsDeps): Promise<AutomationOutcome> {
  const ctx = data.context as Ctx;
  if (ctx.checkout?.completed) return { trigger: 'abandoned_checkout', action: 'skipped', reason: 'checkout_completed' };
  if (!automation.enabled) return skip(deps, shop, automation, typeof ctx.contactId === 'number' ? ctx.contactId : null, data, 'disabled');
  const delayMs = automation.delayMinutes * 60_000;
  const dedupeId = jobIdFrom('ac', shop.id, ctx.checkout.token);
  await deps.queues.enqueueJob(
    'automations',
    'evaluate',
    { ...data, trigger: ABANDONED_CHECKOUT_DUE },
    // A later update of the same checkout replaces the waiting job and restarts its delay.
    { delay: delayMs, deduplication: { id: dedupeId, ttl: Math.max(delayMs, 1), extend: true, replace: true } },
  );
  return { trigger: 'abandoned_checkout', action: 'scheduled', delayMinutes: automation.delayMinutes };
}

async function skip(
  deps: AutomationsDeps,
  shop: Shop,
  automation: Automation,
  contactId: number | null,
  data: JobData<'automations'>,
  reason: string,
  detail?: string,
): Promise<AutomationOutcome> {
  const ctx = data.context as Ctx;
  await recordSkip(deps.db, {
    shopId: shop.id,
    contactId,
    automationId: automation.id,
    trigger: automation.trigger,
    objectId: ctx.objectId ?? null,
    reason,
    detail: detail ?? null,
    requestId: data.requestId,
  });
  deps.logger.info({ automationId: automation.id, trigger: automation.trigger, contactId, reason }, 'Automation skipped');
  return { trigger: automation.trigger, action: 'skipped', reason, ...(detail ? { detail } : {}) };
}

async function evaluateOne(
  automation: Automation,
  shop: Shop,
  contactId: number | null,
  data: JobData<'automations'>,
  deps: AutomationsDeps,
  now: Date,
): Promise<AutomationOutcome> {
  const ctx = data.context as Ctx;
  const trigger = automation.trigger;
  const contact = contactId !== null ? ((await getContact(deps.db, shop.id, contactId)) ?? null) : null;
  if (!contact) return skip(deps, shop, automation, null, data, 'no_contact', 'the event names no customer we can text');

  // When the customer last touched the checkout; a reminder is never sent later than the max age after it.
  let abandonedAt: Date | null = null;
  if (trigger === 'abandoned_checkout') {
    const checkout = await getCheckout(deps.db, shop.id, ctx.checkout?.token ?? '');
    if (checkout?.completedAt) return skip(deps, shop, automation, contact.id, data, 'checkout_completed');
    abandonedAt = checkout?.lastSeenAt ?? dateOr(ctx.checkout?.updatedAt ?? ctx.checkout?.createdAt, now);
    if (now.getTime() - abandonedAt.getTime() > ABANDONED_CHECKOUT_MAX_AGE_MS) {
      return skip(deps, shop, automation, contact.id, data, 'too_late', `abandoned more than ${ABANDONED_CHECKOUT_MAX_AGE_HOURS}h ago`);
    }
    // Consent must predate the abandonment: a customer who subscribed after leaving the checkout (a pop-up, a keyword)
    // agreed to hear from the shop, not to be reminded of that cart. Consent ticked at the checkout itself is stamped
    // when its webhook arrived, moments after the checkout's own time: hence the grace.
    const consentAt = contact.smsConsentUpdatedAt;
    if (consentAt && consentAt.getTime() > abandonedAt.getTime() + CONSENT_AT_CHECKOUT_GRACE_MS) {
      return skip(deps, shop, automation, contact.id, data, 'consent_after_abandonment', 'the customer subscribed after leaving the checkout');
    }
  }

  const objectKey = objectKeyFor(trigger, ctx, contact.id);
  if (!objectKey) return skip(deps, shop, automation, contact.id, data, 'no_object', 'the event carries no id to deduplicate on');
  const idempotencyKey = `auto-${automation.id}-${objectKey}`;
  const rules = pipelineRules(automation, shop);
  const cap = rules.transactional ? null : (rules.frequencyCap ?? null);
  const decision: Decision = evaluateRules({
    now,
    automation: rules,
    contact: {
      smsConsent: contact.smsConsent,
      optedOutAt: contact.optedOutAt,
      phone: contact.phone,
      timezone: contact.timezone,
      countryCode: contact.countryCode,
      provinceCode: contact.provinceCode,
    },
    shopTimezone: shop.timezone,
    context: ctx,
    duplicate: false,
    // This message's own row (left by an earlier attempt of this job) is not a reason to cap it: the reservation
    // below finds it by its idempotency key and makes sure its delivery job exists.
    recentSends: cap
      ? await recentMarketingSends(deps.db, shop.id, contact.id, new Date(now.getTime() - cap.windowHours * 3_600_000), idempotencyKey)
      : [],
  });
  if (decision.action === 'skip') return skip(deps, shop, automation, contact.id, data, decision.reason, decision.detail);
  if (decision.action === 'defer' && abandonedAt && decision.until.getTime() - abandonedAt.getTime() > ABANDONED_CHECKOUT_MAX_AGE_MS) {
    return skip(deps, shop, automation, contact.id, data, 'too_late', `quiet hours end more than ${ABANDONED_CHECKOUT_MAX_AGE_HOURS}h after the abandonment`);
  }

  const settings = shopSettings(shop);
  const tz = resolveTimezone(contact.timezone ?? timezoneForAddress(contact.countryCode, contact.provinceCode), shop.timezone).timezone;
  const rendered = await deps.renderer.render(automation.template, templateVars(shop, contact, ctx), {
    timezone: tz,
    currency: ctx.order?.currency ?? ctx.checkout?.currency ?? shop.currency,
    locale: settings.locale,
    now,
  });
  const text = rules.transactional ? rendered.text : appendOptOutFooter(rendered.text, settings.optOutFooter);
  const sms = analyzeSms(text);
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
      sender: settings.sender ?? deps.sms.sender,
      body: text,
      encoding: sms.encoding,
      segments: sms.segments,
      costEstimate: estimateCost(sms.segments, deps.sms.costPerSegment),
      renderWarnings: rendered.warnings,
      scheduledFor,
      requestId: data.requestId,
    },
    cap,
    now,
  );
  if (reserved.outcome === 'capped') {
    return skip(deps, shop, automation, contact.id, data, 'frequency_capped', `${reserved.recent} of ${cap!.max} in ${cap!.windowHours}h`);
  }
  const message = reserved.message;
  if (reserved.outcome === 'duplicate' && message.requestId !== data.requestId) {
    return skip(deps, shop, automation, contact.id, data, 'duplicate', `message ${message.id} already exists for ${objectKey}`).then(() => ({
      trigger,
      action: 'duplicate' as const,
      messageId: message.id,
    }));
  }
  // Created now, or created by an earlier attempt of this very job: make sure its delivery job exists (same id).
  if (message.status === 'queued') {
    const delay = message.scheduledFor ? Math.max(0, message.scheduledFor.getTime() - now.getTime()) : 0;
    await deps.queues.enqueueJob(
      'delivery',
      'send',
      { shopId: shop.domain, messageId: String(message.id), contactId: String(contact.id), automationId: String(automation.id), requestId: data.requestId },
      { jobId: jobIdFrom('msg', message.id), delay },
    );
  }
  if (rendered.warnings.length) deps.logger.warn({ messageId: message.id, warnings: rendered.warnings }, 'Template rendered with warnings');
  return {
    trigger,
    action: 'queued',
    messageId: message.id,
    ...(scheduledFor ? { deferredUntil: DateTime.fromJSDate(scheduledFor).toISO()! } : {}),
  };
}
