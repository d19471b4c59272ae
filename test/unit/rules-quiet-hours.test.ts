import { describe, it, expect } from 'vitest';
import { DateTime } from 'luxon';
import {
  addressTimezones,
  DEFAULT_QUIET_HOURS,
  isValidTimezone,
  parseClock,
  quietHoursDecision,
  quietHoursDecisionAll,
  recipientZones,
  resolveTimezone,
  timezonesForPhone,
  timezoneForAddress,
  type QuietHoursWindow,
} from '../../src/rules/quietHours.js';
import { isAppError } from '../../src/errors.js';

const NY = 'America/New_York';
const BERLIN = 'Europe/Berlin';

function decide(now: string, timezone: string, window?: QuietHoursWindow, enabled = true) {
  return quietHoursDecision({ now: new Date(now), timezone, enabled, ...(window ? { window } : {}) });
}

/** The deferral as an ISO instant, or 'allowed'. */
function until(now: string, timezone: string, window?: QuietHoursWindow): string {
  const d = decide(now, timezone, window);
  return d.allowed ? 'allowed' : d.deferUntil.toISOString();
}

const iso = (s: string): string => new Date(s).toISOString();

describe('quietHoursDecision: default 21:00-08:00 window', () => {
  it('uses 21:00-08:00 by default', () => {
    expect(DEFAULT_QUIET_HOURS).toEqual({ start: '21:00', end: '08:00' });
  });

  it('exact boundaries: 20:59:59 allowed, 21:00 deferred, 07:59:59 deferred, 08:00 allowed', () => {
    expect(until('2024-07-01T20:59:59-04:00', NY)).toBe('allowed');
    expect(until('2024-07-01T21:00:00-04:00', NY)).toBe(iso('2024-07-02T08:00:00-04:00'));
    expect(until('2024-07-02T07:59:59-04:00', NY)).toBe(iso('2024-07-02T08:00:00-04:00'));
    expect(until('2024-07-02T08:00:00-04:00', NY)).toBe('allowed');
  });

  it('across midnight: before midnight defers to the next morning, after midnight to the same morning', () => {
    expect(until('2024-07-01T23:59:00-04:00', NY)).toBe(iso('2024-07-02T08:00:00-04:00'));
    expect(until('2024-07-02T00:00:00-04:00', NY)).toBe(iso('2024-07-02T08:00:00-04:00'));
    expect(until('2024-07-02T03:12:45-04:00', NY)).toBe(iso('2024-07-02T08:00:00-04:00'));
    expect(until('2024-07-02T12:00:00-04:00', NY)).toBe('allowed');
  });

  it('judges the recipient local time, not UTC', () => {
    // 02:00 UTC is 22:00 in New York (quiet) and 04:00 in Berlin (quiet); 14:00 UTC is 10:00 / 16:00 (open).
    expect(until('2024-07-02T02:00:00Z', NY)).toBe(iso('2024-07-02T08:00:00-04:00'));
    expect(until('2024-07-02T02:00:00Z', BERLIN)).toBe(iso('2024-07-02T08:00:00+02:00'));
    expect(until('2024-07-02T14:00:00Z', NY)).toBe('allowed');
    expect(until('2024-07-02T20:30:00Z', BERLIN)).toBe(iso('2024-07-03T08:00:00+02:00'));
  });

  it('crosses month and year ends', () => {
    expect(until('2024-12-31T22:00:00-05:00', NY)).toBe(iso('2025-01-01T08:00:00-05:00'));
    expect(until('2024-02-28T23:00:00+01:00', BERLIN)).toBe(iso('2024-02-29T08:00:00+01:00'));
  });

  it('reports the zone used', () => {
    expect(decide('2024-07-01T12:00:00Z', NY)).toEqual({ allowed: true, timezone: NY, timezoneFallback: false });
  });
});

