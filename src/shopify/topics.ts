/** Which Shopify topics do what once they are taken in. */

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

/** Shopify's mandatory privacy topics. */
export const PRIVACY_TOPICS: ReadonlySet<string> = new Set(['customers/data_request', 'customers/redact', 'shop/redact']);

/** A topic as Shopify writes it: `resource/event`, lower case. */
export function isTopic(value: string): boolean {
  return /^[a-z_]+\/[a-z_]+$/.test(value);
}
