/**
 * What an automation's message must pass and what it is about: the rule pipeline's input built from the automation
 * and its shop, and the object a message is keyed on. Pure.
 */
import type { Automation, AutomationTrigger, Shop } from '../db/schema.js';
import type { AutomationRules as PipelineRules } from '../rules/pipeline.js';
import { DEFAULT_FREQUENCY_CAP, DEFAULT_QUIET_HOURS, isTransactional, MARKETING_TRIGGERS } from './defaults.js';
import { shopSettings } from './settings.js';

/** The normalised event context an automation evaluates (see src/shopify/normalize.ts). */
export type AutomationContext = Record<string, any>;

/** The object a message is about, so one automation sends one message per object. */
export function objectKeyFor(trigger: AutomationTrigger, ctx: AutomationContext, contactId: number | null): string | null {
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
  // A marketing trigger stays marketing even if a stored row says otherwise (rows saved before the rule existed).
  const marketing = MARKETING_TRIGGERS.has(automation.trigger);
  return {
    enabled: automation.enabled,
    transactional: isTransactional(automation),
    consent: marketing ? 'marketing' : r.consent,
    conditions: (r.conditions ?? null) as PipelineRules['conditions'],
    frequencyCap: cap,
    quietHours: { enabled: qh.enabled, window: { start: qh.start, end: qh.end } },
    quietHoursBypass: marketing ? undefined : r.quietHours?.bypass,
  };
}