describe('quietHoursDecision: other windows', () => {
  const lunch = { start: '13:00', end: '14:00' };

  it('same-day window', () => {
    expect(until('2024-07-01T12:59:59+02:00', BERLIN, lunch)).toBe('allowed');
    expect(until('2024-07-01T13:00:00+02:00', BERLIN, lunch)).toBe(iso('2024-07-01T14:00:00+02:00'));
    expect(until('2024-07-01T13:59:59+02:00', BERLIN, lunch)).toBe(iso('2024-07-01T14:00:00+02:00'));
    expect(until('2024-07-01T14:00:00+02:00', BERLIN, lunch)).toBe('allowed');
    expect(until('2024-07-01T22:00:00+02:00', BERLIN, lunch)).toBe('allowed');
    expect(until('2024-07-01T03:00:00+02:00', BERLIN, lunch)).toBe('allowed');
  });

  it('window from midnight', () => {
    const w = { start: '00:00', end: '08:00' };
    expect(until('2024-07-01T00:00:00-04:00', NY, w)).toBe(iso('2024-07-01T08:00:00-04:00'));
    expect(until('2024-07-01T23:59:59-04:00', NY, w)).toBe('allowed');
  });

  it('window to midnight', () => {
    const w = { start: '21:00', end: '00:00' };
    expect(until('2024-07-01T23:00:00-04:00', NY, w)).toBe(iso('2024-07-02T00:00:00-04:00'));
    expect(until('2024-07-02T00:00:00-04:00', NY, w)).toBe('allowed');
  });

  it('start == end means no quiet hours', () => {
    for (const h of ['00', '08', '21', '23']) {
      expect(until(`2024-07-01T${h}:30:00-04:00`, NY, { start: '08:00', end: '08:00' })).toBe('allowed');
    }
  });

  it('disabled means always allowed', () => {
    expect(decide('2024-07-01T23:00:00-04:00', NY, undefined, false)).toMatchObject({ allowed: true });
  });

  it.each(['24:00', '8:00', '21:60', '', '21:00:00', 'ab:cd'])('rejects window time %j', (bad) => {
    expect(() => decide('2024-07-01T12:00:00Z', NY, { start: bad, end: '08:00' })).toThrow(/HH:mm/);
    try {
      decide('2024-07-01T12:00:00Z', NY, { start: '21:00', end: bad });
    } catch (err) {
      expect(isAppError(err, 'VALIDATION_FAILED')).toBe(true);
    }
  });

  it('parseClock gives minutes after midnight', () => {
    expect(parseClock('00:00')).toBe(0);
    expect(parseClock('08:30')).toBe(510);
    expect(parseClock('23:59')).toBe(1439);
  });
});

describe('quietHoursDecision: DST in America/New_York', () => {
  // 2024-03-10 02:00 EST → 03:00 EDT; 2024-11-03 02:00 EDT → 01:00 EST.
  it('spring forward: the night before defers to 08:00 EDT (12:00Z, not 13:00Z)', () => {
    expect(until('2024-03-09T23:00:00-05:00', NY)).toBe('2024-03-10T12:00:00.000Z');
    expect(until('2024-03-10T01:59:00-05:00', NY)).toBe('2024-03-10T12:00:00.000Z');
    expect(until('2024-03-10T03:00:00-04:00', NY)).toBe('2024-03-10T12:00:00.000Z');
    expect(until('2024-03-10T08:00:00-04:00', NY)).toBe('allowed');
  });

  it('fall back: the night before defers to 08:00 EST (13:00Z); the repeated hour is inside', () => {
    expect(until('2024-11-02T22:00:00-04:00', NY)).toBe('2024-11-03T13:00:00.000Z');
    expect(until('2024-11-03T01:30:00-04:00', NY)).toBe('2024-11-03T13:00:00.000Z');
    expect(until('2024-11-03T01:30:00-05:00', NY)).toBe('2024-11-03T13:00:00.000Z');
    expect(until('2024-11-03T07:59:59-05:00', NY)).toBe('2024-11-03T13:00:00.000Z');
    expect(until('2024-11-03T08:00:00-05:00', NY)).toBe('allowed');
  });

  it('window ending inside the spring-forward gap defers to the first valid instant (03:00 EDT)', () => {
    const w = { start: '22:00', end: '02:30' };
    expect(until('2024-03-09T23:00:00-05:00', NY, w)).toBe('2024-03-10T07:00:00.000Z');
    expect(until('2024-03-10T01:59:59-05:00', NY, w)).toBe('2024-03-10T07:00:00.000Z');
    expect(DateTime.fromISO('2024-03-10T07:00:00Z').setZone(NY).toFormat('HH:mm ZZZZ')).toBe('03:00 EDT');
    expect(until('2024-03-10T03:00:00-04:00', NY, w)).toBe('allowed');
  });

  it('window ending in the repeated hour defers to its first occurrence, or the second once the first has passed', () => {
    const w = { start: '22:00', end: '01:30' };
    expect(until('2024-11-03T00:30:00-04:00', NY, w)).toBe('2024-11-03T05:30:00.000Z'); // 01:30 EDT
    expect(until('2024-11-03T01:29:00-04:00', NY, w)).toBe('2024-11-03T05:30:00.000Z');
    expect(until('2024-11-03T01:45:00-04:00', NY, w)).toBe('allowed');
    // the clock falls back to 01:00 EST: quiet again until 01:30 EST
    expect(until('2024-11-03T01:15:00-05:00', NY, w)).toBe('2024-11-03T06:30:00.000Z');
  });
});

