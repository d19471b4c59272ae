import { describe, it, expect } from 'vitest';
import { checkConsent, type ConsentContact } from '../../src/rules/consent.js';

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
