import { AppError } from '../errors.js';
import { pickCountry } from './phone.js';
import { PRIVACY_TOPICS } from './topics.js';

export type ConsentState = 'not_subscribed' | 'pending' | 'subscribed' | 'unsubscribed' | 'redacted';

export interface SmsConsent {
  state: ConsentState;
  optInLevel: 'single_opt_in' | 'confirmed_opt_in' | 'unknown' | null;
  updatedAt: string | null;
  collectedFrom: string | null;
}

export interface CustomerContext {
  shopifyId: string | null;
  firstName: string | null;
  lastName: string | null;
  email: string | null;
  /** Raw as received, not normalised. */
  phone: string | null;
  countryCode: string | null;
  provinceCode: string | null;
  tags: string[];
  smsConsent: SmsConsent | null;
}

export interface LineItemContext {
  title: string;
  quantity: number;
  price: string | null;
  sku: string | null;
  variantTitle: string | null;
  productId: string | null;
  variantId: string | null;
}

export interface OrderContext {
  id: string;
  graphqlId: string | null;
  name: string | null;
  number: number | null;
  totalPrice: string | null;
  subtotalPrice: string | null;
  currency: string | null;
  financialStatus: string | null;
  fulfillmentStatus: string | null;
  statusUrl: string | null;
  checkoutToken: string | null;
  cartToken: string | null;
  createdAt: string | null;
  cancelledAt: string | null;
  lineItems: LineItemContext[];
}

export interface CheckoutContext {
  id: string | null;
  token: string;
  cartToken: string | null;
  recoveryUrl: string | null;
  totalPrice: string | null;
  currency: string | null;
  completed: boolean;
  completedAt: string | null;
  createdAt: string | null;
  updatedAt: string | null;
  locale: string | null;
  lineItems: LineItemContext[];
}

export interface FulfillmentContext {
  id: string;
  orderId: string | null;
  status: string | null;
  shipmentStatus: string | null;
  trackingNumber: string | null;
  trackingNumbers: string[];
  trackingCompany: string | null;
  trackingUrl: string | null;
  trackingUrls: string[];
}

export interface InventoryContext {
  inventoryItemId: string;
  locationId: string | null;
  available: number | null;
  updatedAt: string | null;
}

export interface PrivacyContext {
  customerId: string | null;
  email: string | null;
  phone: string | null;
  ordersToRedact: string[];
  ordersRequested: string[];
  dataRequestId: string | null;
}

/** What `shop/update` says about the shop (its REST `Shop` resource). */
export interface ShopContext {
  name: string | null;
  /** IANA zone (`iana_timezone`), as Shopify sends it; validated where it is stored. */
  timezone: string | null;
  countryCode: string | null;
  currency: string | null;
}

interface Base {
  topic: string;
  shopId: string;
  objectId: string | null;
}

export type EventContext =
  | (Base & { kind: 'order'; order: OrderContext; customer: CustomerContext | null; fulfillment: FulfillmentContext | null })
  | (Base & {
      kind: 'checkout';
      checkout: CheckoutContext;
      customer: CustomerContext | null;
      smsMarketing: { phone: string | null; accepts: boolean | null };
    })
  | (Base & { kind: 'fulfillment'; fulfillment: FulfillmentContext; customer: CustomerContext | null })
  | (Base & { kind: 'customer'; customer: CustomerContext })
  | (Base & { kind: 'inventory'; inventory: InventoryContext })
  | (Base & { kind: 'privacy'; privacy: PrivacyContext })
  | (Base & { kind: 'shop'; shop: ShopContext | null })
  | (Base & { kind: 'unknown' });

export type EventKind = EventContext['kind'];

type Obj = Record<string, unknown>;