describe('quietHoursDecision: DST in Europe/Berlin', () => {
  // 2024-03-31 02:00 CET → 03:00 CEST; 2024-10-27 03:00 CEST → 02:00 CET.
  it('spring forward: defers to 08:00 CEST (06:00Z)', () => {
    expect(until('2024-03-30T22:00:00+01:00', BERLIN)).toBe('2024-03-31T06:00:00.000Z');
    expect(until('2024-03-31T03:30:00+02:00', BERLIN)).toBe('2024-03-31T06:00:00.000Z');
  });

  it('fall back: defers to 08:00 CET (07:00Z)', () => {
    expect(until('2024-10-26T22:00:00+02:00', BERLIN)).toBe('2024-10-27T07:00:00.000Z');
    expect(until('2024-10-27T02:30:00+01:00', BERLIN)).toBe('2024-10-27T07:00:00.000Z');
  });

  it('window ending at 02:30 on the spring-forward night defers to 03:00 CEST', () => {
    const w = { start: '23:00', end: '02:30' };
    expect(until('2024-03-31T01:00:00+01:00', BERLIN, w)).toBe('2024-03-31T01:00:00.000Z');
    expect(DateTime.fromISO('2024-03-31T01:00:00Z').setZone(BERLIN).toFormat('HH:mm')).toBe('03:00');
  });

  it('window ending at 02:30 on the fall-back night uses the first 02:30 (CEST)', () => {
    const w = { start: '23:00', end: '02:30' };
    expect(until('2024-10-27T01:00:00+02:00', BERLIN, w)).toBe('2024-10-27T00:30:00.000Z');
    expect(until('2024-10-27T02:15:00+01:00', BERLIN, w)).toBe('2024-10-27T01:30:00.000Z');
  });
});

describe('quietHoursDecision: invariants over a year', () => {
  it.each([NY, BERLIN, 'Australia/Sydney', 'Asia/Kolkata'])('%s: deferUntil is in the future, open, and at 08:00 local', (tz) => {
    const start = Date.parse('2024-01-01T00:00:00Z');
    const end = Date.parse('2025-01-01T00:00:00Z');
    for (let t = start; t < end; t += 89 * 60_000) {
      const d = quietHoursDecision({ now: new Date(t), timezone: tz, enabled: true });
      const local = DateTime.fromMillis(t, { zone: tz });
      const quiet = local.hour >= 21 || local.hour < 8;
      expect(d.allowed).toBe(!quiet);
      if (d.allowed) continue;
      expect(d.deferUntil.getTime()).toBeGreaterThan(t);
      expect(d.deferUntil.getTime() - t).toBeLessThanOrEqual(11 * 3_600_000 + 3_600_000);
      expect(DateTime.fromJSDate(d.deferUntil, { zone: tz }).toFormat('HH:mm:ss')).toBe('08:00:00');
      expect(quietHoursDecision({ now: d.deferUntil, timezone: tz, enabled: true }).allowed).toBe(true);
    }
  });
});

describe('timezone fallback', () => {
  it('an invalid zone falls back to UTC and says so', () => {
    const d = decide('2024-07-01T22:00:00Z', 'Mars/Olympus_Mons');
    expect(d).toEqual({ allowed: false, deferUntil: new Date('2024-07-02T08:00:00Z'), timezone: 'UTC', timezoneFallback: true });
    expect(decide('2024-07-01T12:00:00Z', '')).toMatchObject({ allowed: true, timezone: 'UTC', timezoneFallback: true });
  });

  it('isValidTimezone', () => {
    expect(isValidTimezone('Europe/Berlin')).toBe(true);
    expect(isValidTimezone('UTC')).toBe(true);
    expect(isValidTimezone('Nowhere/Town')).toBe(false);
    expect(isValidTimezone('')).toBe(false);
    expect(isValidTimezone(null)).toBe(false);
  });
});

describe('resolveTimezone', () => {
  it('prefers the contact, then the shop, then UTC', () => {
    expect(resolveTimezone('America/Chicago', 'Europe/Berlin')).toEqual({ timezone: 'America/Chicago', source: 'contact' });
    expect(resolveTimezone(null, 'Europe/Berlin')).toEqual({ timezone: 'Europe/Berlin', source: 'shop' });
    expect(resolveTimezone('Bogus/Zone', 'Europe/Berlin')).toEqual({ timezone: 'Europe/Berlin', source: 'shop' });
    expect(resolveTimezone(undefined, 'bad')).toEqual({ timezone: 'UTC', source: 'default' });
    expect(resolveTimezone(null, null)).toEqual({ timezone: 'UTC', source: 'default' });
  });
});

