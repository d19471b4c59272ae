/**
 * Frequency cap ("smart sending"), pure part: at most `max` marketing messages per contact per shop in a sliding
 * window of `windowHours`. The atomic reservation (Redis sorted set / DB row lock) lives elsewhere and must apply the
 * same arithmetic; {@link capDecision} is what it and the rule pipeline agree on.
 *
 * Window: a send counts while `sentAt > now - window` (a send exactly `windowHours` ago no longer counts). Timestamps
 * in the future (clock skew between workers) count.
 */
import { AppError } from '../errors.js';

export interface FrequencyCap {
  /** Messages allowed in the window; at least 1. */
  max: number;
  /** Sliding window length in hours, > 0 and at most 720 (30 days). */
  windowHours: number;
}

/** Klaviyo's default; DOMAIN.md lists 8–24 h across the leading apps. */
export const DEFAULT_FREQUENCY_CAP: Readonly<FrequencyCap> = Object.freeze({ max: 1, windowHours: 24 });

const HOUR_MS = 3_600_000;
const MAX_WINDOW_HOURS = 720;

/**
 * `count`: sends inside the window; `remaining`: free slots before this message (so ≥ 1 when allowed);
 * `windowStart`: sends at or before this instant (ms) no longer count and may be pruned.
 */
export type CapDecision =
  | { allowed: true; count: number; remaining: number; windowStart: number }
  | {
      allowed: false;
      count: number;
      remaining: 0;
      windowStart: number;
      /** The earliest time (ms) at which enough sends leave the window for one more message. */
      retryAt: number;
    };

/** Throws AppError VALIDATION_FAILED unless `max` is a positive integer and `windowHours` in (0, 720]. */
export function assertValidCap(cap: FrequencyCap): void {
  if (!Number.isInteger(cap.max) || cap.max < 1) {
    throw new AppError('VALIDATION_FAILED', `frequency cap: max must be a positive integer, got ${cap.max}`);
  }
  if (!Number.isFinite(cap.windowHours) || cap.windowHours <= 0 || cap.windowHours > MAX_WINDOW_HOURS) {
    throw new AppError('VALIDATION_FAILED', `frequency cap: windowHours must be in (0, ${MAX_WINDOW_HOURS}], got ${cap.windowHours}`);
  }
}

export function capWindowMs(cap: FrequencyCap): number {
  return Math.round(cap.windowHours * HOUR_MS);
}

/**
 * Redis key of a contact's recent marketing sends in one shop. The caller adds its queue/app prefix. Ids must not be
 * empty or contain `:` or whitespace, so two (shop, contact) pairs can never produce the same key.
 */
export function frequencyCapKey(shopId: string | number, contactId: string | number): string {
  const s = String(shopId);
  const c = String(contactId);
  for (const [name, v] of [['shopId', s], ['contactId', c]] as const) {
    if (v === '' || /[:\s]/.test(v)) throw new AppError('VALIDATION_FAILED', `frequency cap key: invalid ${name} ${JSON.stringify(v)}`);
  }
  return `fcap:${s}:${c}`;
}

/** Whether one more marketing message may go out now, given the contact's send times (ms since epoch). */
export function capDecision(
  sentTimestampsMs: readonly number[],
  now: number,
  cap: FrequencyCap = DEFAULT_FREQUENCY_CAP,
): CapDecision {
  assertValidCap(cap);
  const windowMs = capWindowMs(cap);
  const windowStart = now - windowMs;
  const inWindow = sentTimestampsMs.filter((ts) => Number.isFinite(ts) && ts > windowStart).sort((a, b) => a - b);
  const count = inWindow.length;
  if (count < cap.max) return { allowed: true, count, remaining: cap.max - count, windowStart };
  // One more is allowed once count - max + 1 of the oldest sends have left the window.
  const oldestThatMustExpire = inWindow[count - cap.max]!;
  return { allowed: false, count, remaining: 0, windowStart, retryAt: oldestThatMustExpire + windowMs };
}
