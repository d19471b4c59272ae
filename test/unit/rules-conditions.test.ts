import { describe, it, expect } from 'vitest';
import {
  conditionSchema,
  evaluateCondition,
  MAX_DEPTH,
  parseCondition,
  resolvePath,
  type Condition,
} from '../../src/rules/conditions.js';
import { AppError, isAppError } from '../../src/errors.js';

const ctx = {
  kind: 'order',
  order: {
    id: '1001',
    totalPrice: '49.90',
    subtotalPrice: '45.00',
    currency: 'EUR',
    number: 1001,
    financialStatus: 'paid',
    cancelledAt: null,
    lineItems: [
      { title: 'Rose bouquet', quantity: 2, price: '19.95', sku: 'ROSE-1' },
      { title: 'Vase', quantity: 1, price: '10.00', sku: null },
    ],
  },
  customer: { firstName: 'Ada', tags: ['vip', 'newsletter'], countryCode: 'DE', smsConsent: { state: 'subscribed' } },
};

const ev = (c: Condition): boolean => evaluateCondition(parseCondition(c), ctx);

function errorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('expected an AppError');
}

describe('evaluateCondition: leaves', () => {
  it('eq / ne with numeric coercion of Shopify price strings', () => {
    expect(ev({ path: 'order.currency', op: 'eq', value: 'EUR' })).toBe(true);
    expect(ev({ path: 'order.currency', op: 'eq', value: 'eur' })).toBe(false);
    expect(ev({ path: 'order.totalPrice', op: 'eq', value: 49.9 })).toBe(true);
    expect(ev({ path: 'order.totalPrice', op: 'eq', value: '49.90' })).toBe(true);
    expect(ev({ path: 'order.totalPrice', op: 'eq', value: '49.9' })).toBe(false); // two strings compare as strings
    expect(ev({ path: 'order.number', op: 'eq', value: '1001' })).toBe(true);
    expect(ev({ path: 'order.currency', op: 'ne', value: 'USD' })).toBe(true);
    expect(ev({ path: 'order.currency', op: 'ne', value: 'EUR' })).toBe(false);
  });

  it('eq null matches null and missing', () => {
    expect(ev({ path: 'order.cancelledAt', op: 'eq', value: null })).toBe(true);
    expect(ev({ path: 'order.nothing', op: 'eq', value: null })).toBe(true);
    expect(ev({ path: 'order.currency', op: 'eq', value: null })).toBe(false);
    expect(ev({ path: 'order.cancelledAt', op: 'ne', value: null })).toBe(false);
  });

  it('gt / gte / lt / lte compare numerically', () => {
    expect(ev({ path: 'order.totalPrice', op: 'gt', value: 50 })).toBe(false);
    expect(ev({ path: 'order.totalPrice', op: 'gt', value: 49 })).toBe(true);
    expect(ev({ path: 'order.totalPrice', op: 'gte', value: '49.90' })).toBe(true);
    expect(ev({ path: 'order.totalPrice', op: 'lt', value: 100 })).toBe(true);
    expect(ev({ path: 'order.totalPrice', op: 'lte', value: 49.89 })).toBe(false);
    // "100" vs "9": numeric, not lexicographic
    expect(evaluateCondition({ path: 'p', op: 'gt', value: '9' }, { p: '100' })).toBe(true);
  });

  it('numeric ops are false on non-numbers and missing values', () => {
    expect(ev({ path: 'order.currency', op: 'gt', value: 1 })).toBe(false);
    expect(ev({ path: 'order.nothing', op: 'lt', value: 1 })).toBe(false);
    expect(ev({ path: 'order.cancelledAt', op: 'lte', value: 0 })).toBe(false);
    expect(evaluateCondition({ path: 'p', op: 'gt', value: 0 }, { p: '' })).toBe(false);
    expect(evaluateCondition({ path: 'p', op: 'gt', value: 0 }, { p: '0x10' })).toBe(false);
    expect(evaluateCondition({ path: 'p', op: 'gt', value: 0 }, { p: true })).toBe(false);
  });

  it('contains: substring or array element', () => {
    expect(ev({ path: 'customer.tags', op: 'contains', value: 'vip' })).toBe(true);
    expect(ev({ path: 'customer.tags', op: 'contains', value: 'wholesale' })).toBe(false);
    expect(ev({ path: 'order.lineItems.0.title', op: 'contains', value: 'bouquet' })).toBe(true);
    expect(ev({ path: 'order.currency', op: 'contains', value: 'X' })).toBe(false);
    expect(ev({ path: 'order.number', op: 'contains', value: 1 })).toBe(false);
    expect(evaluateCondition({ path: 'a', op: 'contains', value: 2 }, { a: ['1', '2'] })).toBe(true);
  });

  it('in: value list, and any overlap for an array', () => {
    expect(ev({ path: 'order.currency', op: 'in', value: ['USD', 'EUR'] })).toBe(true);
    expect(ev({ path: 'order.currency', op: 'in', value: ['USD'] })).toBe(false);
    expect(ev({ path: 'customer.tags', op: 'in', value: ['wholesale', 'vip'] })).toBe(true);
    expect(ev({ path: 'customer.tags', op: 'in', value: ['wholesale'] })).toBe(false);
    expect(ev({ path: 'order.number', op: 'in', value: ['1001', 1002] })).toBe(true);
    expect(ev({ path: 'order.nothing', op: 'in', value: [null] })).toBe(true);
  });

  it('exists', () => {
    expect(ev({ path: 'customer.firstName', op: 'exists', value: true })).toBe(true);
    expect(ev({ path: 'order.cancelledAt', op: 'exists', value: true })).toBe(false);
    expect(ev({ path: 'order.cancelledAt', op: 'exists', value: false })).toBe(true);
    expect(ev({ path: 'order.missing.deeper', op: 'exists', value: false })).toBe(true);
    expect(ev({ path: 'order.lineItems.1.sku', op: 'exists', value: false })).toBe(true);
  });

  it('array indexes and length', () => {
    expect(ev({ path: 'order.lineItems.length', op: 'gte', value: 2 })).toBe(true);
    expect(ev({ path: 'order.lineItems.0.quantity', op: 'eq', value: 2 })).toBe(true);
    expect(ev({ path: 'order.lineItems.5.quantity', op: 'exists', value: true })).toBe(false);
    expect(ev({ path: 'customer.firstName.length', op: 'eq', value: 3 })).toBe(true);
  });
});

