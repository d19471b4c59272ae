/**
 * Consent rule. Pure.
 *
 * - marketing: the contact must be `subscribed`, never opted out, and have a phone number;
 * - transactional (order confirmation, shipping updates): only "not opted out" and a phone number. A contact who never
 *   subscribed to marketing still receives them, one who replied STOP or whose data was redacted does not.
 *
 * Checks run in a fixed order so a merchant sees the most telling reason: redacted → opted_out → no_phone →
 * not_subscribed.
 */
import type { ConsentState } from '../shopify/normalize.js';

export type { ConsentState };

/** Which consent a message needs. Automations choose it (transactional ones may be configured to need marketing). */
export type ConsentKind = 'marketing' | 'transactional';

export type ConsentReason = 'redacted' | 'opted_out' | 'no_phone' | 'not_subscribed';

/** Outcome of one pure rule: allowed, or a stable reason code with an optional human detail. */
export type RuleResult<R extends string = string> =
  | { allowed: true }
  | { allowed: false; reason: R; detail?: string };

export interface ConsentContact {
  smsConsent: ConsentState;
  /** Set when the contact opted out (STOP reply, Shopify unsubscribe); cleared when they opt back in. */
  optedOutAt: Date | null;
  /** E.164 or raw; only its presence matters here. */
  phone: string | null;
}

export function checkConsent(contact: ConsentContact, kind: ConsentKind): RuleResult<ConsentReason> {
  if (contact.smsConsent === 'redacted') {
    return { allowed: false, reason: 'redacted', detail: 'contact data was redacted' };
  }
  if (contact.optedOutAt !== null) {
    return { allowed: false, reason: 'opted_out', detail: `opted out at ${contact.optedOutAt.toISOString()}` };
  }
  if (contact.smsConsent === 'unsubscribed') {
    return { allowed: false, reason: 'opted_out', detail: 'consent state is unsubscribed' };
  }
  if (contact.phone === null || contact.phone.trim() === '') {
    return { allowed: false, reason: 'no_phone' };
  }
  if (kind === 'marketing' && contact.smsConsent !== 'subscribed') {
    return { allowed: false, reason: 'not_subscribed', detail: `consent state is ${contact.smsConsent}` };
  }
  return { allowed: true };
}

// The consent ledger's precedence (what may overwrite a stored consent) is applied by db/contacts.ts where it writes.
export {
  decideConsent,
  isOptedOut,
  optedOutAtAfter,
  type ConsentDecision,
  type ConsentOrigin,
  type ConsentRefusal,
  type IncomingConsent,
  type StoredConsent,
} from '../db/consentLedger.js';
