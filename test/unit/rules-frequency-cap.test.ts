import { describe, it, expect } from 'vitest';
import { capDecision, DEFAULT_FREQUENCY_CAP, frequencyCapKey } from '../../src/rules/frequencyCap.js';
import { isAppError } from '../../src/errors.js';

const H = 3_600_000;
const now = Date.parse('2024-07-01T12:00:00Z');

describe('frequencyCapKey', () => {
  it('names shop and contact', () => {
    expect(frequencyCapKey('17', '4242')).toBe('fcap:17:4242');
    expect(frequencyCapKey(17, 4242)).toBe('fcap:17:4242');
    expect(frequencyCapKey('shop.myshopify.com', '9')).toBe('fcap:shop.myshopify.com:9');
  });

  it.each([
    ['', '1'],
    ['1', ''],
    ['a:b', '1'],
    ['1', 'c d'],
  ])('rejects ambiguous ids %j / %j', (shop, contact) => {
    try {
      frequencyCapKey(shop, contact);
      expect.unreachable();
    } catch (err) {
      expect(isAppError(err, 'VALIDATION_FAILED')).toBe(true);
    }
  });
});

describe('capDecision', () => {
  it('defaults to 1 per 24 h', () => {
    expect(DEFAULT_FREQUENCY_CAP).toEqual({ max: 1, windowHours: 24 });
    expect(capDecision([], now)).toEqual({ allowed: true, count: 0, remaining: 1, windowStart: now - 24 * H });
    expect(capDecision([now - 23 * H], now)).toMatchObject({ allowed: false, count: 1, retryAt: now + H });
  });

  it('a send exactly one window ago no longer counts; one ms later it does', () => {
    expect(capDecision([now - 24 * H], now).allowed).toBe(true);
    expect(capDecision([now - 24 * H + 1], now)).toMatchObject({ allowed: false, retryAt: now + 1 });
  });

  it('counts sends in the window against max', () => {
    const cap = { max: 3, windowHours: 8 };
    const sends = [now - 9 * H, now - 7 * H, now - 2 * H];
    expect(capDecision(sends, now, cap)).toEqual({ allowed: true, count: 2, remaining: 1, windowStart: now - 8 * H });
    const d = capDecision([...sends, now - H], now, cap);
    expect(d).toMatchObject({ allowed: false, count: 3, remaining: 0 });
    // the oldest in-window send (now - 7 h) leaves first
    expect(d.allowed ? null : d.retryAt).toBe(now + H);
  });

  it('retryAt frees exactly one slot when over the cap', () => {
    const cap = { max: 2, windowHours: 10 };
    const sends = [now - 1 * H, now - 5 * H, now - 3 * H, now - 4 * H]; // unsorted, 4 in window
    const d = capDecision(sends, now, cap);
    expect(d.allowed).toBe(false);
    if (d.allowed) return;
    // 4 in window, max 2: the 3 oldest must leave (now-5h, now-4h, now-3h) → at now-3h+10h
    expect(d.retryAt).toBe(now + 7 * H);
    expect(capDecision(sends, d.retryAt, cap).allowed).toBe(true);
    expect(capDecision(sends, d.retryAt - 1, cap).allowed).toBe(false);
  });

  it('counts sends in the future (clock skew) and ignores garbage timestamps', () => {
    expect(capDecision([now + 5_000], now).allowed).toBe(false);
    expect(capDecision([Number.NaN, Number.POSITIVE_INFINITY], now).allowed).toBe(true);
  });

  it('supports fractional windows', () => {
    expect(capDecision([now - 20 * 60_000], now, { max: 1, windowHours: 0.5 }).allowed).toBe(false);
    expect(capDecision([now - 31 * 60_000], now, { max: 1, windowHours: 0.5 }).allowed).toBe(true);
  });

  it.each([
    { max: 0, windowHours: 24 },
    { max: 1.5, windowHours: 24 },
    { max: 1, windowHours: 0 },
    { max: 1, windowHours: -1 },
    { max: 1, windowHours: 721 },
    { max: 1, windowHours: Number.NaN },
  ])('rejects cap %j', (cap) => {
    expect(() => capDecision([], now, cap)).toThrow(/frequency cap/);
  });
});
