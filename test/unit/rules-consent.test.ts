import { describe, it, expect } from 'vitest';
import { checkConsent, decideConsent, optedOutAtAfter, type ConsentContact, type StoredConsent } from '../../src/rules/consent.js';

const contact = (over: Partial<ConsentContact> = {}): ConsentContact => ({
  smsConsent: 'subscribed',
  optedOutAt: null,
  phone: '+12015550123',
  ...over,
});

describe('checkConsent: marketing', () => {
  it('allows a subscribed contact with a phone', () => {
    expect(checkConsent(contact(), 'marketing')).toEqual({ allowed: true });
  });

  it.each(['not_subscribed', 'pending'] as const)('rejects state %s as not_subscribed', (state) => {
    const r = checkConsent(contact({ smsConsent: state }), 'marketing');
    expect(r).toEqual({ allowed: false, reason: 'not_subscribed', detail: `consent state is ${state}` });
  });

  it('rejects unsubscribed as opted_out', () => {
    expect(checkConsent(contact({ smsConsent: 'unsubscribed' }), 'marketing')).toMatchObject({ allowed: false, reason: 'opted_out' });
  });

  it('rejects a subscribed contact that has an opt-out time (STOP not yet reflected in the state)', () => {
    const r = checkConsent(contact({ optedOutAt: new Date('2024-05-01T10:00:00Z') }), 'marketing');
    expect(r).toEqual({ allowed: false, reason: 'opted_out', detail: 'opted out at 2024-05-01T10:00:00.000Z' });
  });

  it('rejects redacted', () => {
    expect(checkConsent(contact({ smsConsent: 'redacted', phone: null }), 'marketing')).toMatchObject({ reason: 'redacted' });
  });

  it.each([null, '', '   '])('rejects a missing phone %j', (phone) => {
    expect(checkConsent(contact({ phone }), 'marketing')).toEqual({ allowed: false, reason: 'no_phone' });
  });
});

describe('checkConsent: transactional', () => {
  it.each(['subscribed', 'not_subscribed', 'pending'] as const)('allows state %s when not opted out', (state) => {
    expect(checkConsent(contact({ smsConsent: state }), 'transactional')).toEqual({ allowed: true });
  });

  it('rejects unsubscribed and an opt-out time', () => {
    expect(checkConsent(contact({ smsConsent: 'unsubscribed' }), 'transactional')).toMatchObject({ reason: 'opted_out' });
    expect(checkConsent(contact({ smsConsent: 'not_subscribed', optedOutAt: new Date(0) }), 'transactional')).toMatchObject({
      reason: 'opted_out',
    });
  });

  it('rejects redacted and missing phone', () => {
    expect(checkConsent(contact({ smsConsent: 'redacted' }), 'transactional')).toMatchObject({ reason: 'redacted' });
    expect(checkConsent(contact({ smsConsent: 'not_subscribed', phone: null }), 'transactional')).toMatchObject({ reason: 'no_phone' });
  });
});

describe('checkConsent: reason precedence', () => {
  it('redacted beats opted_out beats no_phone beats not_subscribed', () => {
    expect(checkConsent({ smsConsent: 'redacted', optedOutAt: new Date(0), phone: null }, 'marketing')).toMatchObject({ reason: 'redacted' });
    expect(checkConsent({ smsConsent: 'unsubscribed', optedOutAt: null, phone: null }, 'marketing')).toMatchObject({ reason: 'opted_out' });
    expect(checkConsent({ smsConsent: 'pending', optedOutAt: null, phone: null }, 'marketing')).toMatchObject({ reason: 'no_phone' });
  });
});

