/**
 * Contacts from a CSV file, validated row by row: a bad row is reported with its line number and the reason, and
 * every good row is kept. Used by `POST /api/contacts/import` and `smsblossom contacts import`.
 *
 * Columns (header row required, names case-insensitive, order free): `phone` (required), `first_name`, `last_name`,
 * `email`, `tags` (separated by `;` or `,`), `country` (ISO 3166 alpha-2, helps read national numbers; default the
 * shop's country), `customer_id` (Shopify), `consent` (`subscribed`, `unsubscribed`, `not_subscribed`; empty leaves
 * the stored consent alone). Consent set by an import is recorded in `consent_changes` with source `import:csv`.
 */
import { parse } from 'csv-parse/sync';
import type { Db } from '../db/client.js';
import { upsertContact, type ContactInput } from '../db/contacts.js';
import type { Shop } from '../db/schema.js';
import { AppError } from '../errors.js';
import { toE164 } from '../shopify/phone.js';

export const IMPORT_MAX_ROWS = 50_000;
const CONSENT_VALUES = new Set(['subscribed', 'unsubscribed', 'not_subscribed']);
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const KNOWN_COLUMNS = new Set(['phone', 'first_name', 'last_name', 'email', 'tags', 'country', 'customer_id', 'consent']);

export interface ImportRowError {
  /** 1-based line number in the file (the header is line 1). */
  line: number;
  reason: string;
}

export interface ImportResult {
  rows: number;
  imported: number;
  created: number;
  updated: number;
  errors: ImportRowError[];
}

export interface ParsedRow {
  line: number;
  input: ContactInput;
}

/** Parses and validates the file; no database access. Throws AppError CSV_INVALID when the file cannot be read at all. */
export function parseContactsCsv(csv: string | Buffer, shop: Pick<Shop, 'countryCode'>, now = new Date()): { rows: ParsedRow[]; errors: ImportRowError[] } {
  const errors: ImportRowError[] = [];
  let records: Array<{ record: Record<string, string>; info: { lines: number } }>;
  try {
    records = parse(csv, {
      columns: (header: string[]) => header.map((h) => h.trim().toLowerCase()),
      bom: true,
      skip_empty_lines: true,
      trim: true,
      info: true,
      relax_column_count: true,
      skip_records_with_error: true,
      on_skip: (err) => {
        if (err) errors.push({ line: (err as { lines?: number }).lines ?? 0, reason: `unreadable row: ${err.message}` });
      },
    });
  } catch (err) {
    throw new AppError('CSV_INVALID', `the file is not readable CSV: ${(err as Error).message}`);
  }
  if (records.length === 0 && errors.length === 0) throw new AppError('CSV_INVALID', 'the file has no rows (a header row and at least one contact)');
  const header = Object.keys(records[0]?.record ?? {});
  if (records.length && !header.includes('phone')) throw new AppError('CSV_INVALID', 'the header row has no "phone" column');
  const unknown = header.filter((h) => !KNOWN_COLUMNS.has(h));
  if (unknown.length) throw new AppError('CSV_INVALID', `unknown column(s): ${unknown.join(', ')} (known: ${[...KNOWN_COLUMNS].join(', ')})`);
  if (records.length > IMPORT_MAX_ROWS) throw new AppError('CSV_INVALID', `the file has ${records.length} rows; at most ${IMPORT_MAX_ROWS} per import`);

  const rows: ParsedRow[] = [];
  const seenPhones = new Map<string, number>();
  for (const { record: r, info } of records) {
    const line = info.lines;
    const fail = (reason: string) => errors.push({ line, reason });
    const country = r.country ? r.country.toUpperCase() : null;
    if (country && !/^[A-Z]{2}$/.test(country)) {
      fail(`country: "${r.country}" is not a two-letter country code`);
      continue;
    }
    if (!r.phone) {
      fail('phone: missing');
      continue;
    }
    const phone = toE164(r.phone, country ?? shop.countryCode);
    if (!phone) {
      fail('phone: not a valid phone number' + (country ?? shop.countryCode ? '' : ' (give it in international format, or a country column)'));
      continue;
    }
    const earlier = seenPhones.get(phone);
    if (earlier !== undefined) {
      fail(`phone: the same number as line ${earlier}`);
      continue;
    }
    if (r.email && !EMAIL.test(r.email)) {
      fail('email: not an email address');
      continue;
    }
    const consent = r.consent ? r.consent.toLowerCase() : '';
    if (consent && !CONSENT_VALUES.has(consent)) {
      fail(`consent: "${r.consent}" is not one of subscribed, unsubscribed, not_subscribed`);
      continue;
    }
    if (r.customer_id && !/^\d{1,20}$/.test(r.customer_id)) {
      fail('customer_id: must be a Shopify customer id (digits)');
      continue;
    }
    seenPhones.set(phone, line);
    const tags = r.tags ? r.tags.split(/[;,]/).map((t) => t.trim()).filter(Boolean) : null;
    rows.push({
      line,
      input: {
        shopifyCustomerId: r.customer_id || null,
        phone,
        firstName: r.first_name || null,
        lastName: r.last_name || null,
        email: r.email || null,
        tags,
        countryCode: country,
        provinceCode: null,
        consent: consent
          ? { state: consent as 'subscribed' | 'unsubscribed' | 'not_subscribed', optInLevel: consent === 'subscribed' ? 'single_opt_in' : null, updatedAt: now, source: 'import:csv' }
          : null,
      },
    });
  }
  errors.sort((a, b) => a.line - b.line);
  return { rows, errors };
}

/**
 * Parses, validates and stores. Rows are stored one by one (each its own transaction), so a row that fails in the
 * database (a phone number another contact already has) is reported and the others are kept.
 */
export async function importContactsCsv(
  db: Db,
  shop: Shop,
  csv: string | Buffer,
  options: { requestId?: string; onProgress?: (done: number, total: number) => void; now?: Date } = {},
): Promise<ImportResult> {
  const { rows, errors } = parseContactsCsv(csv, shop, options.now);
  const records = rows.length + errors.length;
  let created = 0;
  let updated = 0;
  const total = rows.length;
  options.onProgress?.(0, total);
  for (const [i, row] of rows.entries()) {
    try {
      const result = await upsertContact(db, shop.id, row.input, { requestId: options.requestId ?? null, now: options.now });
      if (result?.phoneConflict) errors.push({ line: row.line, reason: 'phone: another contact of this shop already has this number' });
      else if (result?.created) created++;
      else updated++;
    } catch (err) {
      errors.push({ line: row.line, reason: `not stored: ${(err as Error).message.split('\n')[0]}` });
    }
    if ((i + 1) % 50 === 0 || i + 1 === total) options.onProgress?.(i + 1, total);
  }
  errors.sort((a, b) => a.line - b.line);
  return { rows: records, imported: created + updated, created, updated, errors };
}
