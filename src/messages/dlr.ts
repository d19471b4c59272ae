/**
 * Delivery reports. Mitto's exact DLR field names are not public, so the parser accepts the common spellings from
 * query strings (GET) and JSON or form bodies (POST); callers keep the raw report next to the parsed one.
 */
import { AppError } from '../errors.js';

export type DeliveryStatus = 'delivered' | 'failed' | 'pending';

export interface DeliveryReport {
  providerMessageId: string | null;
  /** Our message id, echoed from the `reference` we sent. */
  reference: string | null;
  status: DeliveryStatus;
  /** The carrier's or provider's error code; null when absent or all zeros (SMPP's "no error"). */
  errorCode: string | null;
  /** When the status was reached, if the report says and it can be read. */
  occurredAt: Date | null;
}

const ID_FIELDS = ['id', 'messageId', 'message_id', 'msgId', 'smsId'];
const REFERENCE_FIELDS = ['reference', 'ref', 'clientReference', 'clientRef', 'customerReference'];
const STATUS_FIELDS = ['status', 'state', 'deliveryStatus', 'dlrStatus', 'stat'];
const ERROR_FIELDS = ['errorCode', 'error', 'err', 'statusCode', 'errCode'];
const TIME_FIELDS = ['timestamp', 'doneDate', 'deliveredAt', 'done_date', 'time'];

/**
 * Status words, upper-cased. Numbers follow Kannel's DLR mask (1 delivered, 2 failed, 4 buffered, 8 submitted to the
 * SMSC, 16 rejected by it), which most HTTP gateways copied; the SMPP receipt words are DELIVRD, UNDELIV, REJECTD...
 */
const STATUS_VALUES: Readonly<Record<string, DeliveryStatus>> = {
  DELIVERED: 'delivered',
  DELIVRD: 'delivered',
  DELIVERED_TO_HANDSET: 'delivered',
  '1': 'delivered',
  FAILED: 'failed',
  FAILURE: 'failed',
  UNDELIV: 'failed',
  UNDELIVERED: 'failed',
  UNDELIVERABLE: 'failed',
  REJECTD: 'failed',
  REJECTED: 'failed',
  EXPIRED: 'failed',
  DELETED: 'failed',
  '2': 'failed',
  '16': 'failed',
  BUFFERED: 'pending',
  ENROUTE: 'pending',
  ACCEPTD: 'pending',
  ACCEPTED: 'pending',
  PENDING: 'pending',
  SENT: 'pending',
  SUBMITTED: 'pending',
  QUEUED: 'pending',
  '4': 'pending',
  '8': 'pending',
};

/**
 * Parses one delivery report. Throws `VALIDATION_FAILED` naming the field when the report has neither a message id nor
 * a reference, or when its status is missing or not one we know.
 */
export function parseDeliveryReport(input: Record<string, unknown>): DeliveryReport {
  const providerMessageId = pickString(input, ID_FIELDS);
  const reference = pickString(input, REFERENCE_FIELDS);
  if (providerMessageId === null && reference === null) {
    throw new AppError('VALIDATION_FAILED', 'delivery report has no message id (id, messageId, msgId) and no reference', {
      details: { field: 'id' },
    });
  }

  const statusField = pickField(input, STATUS_FIELDS);
  if (statusField === null) {
    throw new AppError('VALIDATION_FAILED', 'delivery report has no status (status, state, deliveryStatus, dlrStatus)', {
      details: { field: 'status' },
    });
  }
  const status = STATUS_VALUES[statusField.value.toUpperCase().replace(/[\s-]+/g, '_')];
  if (status === undefined) {
    throw new AppError('VALIDATION_FAILED', `delivery report field ${statusField.key} has an unknown value "${statusField.value.slice(0, 40)}"`, {
      details: { field: statusField.key },
    });
  }

  const error = pickString(input, ERROR_FIELDS);
  const time = pickField(input, TIME_FIELDS);
  return {
    providerMessageId,
    reference,
    status,
    errorCode: error === null || /^0+$/.test(error) ? null : error,
    occurredAt: time === null ? null : parseTime(time.value, normalizeKey(time.key) === 'donedate'),
  };
}

/**
 * The first of `spellings` present in `input` with a non-empty scalar value, trimmed (an empty one only when
 * `allowEmpty` and nothing better is there). Keys match ignoring case, `_` and `-`; a repeated query parameter (an
 * array) yields its first element.
 */
export function pickString(input: Record<string, unknown>, spellings: readonly string[], options: { allowEmpty?: boolean } = {}): string | null {
  return pickField(input, spellings, options.allowEmpty)?.value ?? null;
}

function pickField(input: Record<string, unknown>, spellings: readonly string[], allowEmpty = false): { key: string; value: string } | null {
  const byKey = new Map<string, string>();
  for (const key of Object.keys(input)) {
    const k = normalizeKey(key);
    if (!byKey.has(k)) byKey.set(k, key);
  }
  let empty: { key: string; value: string } | null = null;
  for (const spelling of spellings) {
    const key = byKey.get(normalizeKey(spelling));
    if (key === undefined) continue;
    const value = scalar(input[key]);
    if (value === null) continue;
    if (value !== '') return { key, value };
    empty ??= { key, value };
  }
  return allowEmpty ? empty : null;
}

function normalizeKey(key: string): string {
  return key.toLowerCase().replace(/[_-]/g, '');
}

function scalar(value: unknown): string | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (typeof v === 'string') return v.trim();
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'bigint') return v.toString();
  return null;
}

/**
 * ISO 8601 (a zone-less `YYYY-MM-DD hh:mm:ss` is read as UTC, never as server-local time), epoch seconds or
 * milliseconds, or, for SMPP's `done date`, `YYMMDDhhmm[ss]` in UTC. Unreadable times give null: a report with an odd
 * timestamp is still a report.
 */
function parseTime(value: string, smppDoneDate: boolean): Date | null {
  if (smppDoneDate) {
    const m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?$/.exec(value);
    if (m) return valid(new Date(Date.UTC(2000 + Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0))));
  }
  if (/^\d+(\.\d+)?$/.test(value)) {
    const n = Number(value);
    return valid(new Date(n < 1e12 ? n * 1000 : n));
  }
  const iso = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(value) ? `${value.replace(' ', 'T')}Z` : value;
  return valid(new Date(iso));
}

function valid(d: Date): Date | null {
  return Number.isNaN(d.getTime()) ? null : d;
}
