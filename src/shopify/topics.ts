/**
 * Which Shopify topics the service subscribes to and what each does once taken in. A leaf module (it imports nothing),
 * so every layer, db/ included, may take its names from here. `shopify.app.toml` at the
 * repository root declares the same subscriptions (a test holds the two together), so a deployment configured from
 * that file receives exactly what is handled here.
 */

/** The Admin API version the service and its normalisers are written against (`[webhooks] api_version`). */
export const SHOPIFY_API_VERSION = '2025-07';

/** Topics that can lead to a message, so their events go on to `automations`. */
export const FORWARDED_TOPICS: ReadonlySet<string> = new Set([
  'orders/create',
  'orders/paid',
  'orders/fulfilled',
  'orders/partially_fulfilled',
  'orders/cancelled',
  'checkouts/create',
  'checkouts/update',
  'fulfillments/create',
  'fulfillments/update',
]);

/**
 * Topics that keep contacts, consent and the shop true: the customer topics (names, phones, addresses), the SMS
 * consent topic (since API 2025-01 the only place Shopify reports SMS consent changes) and `shop/update` (the shop's
 * name, time zone, country and currency).
 */
export const SYNC_TOPICS: ReadonlySet<string> = new Set([
  'customers/create',
  'customers/update',
  'customers_marketing_consent/update',
  'shop/update',
  'app/uninstalled',
]);

/**
 * Shopify's announcement that one of the app's bulk operations ended (completed, failed or cancelled): it wakes the
 * sync waiting on it (src/sync/bulkFinish.ts). About the app's own Admin API work, not the shop's data, so it has no
 * normaliser: the events processor takes it before normalising.
 */
export const BULK_OPERATIONS_FINISH_TOPIC = 'bulk_operations/finish';

/** Shopify's mandatory privacy (compliance) topics: the one list of them. */
export const PRIVACY_TOPIC_NAMES = ['customers/data_request', 'customers/redact', 'shop/redact'] as const;
export type PrivacyTopicName = (typeof PRIVACY_TOPIC_NAMES)[number];
export const PRIVACY_TOPICS: ReadonlySet<string> = new Set(PRIVACY_TOPIC_NAMES);

/** Every topic the app subscribes to, compliance topics aside. */
export const SUBSCRIBED_TOPICS: readonly string[] = [...FORWARDED_TOPICS, ...SYNC_TOPICS, BULK_OPERATIONS_FINISH_TOPIC].sort();

/** A topic as Shopify writes it: `resource/event`, lower case. */
export function isTopic(value: string): boolean {
  return /^[a-z_]+\/[a-z_]+$/.test(value);
}
