/**
 * The automations every shop gets the first time it is seen (`ensureDefaultAutomations`), with templates a merchant
 * could ship as they are. Transactional ones (order and shipping updates) need only "not opted out" and ignore quiet
 * hours; marketing ones need `subscribed` consent, respect quiet hours and the frequency cap.
 */
import type { AutomationRules, AutomationTrigger } from './schema.js';

export interface AutomationDefault {
  trigger: AutomationTrigger;
  name: string;
  enabled: boolean;
  transactional: boolean;
  delayMinutes: number;
  template: string;
  rules: AutomationRules;
}

export const DEFAULT_AUTOMATIONS: readonly AutomationDefault[] = [
  {
    trigger: 'order_paid',
    name: 'Order confirmation',
    enabled: true,
    transactional: true,
    delayMinutes: 0,
    template:
      '{{ shop.name }}: Thanks for your order {{ order.name }}{% if customer.firstName %}, {{ customer.firstName }}{% endif %}! ' +
      'Total {{ order.totalPrice | money: order.currency }}.{% if order.statusUrl %} Details: {{ order.statusUrl }}{% endif %}',
    rules: {},
  },
  {
    trigger: 'order_created',
    name: 'Order received',
    enabled: false,
    transactional: true,
    delayMinutes: 0,
    template: "{{ shop.name }}: We've received your order {{ order.name }}. We'll text you when it ships.",
    rules: {},
  },
  {
    trigger: 'abandoned_checkout',
    name: 'Abandoned checkout',
    enabled: true,
    transactional: false,
    delayMinutes: 30,
    template:
      "{{ shop.name }}: Hi {{ customer.firstName | default: 'there' }}, you left something in your cart. " +
      'Complete your order here: {{ checkout.recoveryUrl }}',
    // No cap of its own: the shop's cap applies (default DEFAULT_FREQUENCY_CAP in automations/defaults.ts), so changing it reaches this one too.
    rules: {},
  },
  {
    trigger: 'fulfillment_update',
    name: 'Shipping update',
    enabled: true,
    transactional: true,
    delayMinutes: 0,
    template:
      '{{ shop.name }}: Good news, your order{% if order.name %} {{ order.name }}{% endif %} is on its way!' +
      '{% if fulfillment.trackingUrl %} Track it: {{ fulfillment.trackingUrl }}{% elsif fulfillment.trackingNumber %} ' +
      'Tracking number: {{ fulfillment.trackingNumber }}{% endif %}',
    rules: {},
  },
  {
    trigger: 'welcome',
    name: 'Welcome',
    enabled: true,
    transactional: false,
    delayMinutes: 0,
    template: "Welcome to {{ shop.name }}, {{ customer.firstName | default: 'friend' }}! You'll be the first to hear about our offers.",
    // A welcome answers the customer's own opt-in: it is not held back by the cap meant for promotions.
    rules: { frequencyCap: null },
  },
];
