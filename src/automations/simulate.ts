/**
 * What the automations would do with a Shopify event, without doing it: the same normaliser, the same rule pipeline
 * and the same renderer as the real path (`events` → `automations`), but nothing is written and nothing is enqueued.
 * Reads only: the shop's automations, the stored contact (consent, address), existing messages (dedupe) and recent
 * sends (frequency cap).
 *
 * The contact is the stored one (found by Shopify customer id) with the payload's data laid over it, as the events
 * processor would store it: consent from the payload applies when it is not older than the stored consent.
 * Abandoned checkouts are evaluated as if their delay had passed.
 */
import { DEFAULT_AUTOMATIONS, TOPIC_TRIGGERS } from './defaults.js';
import { listAutomations } from '../db/automations.js';
import type { Db } from '../db/client.js';
import { findContactByCustomerId } from '../db/contacts.js';
import { findMessageByKey, recentMarketingSends } from '../db/messages.js';
import type { Automation, AutomationTrigger, Contact, Shop } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { Renderer } from '../messages/render.js';
import { contactInputFrom } from '../shopify/eventContact.js';
import { decideConsent, optedOutAtAfter } from '../rules/consent.js';
import { evaluateRules, type TraceEntry } from '../rules/pipeline.js';
import { recipientTimezone } from '../rules/quietHours.js';
import { normalizeEventContext, type EventContext } from '../shopify/normalize.js';
import { renderAutomationMessage } from './content.js';
import { objectKeyFor, pipelineRules } from './rules.js';
import { shopSender } from './settings.js';

export interface SimulationDeps {
  db: Db;
  renderer: Renderer;
  sms: { sender: string; costPerSegment: number };
}

export interface SimulatedAutomation {
  trigger: AutomationTrigger;
  automationId: number | null;
  name: string;
  kind: 'marketing' | 'transactional';
  decision: 'send' | 'defer' | 'skip';
  reason: string | null;
  detail: string | null;
  deferredUntil: string | null;
  /** Minutes the real path would wait before evaluating (abandoned checkout). */
  delayMinutes: number;
  trace: TraceEntry[];
  /** The text the customer would get (footer included); rendered even when the decision is skip. */
  text: string | null;
  warnings: string[];
  encoding: 'GSM-7' | 'UCS-2' | null;
  segments: number;
  costEstimate: number;
  sender: string;
}

export interface SimulationResult {
  topic: string;
  kind: EventContext['kind'];
  contact: { id: number | null; known: boolean; consent: string; hasPhone: boolean };
  automations: SimulatedAutomation[];
  /** Always true: a simulation never sends. */
  dryRun: true;
}

type Ctx = Record<string, any>;

/** The shop's automations by trigger; the defaults (not stored) for a shop that has none yet. */
async function automationsOf(db: Db, shop: Shop): Promise<Map<AutomationTrigger, Automation>> {
  const stored = await listAutomations(db, shop.id);
  const byTrigger = new Map(stored.map((a) => [a.trigger, a]));
  for (const d of DEFAULT_AUTOMATIONS) {
    if (!byTrigger.has(d.trigger)) {
      byTrigger.set(d.trigger, { id: 0, shopId: shop.id, createdAt: new Date(0), updatedAt: new Date(0), ...d, rules: { ...d.rules } });
    }
  }
  return byTrigger;
}

/** The contact fields the rules and templates read. */
type SimContact = Pick<
  Contact,
  'phone' | 'firstName' | 'lastName' | 'countryCode' | 'provinceCode' | 'timezone' | 'smsConsent' | 'smsConsentUpdatedAt' | 'optedOutAt'
>;

/** The stored contact with the event's data laid over it, as the events processor would leave it. */
function contactAsStored(stored: Contact | undefined, input: ReturnType<typeof contactInputFrom>, now: Date): SimContact {
  const base: SimContact = {
    phone: stored?.phone ?? null,
    firstName: stored?.firstName ?? null,
    lastName: stored?.lastName ?? null,
    countryCode: stored?.countryCode ?? null,
    provinceCode: stored?.provinceCode ?? null,
    timezone: stored?.timezone ?? null,
    smsConsent: stored?.smsConsent ?? 'not_subscribed',
    smsConsentUpdatedAt: stored?.smsConsentUpdatedAt ?? null,
    optedOutAt: stored?.optedOutAt ?? null,
  };
  if (!input) return base;
  const merged: SimContact = {
    ...base,
    phone: base.phone ?? input.phone,
    firstName: input.firstName ?? base.firstName,
    lastName: input.lastName ?? base.lastName,
    countryCode: input.countryCode ?? base.countryCode,
    provinceCode: input.provinceCode ?? base.provinceCode,
  };
  const c = input.consent;
  if (!c) return merged;
  // The ledger's own precedence, so a simulation never shows an opt-out undone that the real pipeline keeps.
  const decision = decideConsent(stored ?? null, { state: c.state, origin: c.origin, at: c.updatedAt }, now);
  if (decision.action === 'apply') {
    merged.smsConsent = c.state;
    merged.smsConsentUpdatedAt = decision.at;
    merged.optedOutAt = optedOutAtAfter(stored ?? null, c.state, decision.at);
  }
  return merged;
}

