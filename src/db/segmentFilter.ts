/**
 * A segment filter (validated by `parseSegmentFilter` in campaigns/segments.ts) compiled to a SQL condition on the
 * `contacts` table. Pure: the clock is an input, and the output is a Drizzle `SQL` fragment (parameterised, never
 * string-concatenated values), so the same filter runs on PostgreSQL and PGlite.
 */
import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { AppError } from '../errors.js';
import { contacts, type ConsentState } from './schema.js';

/** A numeric comparison; several operators are ANDed. */
export interface Comparison {
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
  eq?: number;
}

export type SegmentFilter =
  | { and: SegmentFilter[] }
  | { or: SegmentFilter[] }
  | { not: SegmentFilter }
  | { consent: ConsentState | ConsentState[] }
  | { tags: { any: string[] } | { all: string[] } }
  | { country: string | string[] }
  | { createdWithin: { days: number } }
  | { lastOrderWithin: { days: number } }
  | { ordersCount: Comparison }
  | { totalSpent: Comparison }
  | { hasPhone: boolean };

export interface CompileOptions {
  /** What "within N days" counts back from. */
  now: Date;
}

const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);
const textArray = (values: string[]): SQL => sql`ARRAY[${sql.join(values.map((v) => sql`${v}`), sql`, `)}]::text[]`;
const OPS = { gt: '>', gte: '>=', lt: '<', lte: '<=', eq: '=' } as const;

function compare(column: SQL | typeof contacts.ordersCount, c: Comparison, cast: 'int' | 'numeric'): SQL {
  const parts = (Object.keys(OPS) as Array<keyof typeof OPS>)
    .filter((k) => c[k] !== undefined)
    .map((k) => sql`${column} ${sql.raw(OPS[k])} ${c[k]}::${sql.raw(cast)}`);
  return parts.length === 1 ? parts[0]! : sql`(${sql.join(parts, sql` AND `)})`;
}

const since = (now: Date, d: number): string => new Date(now.getTime() - d * 86_400_000).toISOString();

/**
 * The filter as a boolean SQL expression over `contacts` (columns are written `"contacts"."col"`, so the query must
 * select from `contacts` without an alias). The shop condition is not included: callers add `shop_id = …`.
 */
export function compileSegment(filter: SegmentFilter, options: CompileOptions): SQL {
  const c = (f: SegmentFilter): SQL => {
    if ('and' in f) return f.and.length ? sql`(${sql.join(f.and.map(c), sql` AND `)})` : sql`TRUE`;
    if ('or' in f) return f.or.length ? sql`(${sql.join(f.or.map(c), sql` OR `)})` : sql`FALSE`;
    if ('not' in f) return sql`NOT coalesce(${c(f.not)}, FALSE)`;
    if ('consent' in f) {
      const states = list(f.consent);
      return states.length === 1 ? sql`${contacts.smsConsent} = ${states[0]}` : sql`${contacts.smsConsent} = ANY(${textArray(states)})`;
    }
    if ('tags' in f) {
      // `&&` (overlap) and `@>` (contains) are what the GIN index on tags serves.
      return 'any' in f.tags ? sql`${contacts.tags} && ${textArray(f.tags.any)}` : sql`${contacts.tags} @> ${textArray(f.tags.all)}`;
    }
    if ('country' in f) {
      const codes = list(f.country).map((s) => s.toUpperCase());
      return codes.length === 1 ? sql`upper(${contacts.countryCode}) = ${codes[0]}` : sql`upper(${contacts.countryCode}) = ANY(${textArray(codes)})`;
    }
    if ('createdWithin' in f) return sql`${contacts.createdAt} >= ${since(options.now, f.createdWithin.days)}::timestamptz`;
    if ('lastOrderWithin' in f) return sql`${contacts.lastOrderAt} >= ${since(options.now, f.lastOrderWithin.days)}::timestamptz`;
    if ('ordersCount' in f) return compare(contacts.ordersCount, f.ordersCount, 'int');
    if ('totalSpent' in f) return compare(sql`${contacts.totalSpent}`, f.totalSpent, 'numeric');
    if ('hasPhone' in f) return f.hasPhone ? sql`${contacts.phone} IS NOT NULL` : sql`${contacts.phone} IS NULL`;
    throw new AppError('SEGMENT_INVALID', 'segment filter: unknown condition');
  };
  return c(filter);
}

/** Contacts a marketing message may go to (the SQL twin of `checkConsent(contact, 'marketing')`). */
export const MARKETING_CONSENT_SQL: SQL = sql`(${contacts.smsConsent} = 'subscribed' AND ${contacts.optedOutAt} IS NULL AND ${contacts.phone} IS NOT NULL)`;

const dialect = new PgDialect();

/** SQL text (with `$1`, `$2`, … parameter markers) and parameters of a fragment, to run through a raw querier. */
export function toQuery(fragment: SQL): { sql: string; params: unknown[] } {
  const q = dialect.sqlToQuery(fragment);
  return { sql: q.sql, params: q.params };
}
