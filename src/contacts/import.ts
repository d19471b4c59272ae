/**
 * Contacts from a CSV file, validated row by row: a bad row is reported with its line number and the reason, and
 * every good row is kept. Used by `POST /api/contacts/import` and `smsblossom contacts import`.
 *
 * Columns (header row required, names case-insensitive, order free): `phone` (required), `first_name`, `last_name`,
 * `email`, `tags` (separated by `;` or `,`), `country` (ISO 3166 alpha-2, helps read national numbers; default the
 * shop's country), `customer_id` (Shopify), `consent` (`subscribed`, `unsubscribed`, `not_subscribed`; empty leaves
 * the stored consent alone). Consent set by an import is recorded in `consent_changes` with source `import:csv`.
 *
 * An import speaks for the merchant, not for the person: it can withdraw consent, and add it only for contacts who
 * never opted out. A row that would undo an opt-out keeps its other fields and is listed in `consentRefused`.
 */
import { Transform, type Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { parse as parseStream, type Options as CsvOptions } from 'csv-parse';
import { parse } from 'csv-parse/sync';
import { sqlStateOf, type Db } from '../db/client.js';
import { upsertContact, upsertContactsBatch, type BatchUpsertResult, type ContactInput } from '../db/contacts.js';
import type { Shop } from '../db/schema.js';
import { AppError } from '../errors.js';
import { toE164 } from '../shopify/phone.js';

export const IMPORT_MAX_ROWS = 50_000;
/** Rows stored per set-based page: a few statements per page instead of several per row. */
const IMPORT_PAGE_ROWS = 500;
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
  /** Rows stored without their consent: the contact opted out (STOP, Shopify unsubscribe), which only they can undo. */
  consentRefused: ImportRowError[];
}

export interface ParsedRow {
  line: number;
  input: ContactInput;
}

type CsvRecord = { record: Record<string, string>; info: { lines: number } };
const QUOTE_ERRORS = new Set(['CSV_QUOTE_NOT_CLOSED', 'CSV_INVALID_CLOSING_QUOTE']);

/** How both readers (the whole file at once, and the stream) read CSV: the same options, so the same records. */
const CSV_OPTIONS: CsvOptions = {
  columns: (header: string[]) => header.map((h) => h.trim().toLowerCase()),
  bom: true,
  skip_empty_lines: true,
  trim: true,
  info: true,
  relax_column_count: true,
  skip_records_with_error: true,
};

type ParseError = ImportRowError & { code?: string };
const parseErrorOf = (err: unknown): ParseError => ({
  line: (err as { lines?: number }).lines ?? 0,
  reason: `unreadable row: ${(err as Error).message}`,
  code: (err as { code?: string }).code,
});
const unclosedQuote = (line: number): ImportRowError => ({ line, reason: 'unreadable row: a quote (") is opened and not closed on this line' });
/** A line whose quotes do not pair up: the line that opened a quote an error later showed was never closed. */
const oddQuotes = (line: string) => (line.split('"').length - 1) % 2 === 1;

/** Parses every record it can; a record the parser cannot read is reported in `errors` (with its error code) and skipped. */
function readRecords(csv: string | Buffer, errors: ParseError[]): CsvRecord[] {
  try {
    const onSkip = (err: unknown) => {
      if (err) errors.push(parseErrorOf(err));
      return undefined;
    };
    return parse(csv, { ...CSV_OPTIONS, on_skip: onSkip }) as unknown as CsvRecord[];
  } catch (err) {
    throw new AppError('CSV_INVALID', `the file is not readable CSV: ${(err as Error).message}`);
  }
}

/**
 * Reads the records, recovering the rows an unclosed quote swallowed. A quote left open on a line makes the parser read
 * on through the following lines into one field, until a quote error (the file ends, or a quote that cannot close a
 * field) — and those rows are lost. Quoted fields may span lines (a note with a line break), so only the lines such an
 * error consumed are looked at: each one whose quotes do not pair up is reported and blanked (keeping its line break,
 * so every other row keeps its line number), and the file is read again.
 */
