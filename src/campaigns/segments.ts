/**
 * Segments: a small JSON language over a shop's contacts, validated here with zod; db/segmentFilter.ts compiles it to
 * a SQL condition on the `contacts` table.
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
import { z } from 'zod';
import type { ConsentState } from '../db/schema.js';
import type { SegmentFilter } from '../db/segmentFilter.js';
import { AppError, describeIssues } from '../errors.js';

export type { Comparison, SegmentFilter } from '../db/segmentFilter.js';

/** Deepest nesting of and/or/not accepted (a filter is user input). */
export const MAX_DEPTH = 8;
/** Most leaves in one filter. */
export const MAX_NODES = 100;

const CONSENT_STATES = ['not_subscribed', 'pending', 'subscribed', 'unsubscribed', 'redacted'] as const satisfies readonly ConsentState[];
const days = z.object({ days: z.number().int().min(1).max(36_500) }).strict();
/**
 * Comparisons are bounded by what their SQL cast holds: `ordersCount` is compared as `int`, and a value past it
 * (`1e20`) would fail the query as a 500 instead of being refused here.
 */
const comparisonWithin = (min: number, max: number) => {
  const n = z.number().min(min).max(max);
  return z
    .object({ gt: n, gte: n, lt: n, lte: n, eq: n })
    .partial()
    .strict()
    .refine((c) => Object.keys(c).length > 0, 'needs at least one of gt, gte, lt, lte, eq');
};
const INT_MAX = 2_147_483_647;
const countComparison = comparisonWithin(-INT_MAX - 1, INT_MAX);
/** Money amounts: far beyond any shop's total, well within `numeric`. */
const amountComparison = comparisonWithin(-1e12, 1e12);
const tagList = z.array(z.string().trim().min(1).max(255)).min(1).max(100);
const oneOrMany = <T extends z.ZodTypeAny>(s: T) => z.union([s, z.array(s).min(1).max(300)]);

/** The one key each filter node has; a union of strict objects alone would answer an unknown key with "Invalid input". */
export const FILTER_KEYS = ['and', 'or', 'not', 'consent', 'tags', 'country', 'createdWithin', 'lastOrderWithin', 'ordersCount', 'totalSpent', 'hasPhone'] as const;
const FILTER_KEY_SET: ReadonlySet<string> = new Set(FILTER_KEYS);

/** A node is an object with exactly one known key; the issue names the key that is not. */
const filterNode = z.record(z.string(), z.unknown()).superRefine((node, ctx) => {
  const keys = Object.keys(node);
  const unknown = keys.filter((k) => !FILTER_KEY_SET.has(k));
  for (const key of unknown) ctx.addIssue({ code: 'custom', path: [key], message: `unknown condition "${key}" (known: ${FILTER_KEYS.join(', ')})` });
  if (!unknown.length && keys.length !== 1) ctx.addIssue({ code: 'custom', message: `a condition has exactly one key, one of ${FILTER_KEYS.join(', ')} (got ${keys.length ? keys.join(', ') : 'none'})` });
});

/** The schema of each kind of node, by its key: a node is checked against its own kind, so an issue names its field. */
const nodeSchemas = (): Record<(typeof FILTER_KEYS)[number], z.ZodTypeAny> => ({
  and: z.object({ and: z.array(segmentFilterSchema).max(MAX_NODES) }).strict(),
  or: z.object({ or: z.array(segmentFilterSchema).max(MAX_NODES) }).strict(),
  not: z.object({ not: segmentFilterSchema }).strict(),
  consent: z.object({ consent: oneOrMany(z.enum(CONSENT_STATES)) }).strict(),
  tags: z.object({ tags: z.union([z.object({ any: tagList }).strict(), z.object({ all: tagList }).strict()]) }).strict(),
  country: z.object({ country: oneOrMany(z.string().regex(/^[A-Za-z]{2}$/, 'must be an ISO 3166-1 alpha-2 code')) }).strict(),
  createdWithin: z.object({ createdWithin: days }).strict(),
  lastOrderWithin: z.object({ lastOrderWithin: days }).strict(),
  ordersCount: z.object({ ordersCount: countComparison }).strict(),
  totalSpent: z.object({ totalSpent: amountComparison }).strict(),
  hasPhone: z.object({ hasPhone: z.boolean() }).strict(),
});
let nodeSchemaCache: ReturnType<typeof nodeSchemas> | undefined;

export const segmentFilterSchema: z.ZodType<SegmentFilter> = z.lazy(() =>
  filterNode.transform((node, ctx) => {
    nodeSchemaCache ??= nodeSchemas();
    const key = Object.keys(node)[0] as (typeof FILTER_KEYS)[number];
    const parsed = nodeSchemaCache[key].safeParse(node);
    if (parsed.success) return parsed.data as SegmentFilter;
    for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    return z.NEVER;
  }),
) as unknown as z.ZodType<SegmentFilter>;

/**
 * Deepest JSON nesting a valid filter can have: each and/or level is an object and an array, and the deepest leaf
 * (`{"tags": {"any": [...]}}`) three more.
 */
const MAX_JSON_NESTING = 2 * MAX_DEPTH + 4;

/** True when `value` nests deeper than `max` objects/arrays. Iterative: a filter nested 5,000 deep is a 400, not a stack overflow. */
function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  for (let seen = 0; stack.length && seen < 100_000; seen++) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) return true;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return stack.length > 0;
}

/** Validates a filter; throws AppError SEGMENT_INVALID naming the problem. */
export function parseSegmentFilter(input: unknown): SegmentFilter {
  // Before zod: its recursive schema would overflow the stack on deep input.
  if (nestsDeeperThan(input, MAX_JSON_NESTING)) throw new AppError('SEGMENT_INVALID', `segment filter: nested deeper than ${MAX_DEPTH}`);
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
