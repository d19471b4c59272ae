/**
 * Calendar days in a shop's time zone: the boundaries a daily report counts between. Pure functions, no clock.
 *
 * A day is `[start, end)` in UTC instants; in a zone with daylight saving it lasts 23 or 25 hours on the switch days,
 * which is why nothing here adds 24 hours.
 */
import { DateTime } from 'luxon';
import { AppError } from '../errors.js';

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** The zone to count in: the shop's if luxon knows it, else UTC (a bad zone must not stop the reports). */
export function effectiveZone(timezone: string | null | undefined): string {
  if (!timezone) return 'UTC';
  return DateTime.now().setZone(timezone).isValid ? timezone : 'UTC';
}

/** Parses `YYYY-MM-DD` strictly (a real calendar date); throws VALIDATION_FAILED otherwise. */
export function parseDay(day: string, what = 'day'): string {
  const dt = DAY.test(day) ? DateTime.fromISO(day, { zone: 'UTC' }) : null;
  if (!dt?.isValid || dt.toISODate() !== day) throw new AppError('VALIDATION_FAILED', `${what}: must be a date as YYYY-MM-DD (got "${day}")`);
  return day;
}

/** The instants a calendar day starts and ends at in `timezone`. */
export function dayWindow(day: string, timezone: string): { start: Date; end: Date } {
  const start = DateTime.fromISO(parseDay(day), { zone: effectiveZone(timezone) }).startOf('day');
  return { start: start.toJSDate(), end: start.plus({ days: 1 }).toJSDate() };
}

/** The calendar day (`YYYY-MM-DD`) an instant falls on in `timezone`. */
export function localDay(at: Date, timezone: string): string {
  return DateTime.fromJSDate(at, { zone: effectiveZone(timezone) }).toISODate()!;
}

/** The days a scheduled rollup recomputes at `now`: today and yesterday in the shop's zone (late reports land on yesterday). */
export function daysToRollUp(now: Date, timezone: string, back = 1): string[] {
  const today = DateTime.fromJSDate(now, { zone: effectiveZone(timezone) }).startOf('day');
  const days: string[] = [];
  for (let i = back; i >= 0; i--) days.push(today.minus({ days: i }).toISODate()!);
  return days;
}

/** Every day from `from` to `to` inclusive; throws when `to` is before `from` or the range is longer than `maxDays`. */
export function daysBetween(from: string, to: string, maxDays = 366): string[] {
  const a = DateTime.fromISO(parseDay(from, 'from'), { zone: 'UTC' });
  const b = DateTime.fromISO(parseDay(to, 'to'), { zone: 'UTC' });
  const n = Math.round(b.diff(a, 'days').days) + 1;
  if (n < 1) throw new AppError('VALIDATION_FAILED', `to (${to}) is before from (${from})`);
  if (n > maxDays) throw new AppError('VALIDATION_FAILED', `the range ${from}..${to} is longer than ${maxDays} days`);
  return Array.from({ length: n }, (_, i) => a.plus({ days: i }).toISODate()!);
}

/** Retention in days for a shop: its `settings.messageRetentionDays` when it is a sane integer, else the default. */
export function retentionDays(settings: Record<string, unknown> | null | undefined, fallback: number): number {
  const v = settings?.messageRetentionDays;
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 3650 ? v : fallback;
}

/** Delivered over sent, as a fraction rounded to 4 places; null when nothing was sent. */
export function deliveryRate(sent: number, delivered: number): number | null {
  return sent > 0 ? Math.round((delivered / sent) * 10_000) / 10_000 : null;
}
