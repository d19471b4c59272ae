/**
 * A small JSON condition language over an automation's context. Pure.
 *
 * ```json
 * { "all": [
 *   { "path": "order.totalPrice", "op": "gte", "value": 50 },
 *   { "not": { "path": "customer.tags", "op": "contains", "value": "wholesale" } },
 *   { "any": [ { "path": "order.currency", "op": "in", "value": ["EUR", "USD"] },
 *              { "path": "customer.countryCode", "op": "eq", "value": "DE" } ] } ] }
 * ```
 *
 * Semantics:
 * - paths are dotted (`order.lineItems.0.title`); a missing step resolves to `undefined`. Only own properties are
 *   read; `length` works on arrays and strings.
 * - eq / ne: strict equality, except that a number and a numeric string compare as numbers ("50.00" eq 50), and
 *   `null` equals a missing value.
 * - gt / gte / lt / lte: numeric only; numeric strings are coerced (Shopify prices are strings); anything that is not
 *   a number is false.
 * - contains: a string contains the value as a substring; an array includes an element equal to the value (eq rules).
 * - in: the value is a list; true when the actual value equals one of its items — for an array actual (tags), when
 *   any element does.
 * - exists: `true` when the value is neither missing nor null; `false` for the reverse.
 * - `{all: []}` is true (no conditions). `any` needs at least one branch. Nesting is limited to {@link MAX_DEPTH}.
 */
import { z } from 'zod';
import { AppError } from '../errors.js';

export const MAX_DEPTH = 10;

export const CONDITION_OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'contains', 'in', 'exists'] as const;
export type ConditionOp = (typeof CONDITION_OPS)[number];

export type Scalar = string | number | boolean | null;

export type LeafCondition =
  | { path: string; op: 'eq' | 'ne'; value: Scalar }
  | { path: string; op: 'gt' | 'gte' | 'lt' | 'lte'; value: number | string }
  | { path: string; op: 'contains'; value: string | number | boolean }
  | { path: string; op: 'in'; value: Scalar[] }
  | { path: string; op: 'exists'; value: boolean };

export type Condition = { all: Condition[] } | { any: Condition[] } | { not: Condition } | LeafCondition;

const FORBIDDEN_SEGMENTS = new Set(['__proto__', 'prototype', 'constructor']);
const SEGMENT = /^[A-Za-z_][A-Za-z0-9_]*$|^\d+$/;
const NUMERIC = /^\s*-?(\d+(\.\d*)?|\.\d+)\s*$/;

const pathSchema = z
  .string()
  .min(1, 'path is empty')
  .max(200)
  .refine(
    (p) => p.split('.').every((s) => SEGMENT.test(s) && !FORBIDDEN_SEGMENTS.has(s)),
    'path must be dot-separated identifiers or indexes, e.g. order.totalPrice',
  );

const scalar = z.union([z.string().max(1000), z.number().finite(), z.boolean(), z.null()]);
const numericValue = z.union([
  z.number().finite(),
  z.string().regex(NUMERIC, 'expected a number or a numeric string'),
]);

const leafSchema = z.discriminatedUnion('op', [
  z.strictObject({ path: pathSchema, op: z.enum(['eq', 'ne']), value: scalar }),
  z.strictObject({ path: pathSchema, op: z.enum(['gt', 'gte', 'lt', 'lte']), value: numericValue }),
  z.strictObject({ path: pathSchema, op: z.literal('contains'), value: z.union([z.string().max(1000), z.number().finite(), z.boolean()]) }),
  z.strictObject({ path: pathSchema, op: z.literal('in'), value: z.array(scalar).min(1).max(500) }),
  z.strictObject({ path: pathSchema, op: z.literal('exists'), value: z.boolean() }),
]);

// Groups are checked one level at a time (children as unknown) so an error names the node that is actually wrong
// rather than a whole-union failure at the root.
const allShape = z.strictObject({ all: z.array(z.unknown()).max(100) });
const anyShape = z.strictObject({ any: z.array(z.unknown()).min(1, 'any needs at least one condition').max(100) });
const notShape = z.strictObject({ not: z.unknown() });