describe('evaluateCondition: groups', () => {
  const vip: Condition = { path: 'customer.tags', op: 'contains', value: 'vip' };
  const big: Condition = { path: 'order.totalPrice', op: 'gte', value: 100 };

  it('all / any / not', () => {
    expect(ev({ all: [vip, { path: 'order.currency', op: 'eq', value: 'EUR' }] })).toBe(true);
    expect(ev({ all: [vip, big] })).toBe(false);
    expect(ev({ any: [vip, big] })).toBe(true);
    expect(ev({ any: [big, { not: vip }] })).toBe(false);
    expect(ev({ not: big })).toBe(true);
    expect(ev({ not: { not: vip } })).toBe(true);
  });

  it('empty all is true', () => {
    expect(ev({ all: [] })).toBe(true);
  });

  it('nested example from the docs', () => {
    const c = parseCondition({
      all: [
        { path: 'order.totalPrice', op: 'gte', value: 40 },
        { not: { path: 'customer.tags', op: 'contains', value: 'wholesale' } },
        {
          any: [
            { path: 'order.currency', op: 'in', value: ['EUR', 'USD'] },
            { path: 'customer.countryCode', op: 'eq', value: 'DE' },
          ],
        },
      ],
    });
    expect(evaluateCondition(c, ctx)).toBe(true);
    expect(evaluateCondition(c, { ...ctx, order: { ...ctx.order, totalPrice: '39.99' } })).toBe(false);
  });

  it('short-circuits', () => {
    let reads = 0;
    const context = {
      get a() {
        reads += 1;
        return 1;
      },
    };
    // getters are own properties, so they are read; any stops after the first true branch
    evaluateCondition({ any: [{ path: 'a', op: 'eq', value: 1 }, { path: 'a', op: 'eq', value: 1 }] }, context);
    expect(reads).toBe(1);
  });
});

describe('resolvePath', () => {
  it('reads own properties only', () => {
    expect(resolvePath({}, 'constructor')).toBeUndefined();
    expect(resolvePath({}, 'toString')).toBeUndefined();
    expect(resolvePath({ a: Object.create({ inherited: 1 }) }, 'a.inherited')).toBeUndefined();
    expect(resolvePath({ a: { b: 0 } }, 'a.b')).toBe(0);
    expect(resolvePath(null, 'a')).toBeUndefined();
    expect(resolvePath({ a: 'str' }, 'a.b')).toBeUndefined();
  });
});

