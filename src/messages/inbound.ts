/**
 * Inbound SMS: reading the provider's callback and recognising the opt-out, opt-in and help keywords carriers require.
 */
import { AppError } from '../errors.js';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { toE164 } from '../shopify/phone.js';
import { pickString } from './dlr.js';

export type InboundKeyword = 'stop' | 'start' | 'yes' | 'help';

export interface InboundMessage {
  /** The customer's number as sent, trimmed: read against the sender's country once the route is known. */
  from: string;
  /** The number the customer wrote to, which tells us the shop: E.164 when it reads as an international number. */
  to: string;
  text: string;
  providerMessageId: string | null;
}

/** Opt-out keywords (CTIA): the first word is enough — "stop please" is a STOP. */
const OPT_OUT = new Set(['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT']);
const HELP = new Set(['HELP', 'INFO']);
/** Opt-in keywords count only as the whole message: "Start the order over?" is not an opt-in. */
const OPT_IN = new Set(['START', 'UNSTOP']);
/** Confirms a pending double opt-in, and nothing else; also only as the whole message. */
const CONFIRM = new Set(['YES', 'Y']);

/**
 * The keyword a message carries, or null. In any case, ignoring whitespace and punctuation around words; full-width
 * and other compatibility forms are folded (NFKC) first, so `ＳＴＯＰ` counts too.
 *
 * Opting out must be easy and opting in deliberate: STOP and HELP match on the first word (`"Stop, thanks"`), while
 * START/UNSTOP and YES must be the whole message (`"Yes, thanks! Got it"` is an ordinary reply and changes nothing).
 */
export function classifyInbound(text: string): InboundKeyword | null {
  if (typeof text !== 'string') return null;
  const words = text
    .normalize('NFKC')
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w !== '')
    .map((w) => w.toUpperCase());
  const first = words[0];
  if (first === undefined) return null;
  if (OPT_OUT.has(first)) return 'stop';
  if (HELP.has(first)) return 'help';
  if (words.length === 1 && OPT_IN.has(first)) return 'start';
  if (words.length === 1 && CONFIRM.has(first)) return 'yes';
  return null;
}

const FROM_FIELDS = ['from', 'sender', 'msisdn', 'originator', 'source'];
const TO_FIELDS = ['to', 'recipient', 'destination', 'receiver'];
const TEXT_FIELDS = ['text', 'message', 'body', 'content'];
const ID_FIELDS = ['messageId', 'id', 'message_id', 'msgId'];

/**
 * Reads an inbound-SMS callback (query string, JSON or form body). Throws `VALIDATION_FAILED` naming the first missing
 * field among `from`, `to` and `text`. An empty text is accepted only when the field is present.
 */
export function parseInbound(input: Record<string, unknown>): InboundMessage {
  const from = pickString(input, FROM_FIELDS);
  if (from === null) throw missing('from', FROM_FIELDS);
  const to = pickString(input, TO_FIELDS);
  if (to === null) throw missing('to', TO_FIELDS);
  const text = pickString(input, TEXT_FIELDS, { allowEmpty: true });
  if (text === null) throw missing('text', TEXT_FIELDS);
  return { from: from.trim(), to: normalizeNumber(to), text, providerMessageId: pickString(input, ID_FIELDS) };
}

function missing(field: string, spellings: readonly string[]): AppError {
  return new AppError('VALIDATION_FAILED', `inbound message has no ${field} (${spellings.join(', ')})`, { details: { field } });
}

/**
 * A sending number as one key: gateways often send international numbers without the `+` (`4179...`). Long digit
 * strings are read as international; short codes and alphanumeric senders are kept as they are (trimmed).
 */
export function normalizeNumber(raw: string): string {
  const trimmed = raw.trim();
  const compact = trimmed.replace(/[\s().-]/g, '');
  if (/^\+\d+$/.test(compact) || /^00\d+$/.test(compact)) return toE164(compact) ?? trimmed;
  if (/^\d{8,15}$/.test(compact)) return toE164(`+${compact}`) ?? trimmed;
  return trimmed;
}

/**
 * The customer's number in E.164, read with the country of the number they wrote to (`015123456789` to a German
 * number is `+4915123456789`), then as international; null when it is no valid phone number.
 */
export function customerNumber(raw: string, country: string | null): string | null {
  const national = country ? toE164(raw, country) : null;
  if (national) return national;
  const n = normalizeNumber(raw);
  return n.startsWith('+') ? n : null;
}

/** The ISO country of an E.164 number, or null (short codes, alphanumeric senders). */
export function countryOfNumber(number: string): string | null {
  if (!number.startsWith('+')) return null;
  return parsePhoneNumberFromString(number)?.country ?? null;
}