describe('timezoneForAddress', () => {
  it.each([
    ['US', 'NY', 'America/New_York'],
    ['US', 'CA', 'America/Los_Angeles'],
    ['US', 'TX', 'America/Chicago'],
    ['US', 'AZ', 'America/Phoenix'],
    ['US', 'HI', 'Pacific/Honolulu'],
    ['us', 'us-ny', 'America/New_York'],
    ['CA', 'ON', 'America/Toronto'],
    ['CA', 'BC', 'America/Vancouver'],
    ['CA', 'NL', 'America/St_Johns'],
    ['AU', 'NSW', 'Australia/Sydney'],
    ['AU', 'WA', 'Australia/Perth'],
    ['AU', 'QLD', 'Australia/Brisbane'],
    ['DE', null, 'Europe/Berlin'],
    ['DE', 'BY', 'Europe/Berlin'],
    ['GB', 'ENG', 'Europe/London'],
    ['IE', null, 'Europe/Dublin'],
    ['JP', '13', 'Asia/Tokyo'],
    ['IN', 'MH', 'Asia/Kolkata'],
    ['NZ', null, 'Pacific/Auckland'],
    ['ZA', 'GP', 'Africa/Johannesburg'],
    ['ES', 'M', 'Europe/Madrid'],
    ['ES', 'TF', 'Atlantic/Canary'],
    ['PT', 'PT-20', 'Atlantic/Azores'],
    ['PT', 'PT-11', 'Europe/Lisbon'],
  ])('%s / %s → %s', (country, province, tz) => {
    expect(timezoneForAddress(country, province)).toBe(tz);
  });

  it.each([
    ['US', null],
    ['US', 'AA'],
    ['CA', ''],
    ['AU', null],
    ['BR', 'SP'],
    ['MX', 'JAL'],
    ['RU', null],
    [null, 'NY'],
    ['', null],
    ['ZZ', null],
  ])('%s / %s → null (unknown or ambiguous)', (country, province) => {
    expect(timezoneForAddress(country, province)).toBeNull();
  });

  it('every zone in the table is a valid IANA zone', () => {
    const zones = addressTimezones();
    expect(zones.length).toBeGreaterThan(80);
    for (const z of zones) expect([z, isValidTimezone(z)]).toEqual([z, true]);
  });
});

describe('recipientZones: address, then phone area code, then the country\'s zones, then the shop', () => {
  const NOW = new Date('2026-06-01T20:30:00Z'); // 16:30 New York

  it('a US contact without a province is placed by the phone\'s area code', () => {
    expect(timezonesForPhone('+12125550123')).toEqual(['America/New_York']);
    expect(recipientZones({ countryCode: 'US', phone: '+12125550123' }, 'UTC', NOW)).toEqual({ zones: ['America/New_York'], source: 'phone' });
    expect(recipientZones({ countryCode: 'US', phone: '+13105550123' }, 'UTC', NOW)).toEqual({ zones: ['America/Los_Angeles'], source: 'phone' });
  });

  it('the address wins over the phone', () => {
    expect(recipientZones({ countryCode: 'US', provinceCode: 'CA', phone: '+12125550123' }, 'UTC', NOW)).toEqual({ zones: ['America/Los_Angeles'], source: 'address' });
  });

  it('a US contact with no hint gets every mainland zone; the shop\'s zone only when nothing else is known', () => {
    const us = recipientZones({ countryCode: 'US', phone: null }, 'Europe/Berlin', NOW);
    expect(us.source).toBe('country');
    expect(us.zones).toEqual(expect.arrayContaining(['America/New_York', 'America/Los_Angeles', 'Pacific/Honolulu']));
    expect(us.zones).not.toContain('Pacific/Guam');
    expect(recipientZones({ phone: '+18005550199' }, 'America/Chicago', NOW)).toEqual({ zones: ['America/Chicago'], source: 'shop' });
    expect(recipientZones({}, null, NOW)).toEqual({ zones: ['UTC'], source: 'default' });
  });

  it('across several zones a message waits until it is allowed in all of them', () => {
    // 06:00 New York = 03:00 Los Angeles: New York opens at 08:00 NY, Los Angeles at 08:00 LA = 11:00 NY.
    const at = new Date('2026-06-01T10:00:00Z');
    const d = quietHoursDecisionAll({ now: at, zones: ['America/New_York', 'America/Los_Angeles'], enabled: true });
    expect(d).toMatchObject({ allowed: false, deferUntil: new Date('2026-06-01T15:00:00Z') });
    // 16:30 New York = 13:30 Los Angeles: allowed in both.
    expect(quietHoursDecisionAll({ now: NOW, zones: ['America/New_York', 'America/Los_Angeles'], enabled: true }).allowed).toBe(true);
    // 20:30 Los Angeles = 23:30 New York: quiet in New York until 08:00 NY = 05:00 LA, then quiet in LA until 08:00 LA.
    const late = quietHoursDecisionAll({ now: new Date('2026-06-02T03:30:00Z'), zones: ['America/New_York', 'America/Los_Angeles'], enabled: true });
    expect(late).toMatchObject({ allowed: false, deferUntil: new Date('2026-06-02T15:00:00Z') });
  });
});