function readRecordsRecovering(csv: string | Buffer, errors: ImportRowError[]): CsvRecord[] {
  const first: ParseError[] = [];
  const records = readRecords(csv, first);
  const quoteErrors = first.filter((e) => e.code !== undefined && QUOTE_ERRORS.has(e.code));
  if (!quoteErrors.length) {
    errors.push(...first.map(({ line, reason }) => ({ line, reason })));
    return records;
  }
  const ends = records.map((r) => r.info.lines);
  const lines = csv.toString().split('\n');
  const blanked = new Set<number>();
  for (const { line: errorLine } of quoteErrors) {
    // The swallowed span starts after the last record read before the error (line 2 at the earliest: 1 is the header).
    const spanStart = Math.max(2, ...ends.filter((end) => end < errorLine).map((end) => end + 1));
    for (let n = spanStart; n <= Math.min(errorLine, lines.length); n++) {
      if (blanked.has(n) || !oddQuotes(lines[n - 1]!)) continue;
      blanked.add(n);
      lines[n - 1] = '';
      errors.push(unclosedQuote(n));
    }
  }
  if (!blanked.size) {
    errors.push(...first.map(({ line, reason }) => ({ line, reason })));
    return records;
  }
  const second: ParseError[] = [];
  const recovered = readRecords(lines.join('\n'), second);
  errors.push(...second.map(({ line, reason }) => ({ line, reason })));
  return recovered;
}

/** The header checks both readers make on the first record: a `phone` column, and no column we do not know. */
function checkHeader(record: Record<string, string>): void {
  const header = Object.keys(record);
  if (!header.includes('phone')) throw new AppError('CSV_INVALID', 'the header row has no "phone" column');
  const unknown = header.filter((h) => !KNOWN_COLUMNS.has(h));
  if (unknown.length) throw new AppError('CSV_INVALID', `unknown column(s): ${unknown.join(', ')} (known: ${[...KNOWN_COLUMNS].join(', ')})`);
}

/**
 * Validates records one at a time, remembering the numbers and customer ids seen in the file (with their line) so a
 * repeated one is reported against the first. Numbers are kept as their E.164 digits (a number, not a string): a
 * million rows cost tens of megabytes, not hundreds.
 */
export class RowChecker {
  private readonly seenPhones = new Map<number, number>();
  private readonly seenCustomers = new Map<string, number>();

  constructor(
    private readonly shop: Pick<Shop, 'countryCode'>,
    private readonly now: Date = new Date(),
  ) {}

  /** The row to store, or the reason it is rejected. */
  check(r: Record<string, string>, line: number): ParsedRow | ImportRowError {
    const fail = (reason: string): ImportRowError => ({ line, reason });
    // PostgreSQL text cannot hold NUL: say which field has one rather than fail the row in the database.
    const withNul = Object.keys(r).find((k) => r[k]?.includes('\u0000'));
    if (withNul) return fail(`${withNul}: contains a NUL character`);
    const country = r.country ? r.country.toUpperCase() : null;
    if (country && !/^[A-Z]{2}$/.test(country)) return fail(`country: "${r.country}" is not a two-letter country code`);
    if (!r.phone) return fail('phone: missing');
    const phone = toE164(r.phone, country ?? this.shop.countryCode);
    if (!phone) return fail('phone: not a valid phone number' + (country ?? this.shop.countryCode ? '' : ' (give it in international format, or a country column)'));
    const phoneKey = Number(phone.slice(1));
    const earlier = this.seenPhones.get(phoneKey);
    if (earlier !== undefined) return fail(`phone: the same number as line ${earlier}`);
    if (r.email && !EMAIL.test(r.email)) return fail('email: not an email address');
    const consent = r.consent ? r.consent.toLowerCase() : '';
    if (consent && !CONSENT_VALUES.has(consent)) return fail(`consent: "${r.consent}" is not one of subscribed, unsubscribed, not_subscribed`);
    if (r.customer_id && !/^\d{1,20}$/.test(r.customer_id)) return fail('customer_id: must be a Shopify customer id (digits)');
    const sameCustomer = r.customer_id ? this.seenCustomers.get(r.customer_id) : undefined;
    if (sameCustomer !== undefined) return fail(`customer_id: the same as line ${sameCustomer}`);
    if (r.customer_id) this.seenCustomers.set(r.customer_id, line);
    this.seenPhones.set(phoneKey, line);
    const tags = r.tags ? r.tags.split(/[;,]/).map((t) => t.trim()).filter(Boolean) : null;
    return {
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
          ? {
              state: consent as 'subscribed' | 'unsubscribed' | 'not_subscribed',
              optInLevel: consent === 'subscribed' ? 'single_opt_in' : null,
              updatedAt: this.now,
              source: 'import:csv',
              origin: 'merchant',
            }
          : null,
      },
    };
  }
}

