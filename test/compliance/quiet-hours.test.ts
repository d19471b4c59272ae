/**
 * Compliance — quiet hours follow the recipient's zone (issue 11, item 8): address, then the phone's North American
 * area code, then the shop's zone from `shop/update`; a country spanning several zones with no better hint waits for
 * the window allowed in all of them.
 */
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quietHoursDecision } from '../../src/rules/quietHours.js';
import { fixture } from '../helpers/webhooks.js';
import { consentUpdate, newShop, nyPhone, paidOrder, startCompliance, type Compliance } from './harness.js';

let h: Compliance;
beforeAll(async () => {
  h = await startCompliance();
});
afterAll(async () => {
  await h?.close();
});

describe("quiet hours in the recipient's zone", () => {
  /** 16:30 in New York on a summer day: outside quiet hours there, inside them in UTC. */
  const AFTERNOON_NY = DateTime.fromISO('2026-07-01T16:30', { zone: 'America/New_York' }).toUTC().toISO()!;

  it('a US contact without a province is placed by the area code: a welcome at 16:30 New York goes out then', async () => {
    const shop = newShop('area');
    const phone = nyPhone();
    const body = consentUpdate({ customerId: 94_000_001, phone, state: 'subscribed', at: '2026-07-01T20:00:00Z' });
    const res = await h.api(shop, 'POST', '/api/automations/simulate', { topic: 'customers_marketing_consent/update', payload: body, at: AFTERNOON_NY });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const welcome = res.body.automations.find((a: { trigger: string }) => a.trigger === 'welcome');
    expect(welcome).toMatchObject({ decision: 'send', deferredUntil: null });
    expect(welcome.trace.at(-1)).toMatchObject({ rule: 'quiet_hours', outcome: 'pass', detail: expect.stringContaining('America/New_York (phone)') });
  });

  it('through the real pipeline, the welcome is held (or not) by New York time, never by UTC', async () => {
    const shop = newShop('area-e2e');
    const phone = nyPhone();
    await h.webhook('orders/paid', paidOrder({ orderId: 9001, customerId: 94_000_002, phone, province: null }), { shop });
    const now = new Date();
    await h.webhook('customers_marketing_consent/update', consentUpdate({ customerId: 94_000_002, phone, state: 'subscribed', at: now.toISOString() }), { shop });
    const [welcome] = (await h.messagesTo(phone)).filter((m) => m.trigger === 'welcome');
    const ny = quietHoursDecision({ now, timezone: 'America/New_York', enabled: true });
    if (ny.allowed) expect(welcome!.scheduledFor).toBeNull();
    else expect(Math.abs(welcome!.scheduledFor!.getTime() - ny.deferUntil.getTime())).toBeLessThan(60_000);
  });

  it("with no hint from the contact, the shop's zone from shop/update decides", async () => {
    const shop = newShop('shopzone');
    await h.webhook('shop/update', { ...fixture('published/shop-update'), iana_timezone: 'America/Chicago' }, { shop });
    // A toll-free number says nothing about where its owner is.
    const body = consentUpdate({ customerId: 94_000_003, phone: '+18005550199', state: 'subscribed', at: '2026-07-01T20:00:00Z' });
    const late = DateTime.fromISO('2026-07-01T22:30', { zone: 'America/Chicago' }).toUTC().toISO()!;
    const res = await h.api(shop, 'POST', '/api/automations/simulate', { topic: 'customers_marketing_consent/update', payload: body, at: late });
    const welcome = res.body.automations.find((a: { trigger: string }) => a.trigger === 'welcome');
    expect(welcome).toMatchObject({ decision: 'defer', deferredUntil: DateTime.fromISO('2026-07-02T08:00', { zone: 'America/Chicago' }).toUTC().toISO() });
    expect(welcome.trace.at(-1).detail).toContain('America/Chicago (shop)');
  });

  it('a US contact with no usable hint waits for the window allowed in every US zone', async () => {
    const shop = newShop('allzones');
    const body = { ...consentUpdate({ customerId: 94_000_004, phone: '+18005550198', state: 'subscribed', at: '2026-07-01T12:00:00Z' }) };
    // 08:30 New York is 02:30 in Honolulu: held until 08:00 Honolulu (14:00 New York).
    const early = DateTime.fromISO('2026-07-01T08:30', { zone: 'America/New_York' }).toUTC().toISO()!;
    await h.webhook('orders/paid', paidOrder({ orderId: 9002, customerId: 94_000_004, phone: '+18005550198', province: null }), { shop });
    const res = await h.api(shop, 'POST', '/api/automations/simulate', { topic: 'customers_marketing_consent/update', payload: body, at: early });
    const welcome = res.body.automations.find((a: { trigger: string }) => a.trigger === 'welcome');
    expect(welcome).toMatchObject({ decision: 'defer', deferredUntil: DateTime.fromISO('2026-07-01T08:00', { zone: 'Pacific/Honolulu' }).toUTC().toISO() });
    expect(welcome.trace.at(-1).detail).toContain('(country)');
  });
});
