/**
 * The automations every shop gets the first time it is seen, with templates a merchant could ship as they are.
 * Transactional ones (order and shipping updates) need only "not opted out" and ignore quiet hours; marketing ones
 * need `subscribed` consent, respect quiet hours and the frequency cap.
 */
import type { AutomationTrigger } from '../db/schema.js';

// The automations themselves are the rows every new shop starts with: db/defaultAutomations.ts.
export { DEFAULT_AUTOMATIONS, type AutomationDefault } from '../db/defaultAutomations.js';

export const DEFAULT_QUIET_HOURS = { enabled: true, start: '21:00', end: '08:00' } as const;
export const DEFAULT_FREQUENCY_CAP = { max: 1, windowHours: 24 } as const;
/** Abandoned-checkout reminders are never sent later than this after the abandonment. */
export const ABANDONED_CHECKOUT_MAX_AGE_HOURS = 48;

/** Which automation a Shopify topic can start. */
export const TOPIC_TRIGGERS: Readonly<Record<string, AutomationTrigger>> = {
  'orders/paid': 'order_paid',
  'orders/create': 'order_created',
  'checkouts/create': 'abandoned_checkout',
  'checkouts/update': 'abandoned_checkout',
  'fulfillments/create': 'fulfillment_update',
  'fulfillments/update': 'fulfillment_update',
  'orders/fulfilled': 'fulfillment_update',
};

/**
 * Triggers whose messages are marketing whatever an automation's settings say: a cart reminder or a welcome is a
 * promotion, so it always needs marketing consent, respects quiet hours and carries the opt-out footer. Campaigns are
 * marketing too (they have no automation).
 */
export const MARKETING_TRIGGERS: ReadonlySet<AutomationTrigger> = new Set(['abandoned_checkout', 'welcome']);

/** Whether an automation's messages are transactional: never for a marketing trigger, else as configured. */
export function isTransactional(a: { trigger: AutomationTrigger; transactional: boolean }): boolean {
  return a.transactional && !MARKETING_TRIGGERS.has(a.trigger);
}
