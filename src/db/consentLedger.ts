/**
 * The consent ledger's precedence: what may overwrite a contact's stored consent. Pure. It lives in db/ because every
 * write of a contact's consent applies it inside the transaction that read the stored row (contacts.ts); the consent
 * rule of sending (rules/consent.ts) re-exports it.
 */
import type { ConsentState } from './schema.js';

/**
 * Who a consent change comes from, which decides what it may override:
 * - `customer`: the person's own reply (STOP, START/UNSTOP, YES to a pending double opt-in). Their latest word: it
 *   applies whatever time the stored consent carries.
 * - `shopify`: Shopify's consent record (`customers_marketing_consent/update`, the embedded fields of older API
 *   versions, the SMS box ticked at checkout). Timed by Shopify's own timestamp; a record older than what we hold is
 *   stale and ignored.
 * - `merchant`: a CSV import or an edit through the admin API. It may always withdraw consent, and may add consent
 *   only for someone who never opted out: it can never undo an opt-out.
 */
export type ConsentOrigin = 'customer' | 'shopify' | 'merchant';

export interface StoredConsent {
  smsConsent: ConsentState;
  smsConsentUpdatedAt: Date | null;
  optedOutAt: Date | null;
}

export interface IncomingConsent {
  state: ConsentState;
  origin: ConsentOrigin;
  /** The source's own timestamp; null means "now". A time in the future is taken as now. */
  at: Date | null;
}

export type ConsentRefusal = 'opted_out' | 'redacted';

export type ConsentDecision =
  /** Store `state` as of `at` and record the transition. */
  | { action: 'apply'; at: Date }
  /** Same state, confirmed later: only the stored time moves forward, so an older record cannot flip it back. */
  | { action: 'confirm'; at: Date }
  /** Nothing to do: the state is already this one, or the record is older than what is stored. */
  | { action: 'ignore'; why: 'unchanged' | 'stale' }
  /** Not allowed: an opt-out (or a redaction) stands. */
  | { action: 'refuse'; reason: ConsentRefusal };

/** Opted out: STOP, a Shopify unsubscribe, or an opt-out that a later non-opt-in left in place. */
export function isOptedOut(c: Pick<StoredConsent, 'smsConsent' | 'optedOutAt'>): boolean {
  return c.optedOutAt !== null || c.smsConsent === 'unsubscribed';
}

const OPT_IN: ReadonlySet<ConsentState> = new Set(['subscribed', 'pending']);

/**
 * The precedence of the consent ledger. Pure. `current` is null for a contact seen for the first time.
 *
 * 1. An opt-out is sticky: only the person's own opt-in (a `customer` reply, or a `shopify` record whose own
 *    timestamp is later than the opt-out) lifts it. Imports and merchant edits are refused.
 * 2. A redacted contact stays redacted except for the person's own word.
 * 3. Among allowed changes, `shopify` records apply in the order of their own timestamps; `customer` and `merchant`
 *    changes are timed now (after anything stored, so a clock behind Shopify's cannot drop a STOP).
 */
export function decideConsent(current: StoredConsent | null, incoming: IncomingConsent, now: Date): ConsentDecision {
  const given = incoming.at && incoming.at.getTime() < now.getTime() ? incoming.at : now;
  if (current === null) return { action: 'apply', at: incoming.origin === 'shopify' ? given : now };

  const stored = current.smsConsentUpdatedAt;
  if (incoming.origin !== 'customer') {
    if (current.smsConsent === 'redacted') return { action: 'refuse', reason: 'redacted' };
    if (isOptedOut(current) && incoming.state !== 'unsubscribed') {
      if (incoming.origin === 'merchant') return { action: 'refuse', reason: 'opted_out' };
      const optedOut = current.optedOutAt ?? stored;
      if (optedOut && given.getTime() <= optedOut.getTime()) return { action: 'ignore', why: 'stale' };
    }
  }

  let at: Date;
  if (incoming.origin === 'shopify') {
    if (stored && given.getTime() < stored.getTime()) return { action: 'ignore', why: 'stale' };
    at = given;
  } else {
    // The person's reply or the merchant's action happens now; if the stored time is ahead (Shopify's clock, skew),
    // step just past it so the change is the latest on record.
    at = stored && stored.getTime() >= now.getTime() ? new Date(stored.getTime() + 1) : now;
  }
  if (incoming.state === current.smsConsent) {
    return stored === null || at.getTime() > stored.getTime() ? { action: 'confirm', at } : { action: 'ignore', why: 'unchanged' };
  }
  return { action: 'apply', at };
}

/**
 * `opted_out_at` after an applied or confirmed change: the latest opt-out (an opt-in must be later than it to lift
 * it), cleared only by an opt-in; other states leave it as it was.
 */
export function optedOutAtAfter(current: Pick<StoredConsent, 'optedOutAt'> | null, state: ConsentState, at: Date): Date | null {
  if (state === 'unsubscribed') return at;
  if (OPT_IN.has(state)) return null;
  return current?.optedOutAt ?? null;
}
