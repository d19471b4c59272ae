/**
 * The sandbox shop's customers, generated from their number alone: customer `n` (1-based) is the same on every call,
 * in every process, so a bulk result of a million lines is produced on the fly without holding any of it, and the
 * counts `/__sandbox/stats` reports follow from the rules below by arithmetic, without generating a customer.
 *
 * Rules (by `n`): every 10th customer has no phone (and so no SMS consent record); the others' consent state is set
 * by `n % 20` through {@link CONSENT_BY_RESIDUE}. Everything else (names, tags, spend) comes from a hash of `n`.
 */

export type SmsMarketingState = 'NOT_SUBSCRIBED' | 'PENDING' | 'SUBSCRIBED' | 'UNSUBSCRIBED';
export type OptInLevel = 'CONFIRMED_OPT_IN' | 'SINGLE_OPT_IN' | 'UNKNOWN';

/** A customer as the resolvers of the Admin schema read it (field names as in the schema). */
export interface SandboxCustomer {
  id: string;
  firstName: string;
  lastName: string;
  email: string;
  phone: string | null;
  tags: string[];
  numberOfOrders: number;
  amountSpent: { amount: string; currencyCode: string };
  defaultAddress: { id: string; countryCodeV2: string; provinceCode: string; province: string; city: string; zip: string; address1: string } | null;
  smsMarketingConsent: {
    marketingState: SmsMarketingState;
    marketingOptInLevel: OptInLevel;
    consentUpdatedAt: string | null;
    consentCollectedFrom: 'SHOPIFY' | 'OTHER' | null;
  } | null;
  /** The same phone and consent, in the shape of the field Shopify added in 2025-04. */
  defaultPhoneNumber: {
    phoneNumber: string;
    marketingState: SmsMarketingState;
    marketingOptInLevel: OptInLevel;
    marketingUpdatedAt: string | null;
    marketingCollectedFrom: 'SHOPIFY' | 'OTHER' | null;
  } | null;
}

export interface CustomerCounts {
  customers: number;
  withPhone: number;
  subscribed: number;
  byState: Record<SmsMarketingState, number>;
}

/** Consent state of a customer with a phone, by `n % 20` (residues 0 and 10 have no phone). 9 of 18 subscribed. */
const CONSENT_BY_RESIDUE: Readonly<Record<number, SmsMarketingState>> = {
  1: 'SUBSCRIBED', 2: 'SUBSCRIBED', 3: 'NOT_SUBSCRIBED', 4: 'SUBSCRIBED', 5: 'UNSUBSCRIBED', 6: 'SUBSCRIBED',
  7: 'NOT_SUBSCRIBED', 8: 'PENDING', 9: 'SUBSCRIBED', 11: 'SUBSCRIBED', 12: 'NOT_SUBSCRIBED', 13: 'SUBSCRIBED',
  14: 'UNSUBSCRIBED', 15: 'SUBSCRIBED', 16: 'NOT_SUBSCRIBED', 17: 'SUBSCRIBED', 18: 'NOT_SUBSCRIBED', 19: 'UNSUBSCRIBED',
};

const FIRST = ['Ava', 'Noah', 'Mia', 'Liam', 'Zoe', 'Ethan', 'Lena', 'Omar', 'Sofia', 'Kai', 'Maya', 'Leo', 'Iris', 'Finn', 'Nora', 'Ravi'];
const LAST = ['Garcia', 'Smith', 'Nguyen', 'Okafor', 'Rossi', 'Kim', 'Novak', 'Silva', 'Brown', 'Haddad', 'Cohen', 'Lopez'];
const TAGS = ['vip', 'wholesale', 'newsletter', 'returning', 'local'];
/** US area codes with the state they are in, so a customer's phone and address agree. */
const AREAS: readonly (readonly [string, string, string])[] = [
  ['212', 'NY', 'New York'], ['305', 'FL', 'Florida'], ['415', 'CA', 'California'], ['617', 'MA', 'Massachusetts'],
  ['312', 'IL', 'Illinois'], ['206', 'WA', 'Washington'], ['503', 'OR', 'Oregon'], ['702', 'NV', 'Nevada'],
  ['404', 'GA', 'Georgia'], ['512', 'TX', 'Texas'],
];
const EPOCH = Date.UTC(2024, 0, 1);