interface Issue {
  path: PropertyKey[];
  message: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function validateNode(node: unknown, path: PropertyKey[], depth: number, issues: Issue[]): void {
  if (depth > MAX_DEPTH) {
    issues.push({ path, message: `conditions nest deeper than ${MAX_DEPTH} levels` });
    return;
  }
  if (!isObject(node)) {
    issues.push({ path, message: `expected a condition object, got ${node === null ? 'null' : Array.isArray(node) ? 'array' : typeof node}` });
    return;
  }
  const shape = 'all' in node ? allShape : 'any' in node ? anyShape : 'not' in node ? notShape : 'path' in node || 'op' in node ? leafSchema : null;
  if (shape === null) {
    issues.push({ path, message: 'expected one of all, any, not, or a {path, op, value} leaf' });
    return;
  }
  const r = shape.safeParse(node);
  if (!r.success) {
    for (const i of r.error.issues) issues.push({ path: [...path, ...i.path], message: i.message });
    return;
  }
  if ('all' in node || 'any' in node) {
    const key = 'all' in node ? 'all' : 'any';
    (node[key] as unknown[]).forEach((child, i) => validateNode(child, [...path, key, i], depth + 1, issues));
  } else if ('not' in node) {
    validateNode(node.not, [...path, 'not'], depth + 1, issues);
  }
}

function pathString(path: PropertyKey[]): string {
  return path.length === 0 ? '(root)' : path.map(String).join('.');
}

/**
 * Zod schema for a stored condition, usable inside API body schemas. Issues carry the path of the bad node,
 * e.g. `all.1.not.op`.
 */
export const conditionSchema: z.ZodType<Condition, unknown> = z
  .unknown()
  .superRefine((value, ctx) => {
    const issues: Issue[] = [];
    validateNode(value, [], 1, issues);
    for (const i of issues) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
  })
  .transform((v) => v as Condition);

/** Validates a condition when it is saved; throws AppError CONDITION_INVALID naming the bad node's path. */
export function parseCondition(json: unknown): Condition {
  const issues: Issue[] = [];
  validateNode(json, [], 1, issues);
  const first = issues[0];
  if (first) {
    const where = pathString(first.path);
    throw new AppError('CONDITION_INVALID', `condition ${where}: ${first.message}`, {
      details: { path: where, issues: issues.map((i) => ({ path: pathString(i.path), message: i.message })) },
    });
  }
  return json as Condition;
}

// ---- evaluation ----

/** Reads a dotted path through own properties only; missing steps give undefined. */
export function resolvePath(context: unknown, path: string): unknown {
  let cur: unknown = context;
  for (const seg of path.split('.')) {
    if (cur === null || cur === undefined) return undefined;
    if (seg === 'length' && (typeof cur === 'string' || Array.isArray(cur))) {
      cur = cur.length;
      continue;
    }
    if (typeof cur !== 'object' || FORBIDDEN_SEGMENTS.has(seg)) return undefined;
    cur = Object.prototype.hasOwnProperty.call(cur, seg) ? (cur as Record<string, unknown>)[seg] : undefined;
  }
  return cur;
}

function toNumber(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && NUMERIC.test(v)) return Number(v);
  return null;
}

function equals(actual: unknown, expected: unknown): boolean {
  if (expected === null) return actual === null || actual === undefined;
  if (actual === expected) return true;
  if (typeof actual === 'number' || typeof expected === 'number') {
    const a = toNumber(actual);
    const b = toNumber(expected);
    return a !== null && b !== null && a === b;
  }
  return false;
}

function compare(actual: unknown, expected: unknown, op: 'gt' | 'gte' | 'lt' | 'lte'): boolean {
  const a = toNumber(actual);
  const b = toNumber(expected);
  if (a === null || b === null) return false;
  switch (op) {
    case 'gt':
      return a > b;
    case 'gte':
      return a >= b;
    case 'lt':
      return a < b;
    case 'lte':
      return a <= b;
  }
}

function evaluateLeaf(leaf: LeafCondition, context: unknown): boolean {
  const actual = resolvePath(context, leaf.path);
  switch (leaf.op) {
    case 'eq':
      return equals(actual, leaf.value);
    case 'ne':
      return !equals(actual, leaf.value);
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte':
      return compare(actual, leaf.value, leaf.op);
    case 'contains':
      if (typeof actual === 'string') return actual.includes(String(leaf.value));
      if (Array.isArray(actual)) return actual.some((el) => equals(el, leaf.value));
      return false;
    case 'in': {
      const list = leaf.value;
      if (Array.isArray(actual)) return actual.some((el) => list.some((v) => equals(el, v)));
      return list.some((v) => equals(actual, v));
    }
    case 'exists':
      return (actual !== undefined && actual !== null) === leaf.value;
    default: {
      // Only reachable with unvalidated data (a row written before validation existed, a hand-edited JSON column).
      const op: never = leaf;
      throw new AppError('CONDITION_INVALID', `unknown condition op ${JSON.stringify((op as { op?: unknown }).op)}`);
    }
  }
}

function evaluateNode(cond: Condition, context: unknown, depth: number): boolean {
  if (depth > MAX_DEPTH) {
    throw new AppError('CONDITION_INVALID', `conditions nest deeper than ${MAX_DEPTH} levels`);
  }
  if ('all' in cond) return cond.all.every((c) => evaluateNode(c, context, depth + 1));
  if ('any' in cond) return cond.any.some((c) => evaluateNode(c, context, depth + 1));
  if ('not' in cond) return !evaluateNode(cond.not, context, depth + 1);
  return evaluateLeaf(cond, context);
}

/**
 * Evaluates a condition (already validated by {@link parseCondition}) against a context. Throws AppError
 * CONDITION_INVALID only when nesting exceeds {@link MAX_DEPTH}.
 */
export function evaluateCondition(cond: Condition, context: unknown): boolean {
  return evaluateNode(cond, context, 1);
}