describe('parseCondition', () => {
  it('returns valid conditions unchanged', () => {
    const c = { any: [{ path: 'order.totalPrice', op: 'gt', value: '50' }] };
    expect(parseCondition(c)).toEqual(c);
  });

  it.each([
    [{ path: 'x', op: 'between', value: 1 }, 'op'],
    [{ all: [{ path: 'x', op: 'eq', value: 1 }, { path: 'x', op: 'bogus', value: 1 }] }, 'all.1.op'],
    [{ all: [{ not: { path: 'x', op: 'in', value: 'a' } }] }, 'all.0.not.value'],
    [{ any: [] }, 'any'],
    [{ all: [{ path: '', op: 'eq', value: 1 }] }, 'all.0.path'],
    [{ all: [{ path: 'a..b', op: 'eq', value: 1 }] }, 'all.0.path'],
    [{ path: 'order.__proto__.x', op: 'exists', value: true }, 'path'],
    [{ path: 'x', op: 'exists', value: 'yes' }, 'value'],
    [{ path: 'x', op: 'gt', value: 'abc' }, 'value'],
    [{ path: 'x', op: 'gt', value: null }, 'value'],
    [{ path: 'x', op: 'eq', value: { nested: 1 } }, 'value'],
    [{ path: 'x', op: 'eq' }, 'value'],
    [{ all: [{ path: 'x', op: 'eq', value: 1, extra: true }] }, 'all.0'],
    [{ all: [], any: [] }, '(root)'],
    [{ all: 'nope' }, 'all'],
    [{ foo: 1 }, '(root)'],
    [null, '(root)'],
    [[{ path: 'x', op: 'eq', value: 1 }], '(root)'],
    [{ all: [1] }, 'all.0'],
  ])('rejects %j at %s', (bad, where) => {
    const err = errorOf(() => parseCondition(bad));
    expect(err.code).toBe('CONDITION_INVALID');
    expect(err.details?.path).toBe(where);
    expect(err.message.startsWith(`condition ${where}: `)).toBe(true);
  });

  it(`allows ${MAX_DEPTH} levels and rejects ${MAX_DEPTH + 1}`, () => {
    const nest = (levels: number): unknown => {
      let c: unknown = { path: 'x', op: 'exists', value: true };
      for (let i = 1; i < levels; i++) c = { not: c };
      return c;
    };
    expect(() => parseCondition(nest(MAX_DEPTH))).not.toThrow();
    const err = errorOf(() => parseCondition(nest(MAX_DEPTH + 1)));
    expect(err.code).toBe('CONDITION_INVALID');
    expect(err.message).toMatch(/deeper than 10/);
    expect(err.details?.path).toBe(Array(MAX_DEPTH).fill('not').join('.'));
    // evaluation guards too, for conditions that skipped validation
    expect(() => evaluateCondition(nest(MAX_DEPTH + 1) as Condition, {})).toThrow(/deeper than 10/);
    expect(evaluateCondition(nest(MAX_DEPTH) as Condition, { x: 1 })).toBe(MAX_DEPTH % 2 === 1);
  });

  it('lists every issue in details', () => {
    const err = errorOf(() =>
      parseCondition({ all: [{ path: 'x', op: 'nope', value: 1 }, { path: 'y', op: 'in', value: 2 }] }),
    );
    expect(err.details?.issues).toHaveLength(2);
  });

  it('evaluation rejects an unknown op from unvalidated data', () => {
    expect(() => evaluateCondition({ path: 'x', op: 'nope', value: 1 } as unknown as Condition, {})).toThrow(
      /unknown condition op/,
    );
    try {
      evaluateCondition({ path: 'x', op: 'nope', value: 1 } as unknown as Condition, {});
    } catch (err) {
      expect(isAppError(err, 'CONDITION_INVALID')).toBe(true);
    }
  });
});

describe('conditionSchema', () => {
  it('accepts a valid condition and reports paths of bad nodes', () => {
    expect(conditionSchema.safeParse({ all: [{ path: 'a', op: 'eq', value: 1 }] }).success).toBe(true);
    const r = conditionSchema.safeParse({ all: [{ path: 'a', op: 'eq', value: 1 }, { not: { path: 'b', op: 'lt' } }] });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path)).toEqual([['all', 1, 'not', 'value']]);
  });
});