export async function simulateEvent(
  shop: Shop,
  event: { topic: string; payload: unknown },
  deps: SimulationDeps,
  now: Date = new Date(),
): Promise<SimulationResult> {
  const context = normalizeEventContext(event.topic, event.payload, shop.domain);
  if (context.kind === 'unknown') throw new AppError('VALIDATION_FAILED', `topic: "${event.topic}" is not a topic SMS Blossom handles`);
  const input = contactInputFrom(context, shop, now);
  const stored = input?.shopifyCustomerId ? await findContactByCustomerId(deps.db, shop.id, input.shopifyCustomerId) : undefined;
  const contact = contactAsStored(stored, input, now);
  const contactId = stored ? stored.id : null;

  const ctx: Ctx = { ...context, contactId };
  // Names for the template come from the event, else the stored contact; never the phone or email.
  const customer = 'customer' in context && context.customer ? context.customer : {};
  ctx.customer = { ...customer, firstName: contact.firstName, lastName: contact.lastName, phone: null, email: null };

  const triggers: AutomationTrigger[] = [];
  const topicTrigger = TOPIC_TRIGGERS[event.topic];
  if (topicTrigger) triggers.push(topicTrigger);
  if (contact.smsConsent === 'subscribed' && (stored?.smsConsent ?? 'not_subscribed') !== 'subscribed') triggers.push('welcome');

  const automations = await automationsOf(deps.db, shop);
  const results: SimulatedAutomation[] = [];
  for (const trigger of triggers) {
    const automation = automations.get(trigger);
    if (!automation) continue;
    results.push(await simulateOne(automation, shop, contact, contactId, ctx, deps, now));
  }
  return {
    topic: event.topic,
    kind: context.kind,
    contact: { id: contactId, known: Boolean(stored), consent: contact.smsConsent, hasPhone: Boolean(contact.phone) },
    automations: results,
    dryRun: true,
  };
}

async function simulateOne(
  automation: Automation,
  shop: Shop,
  contact: SimContact,
  contactId: number | null,
  ctx: Ctx,
  deps: SimulationDeps,
  now: Date,
): Promise<SimulatedAutomation> {
  const rules = pipelineRules(automation, shop);
  const cap = rules.transactional ? null : (rules.frequencyCap ?? null);
  const objectKey = objectKeyFor(automation.trigger, ctx, contactId ?? 0);
  const idempotencyKey = objectKey && automation.id ? `auto-${automation.id}-${objectKey}` : null;
  const duplicate = idempotencyKey ? Boolean(await findMessageByKey(deps.db, shop.id, idempotencyKey)) : false;
  const recentSends =
    cap && contactId !== null ? await recentMarketingSends(deps.db, shop.id, contactId, new Date(now.getTime() - cap.windowHours * 3_600_000)) : [];

  const decision = evaluateRules({
    now,
    automation: rules,
    contact,
    shopTimezone: shop.timezone,
    context: ctx,
    duplicate,
    recentSends,
  });
  let verdict: Pick<SimulatedAutomation, 'decision' | 'reason' | 'detail' | 'deferredUntil'> =
    decision.action === 'skip'
      ? { decision: 'skip', reason: decision.reason, detail: decision.detail ?? null, deferredUntil: null }
      : decision.action === 'defer'
        ? { decision: 'defer', reason: decision.reason, detail: null, deferredUntil: decision.until.toISOString() }
        : { decision: 'send', reason: null, detail: null, deferredUntil: null };
  // What the automations processor checks besides the pipeline.
  if (verdict.decision !== 'skip' && automation.trigger === 'abandoned_checkout' && ctx.checkout?.completed) {
    verdict = { decision: 'skip', reason: 'checkout_completed', detail: 'the checkout is completed', deferredUntil: null };
  }

  const sms = await renderAutomationMessage(
    {
      template: automation.template,
      shop,
      // The names are in ctx.customer already (the event's, else the stored contact's).
      contact: null,
      ctx,
      timezone: recipientTimezone(contact, shop.timezone, now),
      transactional: rules.transactional,
      now,
    },
    { renderer: deps.renderer, costPerSegment: deps.sms.costPerSegment },
  );
  return {
    trigger: automation.trigger,
    automationId: automation.id || null,
    name: automation.name,
    kind: rules.transactional ? 'transactional' : 'marketing',
    ...verdict,
    delayMinutes: automation.trigger === 'abandoned_checkout' ? automation.delayMinutes : 0,
    trace: decision.trace,
    text: sms.text,
    warnings: sms.warnings,
    encoding: sms.encoding,
    segments: sms.segments,
    costEstimate: sms.costEstimate,
    sender: shopSender(shop, deps.sms.sender),
  };
}
