import { describe, expect, it } from 'vitest';
import { dayWindow, daysBetween, daysToRollUp, deliveryRate, effectiveZone, localDay, parseDay, retentionDays } from '../../src/housekeeping/days.js';
import { HOUSEKEEPING_SCHEDULES } from '../../src/housekeeping/schedules.js';
import { HOUSEKEEPING_TASKS, isHousekeepingTask } from '../../src/housekeeping/tasks.js';
import { customerRefFrom } from '../../src/privacy/requests.js';

describe('days in a shop time zone', () => {
  it('a day in UTC is midnight to midnight', () => {
    expect(dayWindow('2025-03-10', 'UTC')).toEqual({ start: new Date('2025-03-10T00:00:00Z'), end: new Date('2025-03-11T00:00:00Z') });
  });

  it('a day in New York starts at local midnight (UTC-5 in winter, UTC-4 in summer)', () => {
    expect(dayWindow('2025-01-15', 'America/New_York')).toEqual({ start: new Date('2025-01-15T05:00:00Z'), end: new Date('2025-01-16T05:00:00Z') });
    expect(dayWindow('2025-07-15', 'America/New_York')).toEqual({ start: new Date('2025-07-15T04:00:00Z'), end: new Date('2025-07-16T04:00:00Z') });
  });

  it('the spring-forward day lasts 23 hours and the fall-back day 25', () => {
    const spring = dayWindow('2025-03-09', 'America/New_York');
    expect((spring.end.getTime() - spring.start.getTime()) / 3_600_000).toBe(23);
    const fall = dayWindow('2025-11-02', 'America/New_York');
    expect((fall.end.getTime() - fall.start.getTime()) / 3_600_000).toBe(25);
    const berlin = dayWindow('2025-03-30', 'Europe/Berlin');
    expect((berlin.end.getTime() - berlin.start.getTime()) / 3_600_000).toBe(23);
  });

  it('an instant belongs to the local day, not the UTC one', () => {
    const at = new Date('2025-06-01T02:30:00Z');
    expect(localDay(at, 'UTC')).toBe('2025-06-01');
    expect(localDay(at, 'America/Los_Angeles')).toBe('2025-05-31');
    expect(localDay(new Date('2025-06-01T22:30:00Z'), 'Asia/Tokyo')).toBe('2025-06-02');
  });

  it('consecutive day windows tile time with no gap and no overlap', () => {
    const days = daysBetween('2025-10-30', '2025-11-04');
    for (let i = 1; i < days.length; i++) {
      expect(dayWindow(days[i]!, 'America/New_York').start).toEqual(dayWindow(days[i - 1]!, 'America/New_York').end);
    }
  });

  it('an unknown time zone counts in UTC instead of failing', () => {
    expect(effectiveZone('Mars/Olympus_Mons')).toBe('UTC');
    expect(effectiveZone(null)).toBe('UTC');
    expect(dayWindow('2025-03-10', 'Mars/Olympus_Mons').start).toEqual(new Date('2025-03-10T00:00:00Z'));
  });

  it('a scheduled rollup recomputes yesterday and today in the shop zone', () => {
    const now = new Date('2025-06-01T03:00:00Z');
    expect(daysToRollUp(now, 'UTC')).toEqual(['2025-05-31', '2025-06-01']);
    expect(daysToRollUp(now, 'America/New_York')).toEqual(['2025-05-30', '2025-05-31']);
  });

  it('dates are parsed strictly and ranges are checked', () => {
    expect(parseDay('2024-02-29')).toBe('2024-02-29');
    for (const bad of ['2025-02-29', '2025-13-01', '2025-1-01', 'yesterday', '']) {
      expect(() => parseDay(bad)).toThrow(expect.objectContaining({ code: 'VALIDATION_FAILED' }));
    }
    expect(daysBetween('2025-02-27', '2025-03-02')).toEqual(['2025-02-27', '2025-02-28', '2025-03-01', '2025-03-02']);
    expect(() => daysBetween('2025-03-02', '2025-03-01')).toThrow(expect.objectContaining({ code: 'VALIDATION_FAILED' }));
    expect(() => daysBetween('2024-01-01', '2025-06-01')).toThrow(/longer than 366 days/);
  });
});

describe('housekeeping rules', () => {
  it('retention comes from the shop settings only when sane', () => {
    expect(retentionDays({ messageRetentionDays: 30 }, 90)).toBe(30);
    expect(retentionDays({ messageRetentionDays: '30' }, 90)).toBe(90);
    expect(retentionDays({ messageRetentionDays: 0 }, 90)).toBe(90);
    expect(retentionDays({ messageRetentionDays: 1.5 }, 90)).toBe(90);
    expect(retentionDays({}, 90)).toBe(90);
    expect(retentionDays(null, 45)).toBe(45);
  });

  it('delivery rate is delivered over sent, null when nothing was sent', () => {
    expect(deliveryRate(0, 0)).toBeNull();
    expect(deliveryRate(3, 2)).toBe(0.6667);
    expect(deliveryRate(4, 4)).toBe(1);
  });

  it('every task has a schedule, and only known tasks are tasks', () => {
    expect(Object.keys(HOUSEKEEPING_SCHEDULES).sort()).toEqual([...HOUSEKEEPING_TASKS].sort());
    expect(HOUSEKEEPING_SCHEDULES.reconcile).toBe('*/5 * * * *');
    expect(HOUSEKEEPING_SCHEDULES.retry_failed_messages).toBe('*/15 * * * *');
    expect(isHousekeepingTask('rollup_reports')).toBe(true);
    expect(isHousekeepingTask('drop_everything')).toBe(false);
  });

  it('a privacy payload names the customer and the orders', () => {
    expect(customerRefFrom({ customer: { id: 72, email: 'a@example.com', phone: '+14155552671' }, orders_to_redact: [1, 2, 2] })).toEqual({
      customerId: '72',
      email: 'a@example.com',
      phone: '+14155552671',
      orderIds: ['1', '2'],
    });
    expect(customerRefFrom({ shop_id: 1 })).toEqual({ customerId: null, email: null, phone: null, orderIds: [] });
  });
});
