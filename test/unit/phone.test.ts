import { describe, it, expect } from 'vitest';
import { pickCountry, toE164 } from '../../src/shopify/phone.js';

describe('toE164', () => {
  it('keeps an E.164 number as is', () => {
    expect(toE164('+12015550123')).toBe('+12015550123');
    expect(toE164('+447400123456', 'US')).toBe('+447400123456');
  });

  it.each([
    ['+1 (201) 555-0123', undefined, '+12015550123'],
    ['  +1 201 555 0123  ', undefined, '+12015550123'],
    ['201-555-0123', 'US', '+12015550123'],
    ['(201) 555-0123', 'us', '+12015550123'],
    ['2015550188', 'US', '+12015550188'],
    ['1 201 555 0123', 'US', '+12015550123'],
    ['415.555.2671', 'US', '+14155552671'],
  ])('US formats: %j (hint %s)', (raw, hint, expected) => {
    expect(toE164(raw, hint)).toBe(expected);
  });

  it.each([
    ['030 12345678', 'DE', '+493012345678'],
    ['01512 3456789', 'DE', '+4915123456789'],
    ['0151-2345-6789', 'de', '+4915123456789'],
    ['+49 (0)30 12345678', undefined, '+493012345678'],
    ['020 7946 0958', 'GB', '+442079460958'],
    ['07400 123456', 'GB', '+447400123456'],
    ['+44 (0)20 7946 0958', null, '+442079460958'],
    ['06 12 34 56 78', 'FR', '+33612345678'],
    ['06.12.34.56.78', 'FR', '+33612345678'],
    ['01 23 45 67 89', 'fr', '+33123456789'],
  ])('national format with country hint: %j (%s)', (raw, hint, expected) => {
    expect(toE164(raw, hint)).toBe(expected);
  });

  it('accepts the 00 international prefix with or without a hint', () => {
    expect(toE164('00 44 20 7946 0958')).toBe('+442079460958');
    expect(toE164('0044 20 7946 0958', 'DE')).toBe('+442079460958');
    // US dials 011 internationally, yet "00 44 ..." still means +44 to a human.
    expect(toE164('00 44 20 7946 0958', 'US')).toBe('+442079460958');
    expect(toE164('0049 30 12345678', 'FR')).toBe('+493012345678');
    expect(toE164('011 44 20 7946 0958', 'US')).toBe('+442079460958');
  });

  it('ignores the hint for numbers with an international prefix', () => {
    expect(toE164('+44 20 7946 0958', 'US')).toBe('+442079460958');
    expect(toE164('+33 6 12 34 56 78', 'DE')).toBe('+33612345678');
  });

  it('strips labels, letters and extensions', () => {
    expect(toE164('tel: +1 201-555-0123 ext. 45')).toBe('+12015550123');
    expect(toE164('+1 201 555 0123 x99')).toBe('+12015550123');
    expect(toE164('+1-201-555-0123 (mobile)')).toBe('+12015550123');
    expect(toE164('Mobile: 06 12 34 56 78', 'FR')).toBe('+33612345678');
  });

  it('needs a country for a national number', () => {
    expect(toE164('2015550123')).toBeNull();
    expect(toE164('2015550123', null)).toBeNull();
    expect(toE164('201 555 0123', 'ZZ')).toBeNull(); // unsupported country
    expect(toE164('201 555 0123', 'USA')).toBeNull(); // not alpha-2
  });

  it('rejects numbers that are possible but not valid, too short or not numbers', () => {
    expect(toE164('+1 (555) 010-0000')).toBeNull();
    expect(toE164('5550100000', 'US')).toBeNull();
    expect(toE164('12345', 'US')).toBeNull();
    expect(toE164('+999 123')).toBeNull();
    expect(toE164('00', 'US')).toBeNull();
    expect(toE164('abc', 'US')).toBeNull();
    expect(toE164('+')).toBeNull();
  });

  it('returns null for empty and missing values without throwing', () => {
    expect(toE164('')).toBeNull();
    expect(toE164('   ', 'US')).toBeNull();
    expect(toE164(null, 'US')).toBeNull();
    expect(toE164(undefined)).toBeNull();
    expect(toE164(2015550123 as unknown as string, 'US')).toBeNull();
    expect(toE164({} as unknown as string)).toBeNull();
    expect(toE164('+1 201 555 0123', 42 as unknown as string)).toBe('+12015550123');
    expect(toE164('9'.repeat(10_000), 'US')).toBeNull();
  });
});

describe('pickCountry', () => {
  it('returns the first two-letter code, upper-cased', () => {
    expect(pickCountry(null, undefined, '', 'USA', ' de ', 'FR')).toBe('DE');
    expect(pickCountry('us')).toBe('US');
    expect(pickCountry('1A', 'G', 'gb')).toBe('GB');
  });

  it('returns null when nothing qualifies', () => {
    expect(pickCountry()).toBeNull();
    expect(pickCountry(null, undefined, '  ', 'United States')).toBeNull();
  });
});