/** A 32-bit integer hash (lowbias32): cheap, well mixed, the same everywhere. */
function hash(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

export function hasPhone(n: number): boolean {
  return n % 10 !== 0;
}

export function consentStateOf(n: number): SmsMarketingState | null {
  return hasPhone(n) ? CONSENT_BY_RESIDUE[n % 20]! : null;
}

/** Which of {@link AREAS} customer `n` lives in: the next digit after the phone's line number. */
function areaOf(n: number): number {
  return Math.floor(n / 10_000) % AREAS.length;
}

/** E.164, unique for n below 70 million: area code, exchange 201–900, line number (digits of n, in that order). */
function phoneOf(n: number): string {
  const line = n % 10_000;
  const exchange = 201 + (Math.floor(n / 100_000) % 700);
  return `+1${AREAS[areaOf(n)]![0]}${exchange}${String(line).padStart(4, '0')}`;
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function customerGid(n: number): string {
  return `gid://shopify/Customer/${n}`;
}

/** Customer `n` (1-based). */
export function customerAt(n: number, currencyCode: string): SandboxCustomer {
  const h = hash(n);
  const first = FIRST[h % FIRST.length]!;
  const last = LAST[(h >>> 8) % LAST.length]!;
  const phone = hasPhone(n) ? phoneOf(n) : null;
  const areaIndex = areaOf(n);
  const [, provinceCode, province] = AREAS[areaIndex]!;
  const orders = (h >>> 12) % 9;
  const state = consentStateOf(n);
  const tags = (h >>> 20) % 4 === 0 ? [TAGS[(h >>> 24) % TAGS.length]!] : [];
  const consent: SandboxCustomer['smsMarketingConsent'] = state === null ? null : {
    marketingState: state,
    marketingOptInLevel: state === 'NOT_SUBSCRIBED' ? 'UNKNOWN' : state === 'PENDING' || (h & 1) === 1 ? 'CONFIRMED_OPT_IN' : 'SINGLE_OPT_IN',
    consentUpdatedAt: state === 'NOT_SUBSCRIBED' ? null : isoSeconds(EPOCH + (h % (600 * 86_400)) * 1000),
    consentCollectedFrom: state === 'NOT_SUBSCRIBED' ? null : (h >>> 2) % 3 === 0 ? 'OTHER' : 'SHOPIFY',
  };
  return {
    id: customerGid(n),
    firstName: first,
    lastName: last,
    email: `${first}.${last}.${n}@example.com`.toLowerCase(),
    phone,
    tags,
    numberOfOrders: orders,
    amountSpent: { amount: orders === 0 ? '0.0' : `${orders * 10 + ((h >>> 3) % 90)}.${String(h % 100).padStart(2, '0')}`, currencyCode },
    // Every 25th customer never gave an address.
    defaultAddress: n % 25 === 0 ? null : {
      id: `gid://shopify/MailingAddress/${n}?model_name=CustomerAddress`,
      countryCodeV2: 'US',
      provinceCode,
      province,
      city: province,
      zip: String(10_000 + (h % 89_999)),
      address1: `${1 + (h % 999)} Main St`,
    },
    smsMarketingConsent: consent,
    defaultPhoneNumber: phone === null || consent === null ? null : {
      phoneNumber: phone,
      marketingState: consent.marketingState,
      marketingOptInLevel: consent.marketingOptInLevel,
      marketingUpdatedAt: consent.consentUpdatedAt,
      marketingCollectedFrom: consent.consentCollectedFrom,
    },
  };
}

/**
 * The customers a `customers(query: …)` search selects. Shopify's search syntax is wide; the sandbox knows the one
 * filter the sync uses, `phone:*` (customers that have a phone), and no filter at all.
 */
export type CustomerSearch = 'all' | 'withPhone';

/** The search for a `query` argument, or null when the sandbox does not support it. */
export function parseCustomerSearch(query: string | null | undefined): CustomerSearch | null {
  const q = (query ?? '').trim();
  if (q === '') return 'all';
  return q === 'phone:*' ? 'withPhone' : null;
}

export function matches(n: number, search: CustomerSearch): boolean {
  return search === 'all' || hasPhone(n);
}

/** How many of customers 1..total the search selects. */
export function countMatching(total: number, search: CustomerSearch): number {
  return search === 'all' ? total : countCustomers(total).withPhone;
}

/** How many of 1..total are ≡ r (mod m), for 0 ≤ r < m. */
function countResidue(total: number, m: number, r: number): number {
  const first = r === 0 ? m : r;
  return first > total ? 0 : Math.floor((total - first) / m) + 1;
}

/** The counts of a shop of `total` customers, by the rules alone. */
export function countCustomers(total: number): CustomerCounts {
  const byState: Record<SmsMarketingState, number> = { NOT_SUBSCRIBED: 0, PENDING: 0, SUBSCRIBED: 0, UNSUBSCRIBED: 0 };
  for (const [residue, state] of Object.entries(CONSENT_BY_RESIDUE)) byState[state] += countResidue(total, 20, Number(residue));
  return { customers: total, withPhone: total - countResidue(total, 10, 0), subscribed: byState.SUBSCRIBED, byState };
}