/** Parses and validates the file; no database access. Throws AppError CSV_INVALID when the file cannot be read at all. */
export function parseContactsCsv(csv: string | Buffer, shop: Pick<Shop, 'countryCode'>, now = new Date()): { rows: ParsedRow[]; errors: ImportRowError[] } {
  const errors: ImportRowError[] = [];
  const records = readRecordsRecovering(csv, errors);
  if (records.length === 0 && errors.length === 0) throw new AppError('CSV_INVALID', 'the file has no rows (a header row and at least one contact)');
  if (records.length) checkHeader(records[0]!.record);
  if (records.length > IMPORT_MAX_ROWS) throw new AppError('CSV_INVALID', `the file has ${records.length.toLocaleString('en-US')} rows; at most ${IMPORT_MAX_ROWS.toLocaleString('en-US')} per import (split it into several files)`);

  const rows: ParsedRow[] = [];
  const checker = new RowChecker(shop, now);
  for (const { record, info } of records) {
    const checked = checker.check(record, info.lines);
    if ('input' in checked) rows.push(checked);
    else errors.push(checked);
  }
  errors.sort((a, b) => a.line - b.line);
  return { rows, errors };
}

type RowOutcome = BatchUpsertResult | { failed: string };

async function storeOne(db: Db, shopId: number, input: ContactInput, meta: { requestId: string | null; now?: Date }): Promise<RowOutcome> {
  try {
    const r = await upsertContact(db, shopId, input, meta);
    return { created: r?.created ?? false, phoneConflict: r?.phoneConflict ?? false, consentRefused: r?.consentRefused ?? null };
  } catch (err) {
    // The database's message would show the statement and its values: report a stable reason instead.
    const code = sqlStateOf(err);
    return { failed: `not stored: the database refused the row${code ? ` (SQLSTATE ${code})` : ''}` };
  }
}

/** What storing a page found, row by row; each import keeps (and bounds) its own lists. */
interface PageSink {
  stored(created: boolean): void;
  rejected(e: ImportRowError): void;
  consentRefused(e: ImportRowError): void;
}

/**
 * Stores one page with a few set-based statements (`upsertContactsBatch`). A page the database refuses as a whole is
 * stored row by row, so a row that fails there is reported with its line and the others are kept.
 */
async function storePage(db: Db, shopId: number, page: readonly ParsedRow[], meta: { requestId: string | null; now?: Date }, sink: PageSink): Promise<void> {
  let results: RowOutcome[];
  try {
    results = await upsertContactsBatch(db, shopId, page.map((r) => r.input), meta);
  } catch {
    results = [];
    for (const row of page) results.push(await storeOne(db, shopId, row.input, meta));
  }
  results.forEach((result, i) => {
    const row = page[i]!;
    if ('failed' in result) return sink.rejected({ line: row.line, reason: result.failed });
    if (result.phoneConflict) sink.rejected({ line: row.line, reason: 'phone: another contact of this shop already has this number' });
    else sink.stored(result.created);
    if (!result.phoneConflict && result.consentRefused) {
      sink.consentRefused({
        line: row.line,
        reason:
          result.consentRefused === 'redacted'
            ? 'consent: the contact was redacted'
            : `consent: the contact opted out; "${row.input.consent!.state}" was not applied (only the person can opt back in)`,
      });
    }
  });
}

