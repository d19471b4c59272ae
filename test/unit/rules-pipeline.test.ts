import { describe, it, expect } from 'vitest';
import { evaluateRules, REASON_CODES, RULE_ORDER, type RuleInput } from '../../src/rules/pipeline.js';

const H = 3_600_000;
// 15:00 in New York, 21:00 in Berlin
const NOON_NY = new Date('2024-07-01T19:00:00Z');
const NIGHT_NY = new Date('2024-07-02T03:00:00Z'); // 23:00 EDT

type Overrides = Partial<Omit<RuleInput, 'automation'>> & { automation?: Partial<RuleInput['automation']> };

function input(over: Overrides = {}): RuleInput {
  const { automation, ...rest } = over;
  return {
    now: NOON_NY,
    contact: { smsConsent: 'subscribed', optedOutAt: null, phone: '+12015550123', timezone: 'America/New_York' },
    shopTimezone: 'Europe/Berlin',
    context: { order: { totalPrice: '80.00' } },
    duplicate: false,
    recentSends: [],
    ...rest,
    automation: { enabled: true, transactional: false, ...automation },
  };
}

const outcomes = (d: ReturnType<typeof evaluateRules>) => d.trace.map((t) => `${t.rule}:${t.outcome}`);

describe('evaluateRules', () => {
  it('exports the documented order', () => {
    expect(RULE_ORDER).toEqual(['consent', 'enabled', 'conditions', 'dedupe', 'frequency_cap', 'quiet_hours']);
    expect(REASON_CODES).toContain('frequency_capped');
  });

  it('sends when every rule passes, with a full trace', () => {
    const d = evaluateRules(input());
    expect(d.action).toBe('send');
    expect(outcomes(d)).toEqual([
      'consent:pass',
      'enabled:pass',
      'conditions:pass',
      'dedupe:pass',
      'frequency_cap:pass',
      'quiet_hours:pass',
    ]);
    expect(d.trace[0]?.detail).toBe('marketing consent');
    expect(d.trace[4]?.detail).toBe('0 of 1 in 24h');
    expect(d.trace[5]?.detail).toBe('outside 21:00-08:00 America/New_York (contact)');
  });

  it('consent comes first: an opted-out contact of a disabled automation is reported as opted_out', () => {
    const d = evaluateRules(
      input({ automation: { enabled: false }, contact: { smsConsent: 'unsubscribed', optedOutAt: null, phone: '+1' } }),
    );
    expect(d).toMatchObject({ action: 'skip', reason: 'opted_out' });
    expect(outcomes(d)).toEqual([
      'consent:skip',
      'enabled:not_reached',
      'conditions:not_reached',
      'dedupe:not_reached',
      'frequency_cap:not_reached',
      'quiet_hours:not_reached',
    ]);
  });

  it('marketing needs subscribed; transactional only not opted out', () => {
    const contact = { smsConsent: 'not_subscribed' as const, optedOutAt: null, phone: '+12015550123' };
    expect(evaluateRules(input({ contact }))).toMatchObject({ action: 'skip', reason: 'not_subscribed' });
    expect(evaluateRules(input({ contact, automation: { transactional: true } })).action).toBe('send');
    // a transactional automation configured to require marketing consent
    expect(evaluateRules(input({ contact, automation: { transactional: true, consent: 'marketing' } }))).toMatchObject({
      action: 'skip',
      reason: 'not_subscribed',
    });
  });

  it('skips a disabled automation', () => {
    expect(evaluateRules(input({ automation: { enabled: false } }))).toMatchObject({ action: 'skip', reason: 'disabled' });
  });

  it('applies conditions', () => {
    const conditions = { path: 'order.totalPrice', op: 'gte', value: 100 } as const;
    const d = evaluateRules(input({ automation: { conditions } }));
    expect(d).toMatchObject({ action: 'skip', reason: 'conditions_not_met' });
    expect(outcomes(d).slice(0, 3)).toEqual(['consent:pass', 'enabled:pass', 'conditions:skip']);
    expect(evaluateRules(input({ automation: { conditions: { ...conditions, value: 50 } } })).action).toBe('send');
    expect(evaluateRules(input({ automation: { conditions: null } })).trace[2]).toEqual({
      rule: 'conditions',
      outcome: 'pass',
      detail: 'no conditions',
    });
  });

  it('skips with conditions_invalid rather than throwing on a broken stored condition', () => {
    const broken = { path: 'x', op: 'nope', value: 1 } as never;
    const d = evaluateRules(input({ automation: { conditions: broken } }));
    expect(d).toMatchObject({ action: 'skip', reason: 'conditions_invalid' });
    expect(d.action === 'skip' && d.detail).toMatch(/unknown condition op/);
  });

  it('skips a duplicate', () => {
    expect(evaluateRules(input({ duplicate: true }))).toMatchObject({ action: 'skip', reason: 'duplicate' });
  });

  it('applies the default cap of 1 per 24 h to marketing', () => {
    const recentSends = [NOON_NY.getTime() - 5 * H];
    const d = evaluateRules(input({ recentSends }));
    expect(d).toMatchObject({ action: 'skip', reason: 'frequency_capped' });
    expect(d.action === 'skip' && d.detail).toBe('1 of 1 in 24h; next slot at 2024-07-02T14:00:00.000Z');
    expect(evaluateRules(input({ recentSends: [NOON_NY.getTime() - 25 * H] })).action).toBe('send');
  });

  it('honours a custom cap and no cap', () => {
    const recentSends = [NOON_NY.getTime() - 5 * H];
    expect(evaluateRules(input({ recentSends, automation: { frequencyCap: { max: 2, windowHours: 24 } } })).action).toBe('send');
    expect(evaluateRules(input({ recentSends, automation: { frequencyCap: { max: 1, windowHours: 4 } } })).action).toBe('send');
    expect(evaluateRules(input({ recentSends, automation: { frequencyCap: null } })).action).toBe('send');
  });

  it('exempts transactional automations from the cap', () => {
    const d = evaluateRules(input({ recentSends: [NOON_NY.getTime() - H], automation: { transactional: true } }));
    expect(d.action).toBe('send');
    expect(d.trace[4]).toEqual({ rule: 'frequency_cap', outcome: 'exempt', detail: 'transactional' });
  });

  it('defers marketing in quiet hours to the end of the window, in the contact zone', () => {
    const d = evaluateRules(input({ now: NIGHT_NY }));
    expect(d).toMatchObject({ action: 'defer', reason: 'quiet_hours', until: new Date('2024-07-02T12:00:00Z') });
    expect(d.trace.at(-1)).toEqual({
      rule: 'quiet_hours',
      outcome: 'defer',
      detail: 'inside 21:00-08:00 America/New_York (contact); until 2024-07-02T12:00:00.000Z',
    });
  });

  it('transactional bypasses quiet hours by default; quietHoursBypass overrides both ways', () => {
    expect(evaluateRules(input({ now: NIGHT_NY, automation: { transactional: true } })).action).toBe('send');
    expect(evaluateRules(input({ now: NIGHT_NY, automation: { transactional: true, quietHoursBypass: false } })).action).toBe(
      'defer',
    );
    const d = evaluateRules(input({ now: NIGHT_NY, automation: { quietHoursBypass: true } }));
    expect(d.action).toBe('send');
    expect(d.trace.at(-1)).toEqual({ rule: 'quiet_hours', outcome: 'exempt', detail: 'bypass' });
  });

  it('uses a custom window and can be switched off', () => {
    const now = new Date('2024-07-01T17:30:00Z'); // 13:30 EDT
    expect(evaluateRules(input({ now, automation: { quietHours: { window: { start: '13:00', end: '14:00' } } } }))).toMatchObject({
      action: 'defer',
      until: new Date('2024-07-01T18:00:00Z'),
    });
    expect(evaluateRules(input({ now: NIGHT_NY, automation: { quietHours: { enabled: false } } })).action).toBe('send');
  });

  it('derives the zone from the address, else the shop, else UTC (a phone that tells nothing)', () => {
    const at = new Date('2024-07-01T21:30:00Z'); // 23:30 Berlin, 17:30 New York, 14:30 Los Angeles, 21:30 UTC
    const base = { smsConsent: 'subscribed' as const, optedOutAt: null, phone: '+1' };
    const byAddress = evaluateRules(input({ now: at, contact: { ...base, countryCode: 'US', provinceCode: 'CA' } }));
    expect(byAddress.action).toBe('send');
    expect(byAddress.trace.at(-1)?.detail).toBe('outside 21:00-08:00 America/Los_Angeles (address)');

    const byShop = evaluateRules(input({ now: at, contact: base }));
    expect(byShop).toMatchObject({ action: 'defer', until: new Date('2024-07-02T06:00:00Z') });
    expect(byShop.trace.at(-1)?.detail).toMatch(/Europe\/Berlin \(shop\)/);

    const byDefault = evaluateRules(input({ now: at, contact: base, shopTimezone: null }));
    expect(byDefault).toMatchObject({ action: 'defer', until: new Date('2024-07-02T08:00:00Z') });
    expect(byDefault.trace.at(-1)?.detail).toMatch(/UTC \(default\)/);
  });

  it('an invalid contact zone falls through to the shop zone', () => {
    const d = evaluateRules(input({ now: NIGHT_NY, contact: { smsConsent: 'subscribed', optedOutAt: null, phone: '+1', timezone: 'Bad/Zone' } }));
    // 03:00Z is 05:00 in Berlin: deferred to 08:00 CEST
    expect(d).toMatchObject({ action: 'defer', until: new Date('2024-07-02T06:00:00Z') });
  });

  it('the cap is checked before quiet hours: a capped message at night is skipped, not deferred', () => {
    const d = evaluateRules(input({ now: NIGHT_NY, recentSends: [NIGHT_NY.getTime() - H] }));
    expect(d).toMatchObject({ action: 'skip', reason: 'frequency_capped' });
    expect(d.trace.at(-1)).toEqual({ rule: 'quiet_hours', outcome: 'not_reached' });
  });

  it('a skip carries no detail key when the rule gave none', () => {
    const d = evaluateRules(input({ automation: { enabled: false } }));
    expect(d).toEqual({ action: 'skip', reason: 'disabled', trace: expect.any(Array) });
    expect('detail' in d).toBe(false);
  });
});
