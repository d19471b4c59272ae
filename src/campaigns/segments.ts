/**
 * Segments: a small JSON language over a shop's contacts, validated with zod and compiled to a SQL condition on the
 * `contacts` table. Pure: the clock is an input, and the output is a Drizzle `SQL` fragment (parameterised, never
 * string-concatenated values), so the same filter runs on PostgreSQL and PGlite.
 *
 * ```jsonc
 * {"and": [ … ]}  {"or": [ … ]}  {"not": { … }}
 * {"consent": "subscribed"}                 // or a list: {"consent": ["subscribed", "pending"]}
 * {"tags": {"any": ["vip", "sale"]}}        // at least one of;  {"tags": {"all": [...]}} every one of
 * {"country": "CH"}                         // or a list of ISO codes
 * {"createdWithin": {"days": 30}}           // contact created in the last N days
 * {"lastOrderWithin": {"days": 90}}         // last order in the last N days
 * {"ordersCount": {"gte": 2, "lt": 10}}     // gt gte lt lte eq; several are ANDed
 * {"totalSpent": {"gte": 100}}
 * {"hasPhone": true}
 * ```
 * An empty `{"and": []}` matches every contact; an empty `{"or": []}` matches none.
 */
import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { z } from 'zod';
import { contacts } from '../db/schema.js';
import { AppError, describeIssues } from '../errors.js';

/** Deepest nesting of and/or/not accepted (a filter is user input). */
export const MAX_DEPTH = 8;
/** Most leaves in one filter. */
export const MAX_NODES = 100;

const CONSENT_STATES = ['not_subscribed', 'pending', 'subscribed', 'unsubscribed', 'redacted'] as const;
const days = z.object({ days: z.number().int().min(1).max(36_500) }).strict();
const comparison = z
  .object({ gt: z.number(), gte: z.number(), lt: z.number(), lte: z.number(), eq: z.number() })
  .partial()
  .strict()
  .refine((c) => Object.keys(c).length > 0, 'needs at least one of gt, gte, lt, lte, eq');
const tagList = z.array(z.string().trim().min(1).max(255)).min(1).max(100);
const oneOrMany = <T extends z.ZodTypeAny>(s: T) => z.union([s, z.array(s).min(1).max(300)]);

export type Comparison = z.infer<typeof comparison>;

export type SegmentFilter =
  | { and: SegmentFilter[] }
  | { or: SegmentFilter[] }
  | { not: SegmentFilter }
  | { consent: (typeof CONSENT_STATES)[number] | Array<(typeof CONSENT_STATES)[number]> }
  | { tags: { any: string[] } | { all: string[] } }
  | { country: string | string[] }
  | { createdWithin: { days: number } }
  | { lastOrderWithin: { days: number } }
  | { ordersCount: Comparison }
  | { totalSpent: Comparison }
  | { hasPhone: boolean };

export const segmentFilterSchema: z.ZodType<SegmentFilter> = z.lazy(() =>
  z.union([
    z.object({ and: z.array(segmentFilterSchema).max(MAX_NODES) }).strict(),
    z.object({ or: z.array(segmentFilterSchema).max(MAX_NODES) }).strict(),
    z.object({ not: segmentFilterSchema }).strict(),
    z.object({ consent: oneOrMany(z.enum(CONSENT_STATES)) }).strict(),
    z.object({ tags: z.union([z.object({ any: tagList }).strict(), z.object({ all: tagList }).strict()]) }).strict(),
    z.object({ country: oneOrMany(z.string().regex(/^[A-Za-z]{2}$/, 'must be an ISO 3166-1 alpha-2 code')) }).strict(),
    z.object({ createdWithin: days }).strict(),
    z.object({ lastOrderWithin: days }).strict(),
    z.object({ ordersCount: comparison }).strict(),
    z.object({ totalSpent: comparison }).strict(),
    z.object({ hasPhone: z.boolean() }).strict(),
  ]),
) as z.ZodType<SegmentFilter>;

/** Validates a filter; throws AppError SEGMENT_INVALID naming the problem. */
export function parseSegmentFilter(input: unknown): SegmentFilter {
  const parsed = segmentFilterSchema.safeParse(input);
  if (!parsed.success) throw new AppError('SEGMENT_INVALID', `segment filter: ${describeIssues(parsed.error.issues)}`);
  let nodes = 0;
  const walk = (f: SegmentFilter, depth: number): void => {
    if (depth > MAX_DEPTH) throw new AppError('SEGMENT_INVALID', `segment filter: nested deeper than ${MAX_DEPTH}`);
    if (++nodes > MAX_NODES) throw new AppError('SEGMENT_INVALID', `segment filter: more than ${MAX_NODES} conditions`);
    if ('and' in f) f.and.forEach((c) => walk(c, depth + 1));
    else if ('or' in f) f.or.forEach((c) => walk(c, depth + 1));
    else if ('not' in f) walk(f.not, depth + 1);
  };
  walk(parsed.data, 0);
  return parsed.data;
}

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