/** Parses, validates and stores a file held in memory (the HTTP route: at most {@link IMPORT_MAX_ROWS} rows), a page of rows at a time. */
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
  const consentRefused: ImportRowError[] = [];
  const sink: PageSink = {
    stored: (isNew) => (isNew ? created++ : updated++),
    rejected: (e) => errors.push(e),
    consentRefused: (e) => consentRefused.push(e),
  };
  const total = rows.length;
  const meta = { requestId: options.requestId ?? null, now: options.now };
  options.onProgress?.(0, total);
  for (let start = 0; start < total; start += IMPORT_PAGE_ROWS) {
    const page = rows.slice(start, start + IMPORT_PAGE_ROWS);
    await storePage(db, shop.id, page, meta, sink);
    options.onProgress?.(Math.min(start + page.length, total), total);
  }
  errors.sort((a, b) => a.line - b.line);
  return { rows: records, imported: created + updated, created, updated, errors, consentRefused };
}

export interface StreamImportOptions {
  requestId?: string;
  now?: Date;
  /** Called after each stored page: bytes of the file read so far, and rows (records) read so far. */
  onProgress?: (p: { bytes: number; rows: number }) => void;
  /** Called for every rejected row, in the order they are found (e.g. to write a rejects file). */
  onRejected?: (e: ImportRowError) => void;
  /** How many rejected rows (and rows whose consent was not applied) the result lists; all are counted. Default 100. */
  listLimit?: number;
}

export interface StreamImportResult {
  rows: number;
  imported: number;
  created: number;
  updated: number;
  /** Rows rejected, all counted. */
  rejected: number;
  /** The first `listLimit` rejected rows, by line. */
  errors: ImportRowError[];
  consentRefusedCount: number;
  consentRefused: ImportRowError[];
}

/** Line span `[from, to]` an unclosed quote swallowed. */
interface Span {
  from: number;
  to: number;
}

/**
 * Blanks, inside the given spans, each line whose quotes do not pair up (keeping its line break, so every line keeps
 * its number), reporting it; the second reading of a file whose quote was left open. Streams line by line.
 */
function blankUnclosedQuotes(spans: readonly Span[], onBlanked: (line: number) => void): Transform {
  let line = 1;
  let rest = '';
  const within = (n: number) => spans.some((s) => n >= s.from && n <= s.to);
  const emit = (text: string) => {
    if (within(line) && oddQuotes(text)) {
      onBlanked(line);
      return '';
    }
    return text;
  };
  const decoder = new StringDecoder('utf8');
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const parts = (rest + decoder.write(chunk)).split('\n');
      rest = parts.pop()!;
      let out = '';
      for (const part of parts) {
        out += `${emit(part)}\n`;
        line++;
      }
      done(null, out);
    },
    flush(done) {
      done(null, emit(rest + decoder.end()));
    },
  });
}

/**
 * Streams a CSV file of any size into the shop's contacts: reads it as a stream, validates each record exactly as
 * {@link parseContactsCsv} does ({@link RowChecker}, the same CSV options), and stores a page of
 * {@link IMPORT_PAGE_ROWS} rows at a time, the next page read only once the last is stored — memory stays bounded by a
 * page, plus the numbers seen (to report a repeated one). `open` is called again only for a file with a quote left
 * open: its second reading blanks the lines that opened one (as {@link parseContactsCsv} does) and stores the rows
 * they had swallowed. Used by `smsblossom contacts import`.
 */
