/**
 * Bounds on JSON that arrives from outside, checked on the text before it is parsed. `JSON.parse` itself copes with
 * any depth, but everything after it recurses — `JSON.stringify` on the way to PostgreSQL or Redis, zod, the jsonb
 * parser — and a body nested 200 000 arrays deep overflows their stacks. Shopify payloads nest about 6 levels,
 * merchant API bodies fewer than 20.
 */

/** Deepest JSON nesting taken from outside (objects and arrays both count). */
export const MAX_JSON_DEPTH = 64;

const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * True when the text nests deeper than `max`. One pass over the text,
 * skipping string contents; it does not validate (that is `JSON.parse`'s job).
 */
export function jsonDepthExceeds(text: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > max) return true;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
    }
  }
  return false;
}

/**
 * The path of the first string (key or value) holding U+0000, e.g. `filter.and.0.tags.any.1`, or undefined.
 * PostgreSQL text and jsonb cannot store it, so such input is refused up front, naming the field, rather than failing
 * as a query. Iterative, and bounded by `maxNodes` (bodies are already bounded in size and depth).
 */
export function findNulCharacter(value: unknown, root: string, maxNodes = 100_000): string | undefined {
  const stack: Array<[unknown, string]> = [[value, root]];
  for (let seen = 0; stack.length && seen < maxNodes; seen++) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return path;
    } else if (v !== null && typeof v === 'object') {
      for (const [k, child] of Object.entries(v)) {
        const childPath = `${path}.${k.replace(/\u0000/g, '\\0')}`;
        if (k.includes('\u0000')) return childPath;
        stack.push([child, childPath]);
      }
    }
  }
  return undefined;
}
