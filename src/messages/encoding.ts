/**
 * SMS encoding, length and part count. Pure.
 *
 * GSM-7 (3GPP TS 23.038 default alphabet): 160 septets in a single message, 153 per part once split (the UDH takes
 * 7). Extension-table characters (`^{}\[~]|€` and form feed) are sent as ESC + char and cost 2 septets; an escape pair
 * is never split between parts, so a part may end one septet short.
 *
 * Any character outside GSM-7 switches the whole message to UCS-2 (in practice UTF-16): 70 code units in one
 * message, 67 per part. Characters outside the BMP (most emoji) take a surrogate pair (2 units) that is never split.
 *
 * Carriers and providers split the same way (Mitto's `textLength` echoes the unit count), so `segments` is what is
 * billed.
 */

export type SmsEncoding = 'GSM-7' | 'UCS-2';

export interface SmsAnalysis {
  encoding: SmsEncoding;
  /** GSM-7 septets (extension characters count 2) or UTF-16 code units. */
  units: number;
  /** Billed parts; 0 for empty text. */
  segments: number;
  /** Capacity of each part: 160/153 (GSM-7) or 70/67 (UCS-2), depending on whether the message is split. */
  perSegment: number;
  /** The distinct characters that forced UCS-2 (at most 10), so an editor can point at a stray `’` or emoji. */
  nonGsmChars: string[];
}

const GSM_BASIC = new Set(
  Array.from(
    '@£$¥èéùìòÇ\nØø\rÅå' +
      'Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ' +
      ' !"#¤%&\'()*+,-./0123456789:;<=>?' +
      '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§' +
      '¿abcdefghijklmnopqrstuvwxyzäöñüà',
  ),
);
const GSM_EXTENSION = new Set(Array.from('\f^{}\\[~]|€'));

export const GSM_SINGLE = 160;
export const GSM_MULTI = 153;
export const UCS2_SINGLE = 70;
export const UCS2_MULTI = 67;
const MAX_REPORTED_CHARS = 10;

/** Septets a character costs in GSM-7, or null when it has no GSM-7 representation. */
export function gsmCost(ch: string): 1 | 2 | null {
  if (GSM_BASIC.has(ch)) return 1;
  if (GSM_EXTENSION.has(ch)) return 2;
  return null;
}

export function isGsm7(text: string): boolean {
  for (const ch of text) if (gsmCost(ch) === null) return false;
  return true;
}

/**
 * Parts needed for indivisible pieces of the given sizes: one part when everything fits in `single`, otherwise
 * pieces are packed greedily into parts of `multi`, a piece that does not fit starting the next part.
 */
function countSegments(costs: readonly number[], total: number, single: number, multi: number): number {
  if (total <= single) return 1;
  let segments = 1;
  let used = 0;
  for (const c of costs) {
    if (used + c > multi) {
      segments += 1;
      used = 0;
    }
    used += c;
  }
  return segments;
}

export function analyzeSms(text: string): SmsAnalysis {
  if (text === '') return { encoding: 'GSM-7', units: 0, segments: 0, perSegment: GSM_SINGLE, nonGsmChars: [] };

  // Iterating a string yields code points, so a surrogate pair arrives as one piece of 2 units.
  const chars = Array.from(text);
  const gsmCosts: number[] = [];
  const nonGsm = new Set<string>();
  for (const ch of chars) {
    const c = gsmCost(ch);
    if (c === null) {
      if (nonGsm.size < MAX_REPORTED_CHARS) nonGsm.add(ch);
    } else gsmCosts.push(c);
  }

  if (nonGsm.size === 0) {
    const units = gsmCosts.reduce((a, b) => a + b, 0);
    const segments = countSegments(gsmCosts, units, GSM_SINGLE, GSM_MULTI);
    return { encoding: 'GSM-7', units, segments, perSegment: segments > 1 ? GSM_MULTI : GSM_SINGLE, nonGsmChars: [] };
  }

  const costs = chars.map((ch) => ch.length);
  const units = text.length;
  const segments = countSegments(costs, units, UCS2_SINGLE, UCS2_MULTI);
  return {
    encoding: 'UCS-2',
    units,
    segments,
    perSegment: segments > 1 ? UCS2_MULTI : UCS2_SINGLE,
    nonGsmChars: [...nonGsm],
  };
}

/** Default price per part (EUR), DOMAIN.md's configurable estimate. */
export const DEFAULT_COST_PER_SEGMENT = 0.03;

/** Estimated cost of a message; rounded to 6 decimals so sums of many messages do not drift. */
export function estimateCost(segments: number, perSegment: number = DEFAULT_COST_PER_SEGMENT): number {
  if (!Number.isInteger(segments) || segments < 0) throw new RangeError(`segments must be a non-negative integer, got ${segments}`);
  if (!Number.isFinite(perSegment) || perSegment < 0) throw new RangeError(`perSegment must be a non-negative number, got ${perSegment}`);
  return Math.round(segments * perSegment * 1e6) / 1e6;
}