const ORDER_TOPICS = new Set([
  'orders/create',
  'orders/paid',
  'orders/updated',
  'orders/fulfilled',
  'orders/cancelled',
  'orders/partially_fulfilled',
  'orders/edited',
]);
const CHECKOUT_TOPICS = new Set(['checkouts/create', 'checkouts/update', 'checkouts/delete']);
const FULFILLMENT_TOPICS = new Set(['fulfillments/create', 'fulfillments/update']);
const CUSTOMER_TOPICS = new Set([
  'customers/create',
  'customers/update',
  'customers/enable',
  'customers/disable',
  // The SMS consent topic. Its body is {id, phone, sms_marketing_consent}; since API 2025-01 it is the only webhook
  // that reports SMS consent (customer payloads elsewhere no longer carry it).
  'customers_marketing_consent/update',
  'customers/delete',
]);
const INVENTORY_TOPICS = new Set(['inventory_levels/update', 'inventory_levels/connect', 'inventory_levels/disconnect']);
const SHOP_TOPICS = new Set(['shop/update', 'shop/redact', 'app/uninstalled']);

/** Which EventContext kind a webhook topic maps to. */
export function topicKind(topic: string): EventKind {
  const t = topic.trim().toLowerCase();
  if (ORDER_TOPICS.has(t)) return 'order';
  if (CHECKOUT_TOPICS.has(t)) return 'checkout';
  if (FULFILLMENT_TOPICS.has(t)) return 'fulfillment';
  if (CUSTOMER_TOPICS.has(t)) return 'customer';
  if (INVENTORY_TOPICS.has(t)) return 'inventory';
  // Before the privacy topics: `shop/redact` is one of them, but its context is the shop's (it names no customer).
  if (SHOP_TOPICS.has(t)) return 'shop';
  if (PRIVACY_TOPICS.has(t)) return 'privacy';
  return 'unknown';
}

// ---- lenient field readers: wrong type → null, never throw ----

function isPlainObject(v: unknown): v is Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function obj(v: unknown): Obj | null {
  return isPlainObject(v) ? v : null;
}

function str(v: unknown): string | null {
  if (typeof v !== 'string') return null;
  return v.trim() === '' ? null : v;
}

/** Shopify money fields are decimal strings; a bare number is accepted too. */
function money(v: unknown): string | null {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return str(v);
}

function int(v: unknown): number | null {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v.trim())) {
    const n = Number(v.trim());
    return Number.isSafeInteger(n) ? n : null;
  }
  return null;
}

function bool(v: unknown): boolean | null {
  return typeof v === 'boolean' ? v : null;
}

/**
 * Shopify ids arrive as JSON numbers (or strings / bigints from a lossless parser). String() keeps what JSON.parse
 * produced; numbers ≥ 1e21 would print in exponent form, so those are rejected.
 */
