/**
 * Inbound SMS: reading the provider's callback and recognising the opt-out, opt-in and help keywords carriers require.
 */
import { AppError } from '../errors.js';
import { toE164 } from '../shopify/phone.js';
import { pickString } from './dlr.js';

export type InboundKeyword = 'stop' | 'start' | 'help';

export interface InboundMessage {
  /** The customer's number: E.164 when it reads as a phone number, else as sent (trimmed). */
  from: string;
  /** The number the customer wrote to, which tells us the shop: normalised like `from`. */
  to: string;
  text: string;
  providerMessageId: string | null;
}

const KEYWORDS: Readonly<Record<string, InboundKeyword>> = {
  STOP: 'stop',
  STOPALL: 'stop',
  UNSUBSCRIBE: 'stop',
  CANCEL: 'stop',
  END: 'stop',
  QUIT: 'stop',
  START: 'start',
  YES: 'start',
  UNSTOP: 'start',
  HELP: 'help',
  INFO: 'help',
};

/**
 * The keyword a message carries, or null. Matches the first word (which covers a message that is only the keyword) in
 * any case, ignoring whitespace and punctuation around it: `" Stop! "`, `"stop please"`, `"STOP."` are all `stop`.
 * Full-width and other compatibility forms are folded (NFKC) first, so `ＳＴＯＰ` counts too.
 */
export function classifyInbound(text: string): InboundKeyword | null {
  if (typeof text !== 'string') return null;
  const first = text.normalize('NFKC').split(/[^\p{L}\p{N}]+/u).find((w) => w !== '');
  return first === undefined ? null : (KEYWORDS[first.toUpperCase()] ?? null);
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
  return { from: normalizeNumber(from), to: normalizeNumber(to), text, providerMessageId: pickString(input, ID_FIELDS) };
}

function missing(field: string, spellings: readonly string[]): AppError {
  return new AppError('VALIDATION_FAILED', `inbound message has no ${field} (${spellings.join(', ')})`, { details: { field } });
}

/**
 * Gateways often send international numbers without the `+` (`4179...`). Long digit strings are read as international;
 * short codes and alphanumeric senders are kept as they are.
 */
function normalizeNumber(raw: string): string {
  const compact = raw.replace(/[\s().-]/g, '');
  if (/^\+\d+$/.test(compact) || /^00\d+$/.test(compact)) return toE164(compact) ?? raw;
  if (/^\d{8,15}$/.test(compact)) return toE164(`+${compact}`) ?? raw;
  return raw;
}