export async function importContactsStream(db: Db, shop: Shop, open: () => Readable, options: StreamImportOptions = {}): Promise<StreamImportResult> {
  const listLimit = options.listLimit ?? 100;
  const checker = new RowChecker(shop, options.now);
  const meta = { requestId: options.requestId ?? null, now: options.now };
  const result: StreamImportResult = { rows: 0, imported: 0, created: 0, updated: 0, rejected: 0, errors: [], consentRefusedCount: 0, consentRefused: [] };
  const reject = (e: ImportRowError) => {
    result.rejected++;
    if (result.errors.length < listLimit) result.errors.push(e);
    options.onRejected?.(e);
  };
  const sink: PageSink = {
    stored: (isNew) => (isNew ? result.created++ : result.updated++),
    rejected: reject,
    consentRefused: (e) => {
      result.consentRefusedCount++;
      if (result.consentRefused.length < listLimit) result.consentRefused.push(e);
    },
  };
  let bytes = 0;
  let headerChecked = false;

  /** One reading of the file: records kept by `keep(endLine)` are validated and stored a page at a time. */
  async function read(source: Readable, keep: (line: number) => boolean, onParseError: (e: ParseError, lastEnd: number) => void): Promise<void> {
    let lastEnd = 1;
    const parser = source.pipe(
      parseStream({
        ...CSV_OPTIONS,
        on_record: (rec: unknown) => {
          lastEnd = (rec as CsvRecord).info.lines;
          return rec;
        },
        on_skip: (err: unknown) => {
          if (err) onParseError(parseErrorOf(err), lastEnd);
          return undefined;
        },
      } as CsvOptions),
    );
    source.on('error', (err) => parser.destroy(err));
    let page: ParsedRow[] = [];
    const flush = async () => {
      await storePage(db, shop.id, page, meta, sink);
      page = [];
      options.onProgress?.({ bytes, rows: result.rows });
    };
    try {
      for await (const { record, info } of parser as AsyncIterable<CsvRecord>) {
        if (!headerChecked) {
          checkHeader(record);
          headerChecked = true;
        }
        if (!keep(info.lines)) continue;
        result.rows++;
        const checked = checker.check(record, info.lines);
        if ('input' in checked) page.push(checked);
        else reject(checked);
        if (page.length >= IMPORT_PAGE_ROWS) await flush();
      }
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw new AppError('CSV_INVALID', `the file is not readable CSV: ${(err as Error).message}`);
    }
    await flush();
  }

  // First reading: in file order, up to the first quote left open (if any). From there on it only notes the spans
  // quotes swallowed: the second reading takes over at the first span, so rows are still checked in file order (a
  // repeated number is reported against its first line, as by parseContactsCsv).
  const spans: Span[] = [];
  const beforeSpans = (line: number) => !spans.length || line < spans[0]!.from;
  const first = open();
  first.on('data', (chunk: Buffer | string) => (bytes += Buffer.byteLength(chunk)));
  await read(first, beforeSpans, (e, lastEnd) => {
    if (e.code !== undefined && QUOTE_ERRORS.has(e.code)) spans.push({ from: Math.max(2, lastEnd + 1), to: e.line });
    else if (beforeSpans(e.line)) {
      result.rows++;
      reject({ line: e.line, reason: e.reason });
    }
  });
  if (spans.length) {
    // Read again with the lines that opened a quote blanked, from the first span on.
    const from = spans[0]!.from;
    const blanked: number[] = [];
    const again = open();
    const blanking = again.pipe(blankUnclosedQuotes(spans, (n) => blanked.push(n)));
    again.on('error', (err) => blanking.destroy(err));
    await read(blanking, (line) => line >= from, (e) => {
      if (e.line >= from) {
        result.rows++;
        reject({ line: e.line, reason: e.reason });
      }
    });
    for (const n of blanked) {
      result.rows++;
      reject(unclosedQuote(n));
    }
  }
  options.onProgress?.({ bytes, rows: result.rows });
  if (!headerChecked && result.rejected === 0) throw new AppError('CSV_INVALID', 'the file has no rows (a header row and at least one contact)');
  result.imported = result.created + result.updated;
  result.errors.sort((a, b) => a.line - b.line);
  result.consentRefused.sort((a, b) => a.line - b.line);
  return result;
}