function idOf(v: unknown): string | null {
  if (typeof v === 'bigint') return v >= 0n ? v.toString() : null;
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v < 1e21 ? String(v) : null;
  if (typeof v === 'string') {
    const t = v.trim();
    return t === '' ? null : t;
  }
  return null;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function invalid(topic: string, field: string, problem: string): AppError {
  return new AppError('INVALID_PAYLOAD', `${field}: ${problem}`, { details: { topic, field } });
}

function requireId(topic: string, field: string, v: unknown): string {
  const id = idOf(v);
  if (id !== null) return id;
  if (v === undefined || v === null || v === '') throw invalid(topic, field, 'required identifier is missing');
  throw invalid(topic, field, `expected a numeric or string id, got ${describe(v)}`);
}

function strings(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  return v.flatMap((x) => {
    const s = str(x);
    return s === null ? [] : [s];
  });
}

function ids(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  return v.flatMap((x) => {
    const id = idOf(x);
    return id === null ? [] : [id];
  });
}

function parseTags(v: unknown): string[] {
  const parts = typeof v === 'string' ? v.split(',') : Array.isArray(v) ? v : [];
  const out: string[] = [];
  for (const p of parts) {
    if (typeof p !== 'string') continue;
    const t = p.trim();
    if (t !== '' && !out.includes(t)) out.push(t);
  }
  return out;
}

const CONSENT_STATES: readonly ConsentState[] = ['not_subscribed', 'pending', 'subscribed', 'unsubscribed', 'redacted'];
const OPT_IN_LEVELS: ReadonlyArray<NonNullable<SmsConsent['optInLevel']>> = ['single_opt_in', 'confirmed_opt_in', 'unknown'];

function oneOf<T extends string>(v: unknown, allowed: readonly T[]): T | null {
  if (typeof v !== 'string') return null;
  // GraphQL-shaped payloads use upper case (SUBSCRIBED); REST uses lower case.
  const lower = v.trim().toLowerCase();
  return allowed.find((a) => a === lower) ?? null;
}

function parseConsent(v: unknown): SmsConsent | null {
  const c = obj(v);
  if (!c) return null;
  const state = oneOf(c.state, CONSENT_STATES);
  if (state === null) return null;
  return {
    state,
    optInLevel: oneOf(c.opt_in_level, OPT_IN_LEVELS),
    updatedAt: str(c.consent_updated_at),
    collectedFrom: str(c.consent_collected_from),
  };
}

function firstStr(...vs: unknown[]): string | null {
  for (const v of vs) {
    const s = str(v);
    if (s !== null) return s;
  }
  return null;
}

/** Country and province come from the same address: the first one that carries a country code. */
function locate(addresses: unknown[]): { countryCode: string | null; provinceCode: string | null } {
  for (const a of addresses) {
    const addr = obj(a);
    if (!addr) continue;
    const countryCode = pickCountry(str(addr.country_code));
    if (countryCode !== null) return { countryCode, provinceCode: str(addr.province_code) };
  }
  return { countryCode: null, provinceCode: null };
}

interface CustomerFallbacks {
  email?: unknown[];
  phone?: unknown[];
  addresses?: unknown[];
}

function buildCustomer(c: Obj | null, fb: CustomerFallbacks = {}): CustomerContext {
  const addresses: unknown[] = [c?.default_address];
  if (c && Array.isArray(c.addresses)) {
    const list: unknown[] = c.addresses;
    addresses.push(...list.filter((a) => obj(a)?.default === true), ...list);
  }
  addresses.push(...(fb.addresses ?? []));
  return {
    shopifyId: idOf(c?.id),
    firstName: str(c?.first_name),
    lastName: str(c?.last_name),
    email: firstStr(c?.email, ...(fb.email ?? [])),
    phone: firstStr(c?.phone, ...(fb.phone ?? [])),
    ...locate(addresses),
    tags: parseTags(c?.tags),
    smsConsent: parseConsent(c?.sms_marketing_consent),
  };
}

function hasContact(c: CustomerContext): boolean {
  return c.shopifyId !== null || c.email !== null || c.phone !== null;
}

function buildLineItems(v: unknown): LineItemContext[] {
  if (!Array.isArray(v)) return [];
  const out: LineItemContext[] = [];
  for (const x of v) {
    const li = obj(x);
    if (!li) continue;
    out.push({
      title: firstStr(li.title, li.name) ?? '',
      quantity: int(li.quantity) ?? 0,
      price: money(li.price),
      sku: str(li.sku),
      variantTitle: str(li.variant_title),
      productId: idOf(li.product_id),
      variantId: idOf(li.variant_id),
    });
  }
  return out;
}

function buildFulfillment(f: Obj, id: string, orderIdFallback: string | null): FulfillmentContext {
  const trackingNumber = firstStr(f.tracking_number, ...strings(f.tracking_numbers));
  const trackingUrl = firstStr(f.tracking_url, ...strings(f.tracking_urls));
  const trackingNumbers = strings(f.tracking_numbers);
  const trackingUrls = strings(f.tracking_urls);
  return {
    id,
    orderId: idOf(f.order_id) ?? orderIdFallback,
    status: str(f.status),
    shipmentStatus: str(f.shipment_status),
    trackingNumber,
    trackingNumbers: trackingNumbers.length === 0 && trackingNumber !== null ? [trackingNumber] : trackingNumbers,
    trackingCompany: str(f.tracking_company),
    trackingUrl,
    trackingUrls: trackingUrls.length === 0 && trackingUrl !== null ? [trackingUrl] : trackingUrls,
  };
}

// ---- topic families ----

function normalizeOrder(topic: string, shopId: string, raw: Obj): EventContext {
  // orders/edited delivers {order_edit: {id, order_id, ...}} rather than an order.
  const edit = topic === 'orders/edited' && raw.id === undefined ? obj(raw.order_edit) : null;
  const id = edit ? requireId(topic, 'order_edit.order_id', edit.order_id) : requireId(topic, 'id', raw.id);
  const shipping = obj(raw.shipping_address);
  const billing = obj(raw.billing_address);

  const order: OrderContext = {
    id,
    graphqlId: str(raw.admin_graphql_api_id),
    name: str(raw.name),
    number: int(raw.order_number),
    totalPrice: money(raw.total_price),
    subtotalPrice: money(raw.subtotal_price),
    currency: firstStr(raw.currency, raw.presentment_currency),
    financialStatus: str(raw.financial_status),
    fulfillmentStatus: str(raw.fulfillment_status),
    statusUrl: str(raw.order_status_url),
    checkoutToken: str(raw.checkout_token),
    cartToken: str(raw.cart_token),
    createdAt: str(raw.created_at),
    cancelledAt: str(raw.cancelled_at),
    lineItems: buildLineItems(raw.line_items),
  };

  const customer = buildCustomer(obj(raw.customer), {
    email: [raw.email, raw.contact_email],
    phone: [raw.phone, shipping?.phone, billing?.phone],
    addresses: [shipping, billing],
  });

  let fulfillment: FulfillmentContext | null = null;
  if ((topic === 'orders/fulfilled' || topic === 'orders/partially_fulfilled') && Array.isArray(raw.fulfillments)) {
    const last = obj(raw.fulfillments.at(-1));
    const fid = idOf(last?.id);
    if (last && fid !== null) fulfillment = buildFulfillment(last, fid, id);
  }

  return { kind: 'order', topic, shopId, objectId: id, order, customer: hasContact(customer) ? customer : null, fulfillment };
}

function normalizeCheckout(topic: string, shopId: string, raw: Obj): EventContext {
  // Checkout payloads name it `token`; some order-derived shapes only carry `checkout_token`.
  const tokenField = raw.token == null && raw.checkout_token != null ? 'checkout_token' : 'token';
  const tok = requireId(topic, tokenField, raw[tokenField]);
  const shipping = obj(raw.shipping_address);
  const billing = obj(raw.billing_address);
  const completedAt = str(raw.completed_at);

  const checkout: CheckoutContext = {
    id: idOf(raw.id),
    token: tok,
    cartToken: str(raw.cart_token),
    recoveryUrl: str(raw.abandoned_checkout_url),
    totalPrice: money(raw.total_price),
    currency: firstStr(raw.currency, raw.presentment_currency),
    completed: completedAt !== null,
    completedAt,
    createdAt: str(raw.created_at),
    updatedAt: str(raw.updated_at),
    locale: str(raw.customer_locale),
    lineItems: buildLineItems(raw.line_items),
  };

  const customer = buildCustomer(obj(raw.customer), {
    email: [raw.email],
    phone: [raw.phone, raw.sms_marketing_phone, shipping?.phone, billing?.phone],
    addresses: [shipping, billing],
  });

  return {
    kind: 'checkout',
    topic,
    shopId,
    objectId: tok,
    checkout,
    customer: hasContact(customer) ? customer : null,
    smsMarketing: { phone: firstStr(raw.sms_marketing_phone, raw.phone), accepts: bool(raw.buyer_accepts_sms_marketing) },
  };
}

function normalizeFulfillment(topic: string, shopId: string, raw: Obj): EventContext {
  const id = requireId(topic, 'id', raw.id);
  const fulfillment = buildFulfillment(raw, id, null);
  const dest = obj(raw.destination);
  let customer: CustomerContext | null = null;
  if (dest) {
    customer = {
      shopifyId: null,
      firstName: str(dest.first_name),
      lastName: str(dest.last_name),
      email: str(raw.email),
      phone: str(dest.phone),
      countryCode: pickCountry(str(dest.country_code)),
      provinceCode: str(dest.province_code),
      tags: [],
      smsConsent: null,
    };
  }
  return { kind: 'fulfillment', topic, shopId, objectId: id, fulfillment, customer };
}

function normalizeCustomer(topic: string, shopId: string, raw: Obj): EventContext {
  // customers_marketing_consent/update sends {id, phone, sms_marketing_consent}; `customer_id` seen in older shapes.
  const idField = raw.id === undefined && raw.customer_id !== undefined ? 'customer_id' : 'id';
  const id = requireId(topic, idField, raw[idField]);
  const customer = buildCustomer(raw);
  customer.shopifyId = id;
  return { kind: 'customer', topic, shopId, objectId: id, customer };
}

function normalizeInventory(topic: string, shopId: string, raw: Obj): EventContext {
  const inventoryItemId = requireId(topic, 'inventory_item_id', raw.inventory_item_id);
  return {
    kind: 'inventory',
    topic,
    shopId,
    objectId: inventoryItemId,
    inventory: {
      inventoryItemId,
      locationId: idOf(raw.location_id),
      available: int(raw.available),
      updatedAt: str(raw.updated_at),
    },
  };
}

function normalizePrivacy(topic: string, shopId: string, raw: Obj): EventContext {
  const c = obj(raw.customer);
  const privacy: PrivacyContext = {
    customerId: idOf(c?.id),
    email: str(c?.email),
    phone: str(c?.phone),
    ordersToRedact: ids(raw.orders_to_redact),
    ordersRequested: ids(raw.orders_requested),
    dataRequestId: idOf(obj(raw.data_request)?.id),
  };
  return { kind: 'privacy', topic, shopId, objectId: privacy.customerId, privacy };
}

function buildShop(raw: Obj): ShopContext {
  return {
    name: str(raw.name),
    timezone: str(raw.iana_timezone),
    countryCode: pickCountry(str(raw.country_code)),
    currency: str(raw.currency),
  };
}

/**
 * Reduces a Shopify webhook payload to the fields SMS Blossom uses. Pure; throws AppError INVALID_PAYLOAD only when
 * the payload is not an object or lacks the identifier of its topic's object. Other odd fields become null/empty.
 */
export function normalizeEventContext(topic: string, raw: unknown, shopId: string): EventContext {
  const t = topic.trim().toLowerCase();
  if (!isPlainObject(raw)) throw invalid(t, '(root)', `expected a JSON object, got ${describe(raw)}`);
  switch (topicKind(t)) {
    case 'order':
      return normalizeOrder(t, shopId, raw);
    case 'checkout':
      return normalizeCheckout(t, shopId, raw);
    case 'fulfillment':
      return normalizeFulfillment(t, shopId, raw);
    case 'customer':
      return normalizeCustomer(t, shopId, raw);
    case 'inventory':
      return normalizeInventory(t, shopId, raw);
    case 'privacy':
      return normalizePrivacy(t, shopId, raw);
    case 'shop':
      return { kind: 'shop', topic: t, shopId, objectId: idOf(raw.id), shop: t === 'shop/update' ? buildShop(raw) : null };
    case 'unknown':
      return { kind: 'unknown', topic: t, shopId, objectId: idOf(raw.id) };
  }
}
