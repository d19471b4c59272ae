import { describe, it, expect } from 'vitest';
import { analyzeSms, estimateCost, gsmCost, isGsm7 } from '../../src/messages/encoding.js';

const a = (n: number): string => 'a'.repeat(n);

describe('analyzeSms: GSM-7', () => {
  it('empty text is 0 segments', () => {
    expect(analyzeSms('')).toEqual({ encoding: 'GSM-7', units: 0, segments: 0, perSegment: 160, nonGsmChars: [] });
  });

  it.each([
    [1, 1, 160],
    [160, 1, 160],
    [161, 2, 153],
    [306, 2, 153],
    [307, 3, 153],
    [459, 3, 153],
    [460, 4, 153],
  ])('%i plain characters → %i segment(s) of %i', (n, segments, perSegment) => {
    expect(analyzeSms(a(n))).toEqual({ encoding: 'GSM-7', units: n, segments, perSegment, nonGsmChars: [] });
  });

  it('the whole basic set is GSM-7, one septet each', () => {
    const basic = '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
    expect(Array.from(basic)).toHaveLength(127);
    expect(analyzeSms(basic)).toMatchObject({ encoding: 'GSM-7', units: 127, segments: 1 });
  });

  it.each(Array.from('^{}\\[~]|€\f'))('extension character %j counts double', (ch) => {
    expect(gsmCost(ch)).toBe(2);
    expect(analyzeSms(`x${ch}`)).toMatchObject({ encoding: 'GSM-7', units: 3, segments: 1 });
  });

  it('extension characters fill a single message at 80', () => {
    expect(analyzeSms('€'.repeat(80))).toMatchObject({ units: 160, segments: 1 });
    expect(analyzeSms('€'.repeat(81))).toMatchObject({ units: 162, segments: 2, perSegment: 153 });
    expect(analyzeSms(a(159) + '€')).toMatchObject({ units: 161, segments: 2 });
  });

  it('an escape pair is never split across parts', () => {
    // 152 + [€ would straddle 152|153] + 152: 306 units, but the € starts part 2, pushing the last char into part 3
    expect(analyzeSms(a(152) + '€' + a(152))).toEqual({ encoding: 'GSM-7', units: 306, segments: 3, perSegment: 153, nonGsmChars: [] });
    // shifted by one, the € ends part 1 exactly
    expect(analyzeSms(a(151) + '€' + a(153))).toMatchObject({ units: 306, segments: 2 });
    // 76 € fill 152 of a part; the 77th goes to the next
    expect(analyzeSms('€'.repeat(153))).toMatchObject({ units: 306, segments: 3 });
  });

  it('characters that look Latin but are not GSM-7', () => {
    expect(isGsm7('Ç')).toBe(true);
    expect(isGsm7('ç')).toBe(false);
    expect(isGsm7('’')).toBe(false);
    expect(isGsm7('`')).toBe(false);
    expect(isGsm7('\u001b')).toBe(false);
  });
});

describe('analyzeSms: UCS-2', () => {
  it('one emoji switches the whole message and counts 2 units', () => {
    expect(analyzeSms('Your order shipped 😀')).toEqual({
      encoding: 'UCS-2',
      units: 21,
      segments: 1,
      perSegment: 70,
      nonGsmChars: ['😀'],
    });
    expect(analyzeSms(a(159) + '😀')).toMatchObject({ encoding: 'UCS-2', units: 161, segments: 3, perSegment: 67 });
  });

  it('a curly apostrophe is enough, and is reported', () => {
    expect(analyzeSms('We’re open')).toMatchObject({ encoding: 'UCS-2', units: 10, segments: 1, nonGsmChars: ['’'] });
  });

  it.each([
    [70, 1, 70],
    [71, 2, 67],
    [134, 2, 67],
    [135, 3, 67],
  ])('%i UCS-2 units → %i segment(s) of %i', (n, segments, perSegment) => {
    expect(analyzeSms('Ж'.repeat(n))).toMatchObject({ encoding: 'UCS-2', units: n, segments, perSegment });
  });

  it('GSM extension characters count 1 in UCS-2', () => {
    expect(analyzeSms('Ж€')).toMatchObject({ encoding: 'UCS-2', units: 2 });
  });

  it('a surrogate pair is never split across parts', () => {
    expect(analyzeSms('😀'.repeat(35))).toMatchObject({ units: 70, segments: 1 });
    expect(analyzeSms('Ж'.repeat(66) + '😀' + 'Ж'.repeat(66))).toMatchObject({ units: 134, segments: 3 });
    expect(analyzeSms('Ж'.repeat(65) + '😀' + 'Ж'.repeat(67))).toMatchObject({ units: 134, segments: 2 });
  });

  it('reports at most 10 distinct non-GSM characters', () => {
    const r = analyzeSms('ЖЖЖ' + 'абвгдежзийклмн');
    expect(r.nonGsmChars).toHaveLength(10);
    expect(r.nonGsmChars[0]).toBe('Ж');
    expect(r.units).toBe(17);
  });
});

describe('estimateCost', () => {
  it('multiplies segments by the per-part price (default 0.03)', () => {
    expect(estimateCost(0)).toBe(0);
    expect(estimateCost(1)).toBe(0.03);
    expect(estimateCost(3)).toBe(0.09);
    expect(estimateCost(7, 0.0475)).toBe(0.3325);
  });

  it('rejects nonsense', () => {
    expect(() => estimateCost(-1)).toThrow(RangeError);
    expect(() => estimateCost(1.5)).toThrow(RangeError);
    expect(() => estimateCost(1, -0.01)).toThrow(RangeError);
  });
});
