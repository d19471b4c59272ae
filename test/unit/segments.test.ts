/** The segment language: validation and the SQL each operator compiles to (parameterised, never concatenated). */
import { describe, expect, it } from 'vitest';
import { parseSegmentFilter, MAX_DEPTH, type SegmentFilter } from '../../src/campaigns/segments.js';
import { compileSegment, toQuery } from '../../src/db/segmentFilter.js';
import { isAppError } from '../../src/errors.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const compile = (f: unknown) => toQuery(compileSegment(parseSegmentFilter(f), { now: NOW }));

describe('segment compiler', () => {
  it('consent: one state is an equality, several an ANY over a text array', () => {
    expect(compile({ consent: 'subscribed' })).toEqual({ sql: '"contacts"."sms_consent" = $1', params: ['subscribed'] });
    expect(compile({ consent: ['subscribed', 'pending'] })).toEqual({
      sql: '"contacts"."sms_consent" = ANY(ARRAY[$1, $2]::text[])',
      params: ['subscribed', 'pending'],
    });
  });

  it('tags: any is an overlap (&&), all is containment (@>)', () => {
    expect(compile({ tags: { any: ['vip', 'sale'] } })).toEqual({ sql: '"contacts"."tags" && ARRAY[$1, $2]::text[]', params: ['vip', 'sale'] });
    expect(compile({ tags: { all: ['vip'] } })).toEqual({ sql: '"contacts"."tags" @> ARRAY[$1]::text[]', params: ['vip'] });
  });

  it('country: upper-cased codes', () => {
    expect(compile({ country: 'ch' })).toEqual({ sql: 'upper("contacts"."country_code") = $1', params: ['CH'] });
    expect(compile({ country: ['DE', 'at'] }).params).toEqual(['DE', 'AT']);
  });

  it('createdWithin and lastOrderWithin count back from the given clock', () => {
    expect(compile({ createdWithin: { days: 30 } })).toEqual({
      sql: '"contacts"."created_at" >= $1::timestamptz',
      params: ['2026-01-30T12:00:00.000Z'],
    });
    expect(compile({ lastOrderWithin: { days: 1 } })).toEqual({
      sql: '"contacts"."last_order_at" >= $1::timestamptz',
      params: ['2026-02-28T12:00:00.000Z'],
    });
  });

  it('ordersCount and totalSpent: each comparison, several ANDed', () => {
    expect(compile({ ordersCount: { gte: 2 } })).toEqual({ sql: '"contacts"."orders_count" >= $1::int', params: [2] });
    expect(compile({ ordersCount: { eq: 0 } })).toEqual({ sql: '"contacts"."orders_count" = $1::int', params: [0] });
    expect(compile({ totalSpent: { gt: 10, lte: 99.5 } })).toEqual({
      sql: '("contacts"."total_spent" > $1::numeric AND "contacts"."total_spent" <= $2::numeric)',
      params: [10, 99.5],
    });
    expect(compile({ totalSpent: { lt: 5 } }).sql).toBe('"contacts"."total_spent" < $1::numeric');
  });

  it('hasPhone', () => {
    expect(compile({ hasPhone: true })).toEqual({ sql: '"contacts"."phone" IS NOT NULL', params: [] });
    expect(compile({ hasPhone: false })).toEqual({ sql: '"contacts"."phone" IS NULL', params: [] });
  });

  it('and / or / not, with empty and = everything and empty or = nothing; not treats NULL as false', () => {
    expect(compile({ and: [{ consent: 'subscribed' }, { hasPhone: true }] })).toEqual({
      sql: '("contacts"."sms_consent" = $1 AND "contacts"."phone" IS NOT NULL)',
      params: ['subscribed'],
    });
    expect(compile({ or: [{ country: 'CH' }, { tags: { any: ['x'] } }] }).sql).toBe('(upper("contacts"."country_code") = $1 OR "contacts"."tags" && ARRAY[$2]::text[])');
    expect(compile({ not: { country: 'CH' } }).sql).toBe('NOT coalesce(upper("contacts"."country_code") = $1, FALSE)');
    expect(compile({ and: [] }).sql).toBe('TRUE');
    expect(compile({ or: [] }).sql).toBe('FALSE');
  });

  it('values never reach the SQL text', () => {
    const q = compile({ tags: { any: ["x'); DROP TABLE contacts; --"] } });
    expect(q.sql).not.toContain('DROP');
    expect(q.params).toEqual(["x'); DROP TABLE contacts; --"]);
  });
});

describe('segment validation', () => {
  const invalid = (f: unknown) => {
    try {
      parseSegmentFilter(f);
    } catch (err) {
      expect(isAppError(err, 'SEGMENT_INVALID')).toBe(true);
      return (err as Error).message;
    }
    throw new Error('expected SEGMENT_INVALID');
  };

  it('rejects unknown conditions, bad values and extra keys', () => {
    invalid({ favouriteColour: 'red' });
    invalid({ consent: 'maybe' });
    invalid({ tags: { some: ['a'] } });
    invalid({ tags: { any: [] } });
    invalid({ country: 'Switzerland' });
    invalid({ ordersCount: {} });
    invalid({ ordersCount: { gte: 'two' } });
    invalid({ createdWithin: { days: 0 } });
    invalid({ consent: 'subscribed', hasPhone: true });
    invalid(null);
  });

  it('names an unknown condition and where it is, and the field of a bad value (issue 15)', () => {
    expect(invalid({ favouriteColour: 'red' })).toMatch(/^segment filter: favouriteColour: unknown condition "favouriteColour" \(known: and, or, not, consent/);
    expect(invalid({ and: [{ consent: 'subscribed' }, { or: [{ tagz: { any: ['vip'] } }] }] })).toMatch(/^segment filter: and\.1\.or\.0\.tagz: unknown condition "tagz"/);
    expect(invalid({ ordersCount: { gte: 'two' } })).toMatch(/^segment filter: ordersCount\.gte: /);
    expect(invalid({ consent: 'subscribed', hasPhone: true })).toContain('exactly one key');
    expect(invalid({ not: { consent: 'maybe' } })).toMatch(/^segment filter: not\.consent: /);
  });

  it('rejects filters nested deeper than the limit', () => {
    let f: SegmentFilter = { hasPhone: true };
    for (let i = 0; i <= MAX_DEPTH; i++) f = { not: f };
    expect(invalid(f)).toMatch(/deeper/);
  });
});