describe('decideConsent: the ledger\'s precedence', () => {
  const NOW = new Date('2026-03-01T12:00:00Z');
  const T = (iso: string) => new Date(iso);
  const optedOut: StoredConsent = { smsConsent: 'unsubscribed', smsConsentUpdatedAt: T('2026-02-10T00:00:00Z'), optedOutAt: T('2026-02-10T00:00:00Z') };
  const subscribed: StoredConsent = { smsConsent: 'subscribed', smsConsentUpdatedAt: T('2026-02-01T00:00:00Z'), optedOutAt: null };

  it.each(['subscribed', 'not_subscribed', 'pending'] as const)('an import or merchant edit to %s cannot undo an opt-out', (state) => {
    expect(decideConsent(optedOut, { state, origin: 'merchant', at: null }, NOW)).toEqual({ action: 'refuse', reason: 'opted_out' });
  });

  it('an opt-out that came as not_subscribed later still stands (opted_out_at kept)', () => {
    const c = { smsConsent: 'not_subscribed' as const, smsConsentUpdatedAt: T('2026-02-11T00:00:00Z'), optedOutAt: T('2026-02-10T00:00:00Z') };
    expect(decideConsent(c, { state: 'subscribed', origin: 'merchant', at: null }, NOW)).toEqual({ action: 'refuse', reason: 'opted_out' });
  });

  it('a merchant may withdraw consent, and add it for someone who never opted out', () => {
    expect(decideConsent(subscribed, { state: 'unsubscribed', origin: 'merchant', at: null }, NOW)).toEqual({ action: 'apply', at: NOW });
    const never: StoredConsent = { smsConsent: 'not_subscribed', smsConsentUpdatedAt: null, optedOutAt: null };
    expect(decideConsent(never, { state: 'subscribed', origin: 'merchant', at: null }, NOW)).toEqual({ action: 'apply', at: NOW });
  });

  it('Shopify lifts an opt-out only with a record of its own newer than the opt-out', () => {
    expect(decideConsent(optedOut, { state: 'subscribed', origin: 'shopify', at: T('2026-02-09T00:00:00Z') }, NOW)).toEqual({ action: 'ignore', why: 'stale' });
    expect(decideConsent(optedOut, { state: 'subscribed', origin: 'shopify', at: T('2026-02-10T00:00:00Z') }, NOW)).toEqual({ action: 'ignore', why: 'stale' });
    expect(decideConsent(optedOut, { state: 'subscribed', origin: 'shopify', at: T('2026-02-20T00:00:00Z') }, NOW)).toEqual({
      action: 'apply',
      at: T('2026-02-20T00:00:00Z'),
    });
  });

  it('the person\'s own word always applies, after anything stored', () => {
    expect(decideConsent(optedOut, { state: 'subscribed', origin: 'customer', at: null }, NOW)).toEqual({ action: 'apply', at: NOW });
    const ahead: StoredConsent = { ...subscribed, smsConsentUpdatedAt: T('2026-03-01T12:05:00Z') };
    expect(decideConsent(ahead, { state: 'unsubscribed', origin: 'customer', at: null }, NOW)).toEqual({ action: 'apply', at: T('2026-03-01T12:05:00.001Z') });
  });

  it('a Shopify time in the future is taken as now, so it cannot shadow later changes', () => {
    expect(decideConsent(null, { state: 'subscribed', origin: 'shopify', at: T('+200000-01-01T00:00:00Z') }, NOW)).toEqual({ action: 'apply', at: NOW });
  });

  it('a redacted contact changes only by the person\'s own word', () => {
    const redacted: StoredConsent = { smsConsent: 'redacted', smsConsentUpdatedAt: T('2026-02-01T00:00:00Z'), optedOutAt: null };
    expect(decideConsent(redacted, { state: 'subscribed', origin: 'shopify', at: NOW }, NOW)).toEqual({ action: 'refuse', reason: 'redacted' });
    expect(decideConsent(redacted, { state: 'subscribed', origin: 'merchant', at: null }, NOW)).toEqual({ action: 'refuse', reason: 'redacted' });
  });

  it('the same state later only moves the time; the same state at the same time is unchanged', () => {
    expect(decideConsent(subscribed, { state: 'subscribed', origin: 'shopify', at: T('2026-02-05T00:00:00Z') }, NOW)).toEqual({
      action: 'confirm',
      at: T('2026-02-05T00:00:00Z'),
    });
    expect(decideConsent(subscribed, { state: 'subscribed', origin: 'shopify', at: T('2026-02-01T00:00:00Z') }, NOW)).toEqual({ action: 'ignore', why: 'unchanged' });
  });

  it('opted_out_at: set by an opt-out, lifted only by an opt-in', () => {
    const at = T('2026-02-20T00:00:00Z');
    expect(optedOutAtAfter(subscribed, 'unsubscribed', at)).toEqual(at);
    expect(optedOutAtAfter(optedOut, 'subscribed', at)).toBeNull();
    expect(optedOutAtAfter(optedOut, 'not_subscribed', at)).toEqual(optedOut.optedOutAt);
  });
});
