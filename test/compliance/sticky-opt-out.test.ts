/**
 * Compliance — an opt-out is sticky (issue 11, item 2). After a STOP, neither a CSV import, nor a merchant's edit,
 * nor a checkout begun before the STOP can opt the person back in; only their own later word can (START, or a
 * Shopify consent whose own time is later).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consentUpdate, newShop, nyPhone, paidOrder, SHARED_SENDER, smsCheckout, startCompliance, type Compliance } from './harness.js';

let h: Compliance;
beforeAll(async () => {
  h = await startCompliance();
});
afterAll(async () => {
  await h?.close();
});

let seq = 0;
/** A subscribed customer of a new shop (quiet hours off), texted once (welcome), who then replied STOP. */
async function optedOutCustomer() {
  const shop = newShop('sticky');
  const phone = nyPhone();
  const customerId = 92_000_000 + ++seq;
  await h.webhook('customers_marketing_consent/update', consentUpdate({ customerId, phone, state: 'subscribed', at: new Date(Date.now() - 3_600_000).toISOString() }), { shop });
  await h.api(shop, 'PATCH', '/api/settings', { quietHours: { enabled: false } });
  await h.webhook('orders/paid', paidOrder({ orderId: 6000 + seq, customerId, phone }), { shop });
  await h.settleMessages(phone);
  const stop = await h.inbound({ from: phone, to: SHARED_SENDER, text: 'STOP', messageId: `stop-${phone}` });
  expect(stop.body).toMatchObject({ result: 'opted_out', consentChanged: true });
  await h.settleMessages(phone);
  // The STOP's confirmation is the last message they get.
  const texts = h.received(phone).map((m) => m.text);
  expect(texts.at(-1)).toMatch(/unsubscribed/);
  const list = await h.api(shop, 'GET', `/api/contacts?q=${encodeURIComponent(phone.slice(-7))}`);
  const contact = list.body.items[0] as { id: number };
  return { shop, phone, customerId, contactId: contact.id, sent: texts.length };
}

async function consentOf(shop: string, contactId: number) {
  return (await h.api(shop, 'GET', `/api/contacts/${contactId}`)).body.contact as { smsConsent: string; optedOutAt: string | null };
}

/** A transactional message that would reach any contact who is not opted out. */
async function expectNothingMoreAfterAnOrder(c: Awaited<ReturnType<typeof optedOutCustomer>>, orderId: number) {
  await h.webhook('orders/paid', paidOrder({ orderId, customerId: c.customerId, phone: c.phone }), { shop: c.shop });
  await h.settleMessages(c.phone);
  expect(h.received(c.phone)).toHaveLength(c.sent);
}

describe('an opt-out cannot be undone by the merchant', () => {
  it('a CSV import with consent=subscribed keeps the row but refuses its consent, and says why', async () => {
    const c = await optedOutCustomer();
    const csv = `phone,first_name,consent\n${c.phone},Ada,subscribed\n${nyPhone()},Bob,subscribed\n`;
    const res = await h.api(c.shop, 'POST', '/api/contacts/import', csv, 'text/csv');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ imported: 2, errors: [] });
    expect(res.body.consentRefused).toEqual([{ line: 2, reason: expect.stringMatching(/^consent: the contact opted out/) }]);
    expect(await consentOf(c.shop, c.contactId)).toMatchObject({ smsConsent: 'unsubscribed' });
    await expectNothingMoreAfterAnOrder(c, 7001);
  });

  it('POST /api/contacts/:id/consent subscribed answers 409 CONSENT_LOCKED and changes nothing', async () => {
    const c = await optedOutCustomer();
    for (const state of ['subscribed', 'not_subscribed']) {
      const res = await h.api(c.shop, 'POST', `/api/contacts/${c.contactId}/consent`, { state });
      expect(res.status).toBe(409);
      expect(res.body.error).toMatchObject({ code: 'CONSENT_LOCKED' });
      expect(res.body.error.message).toMatch(/^state: /);
    }
    expect(await consentOf(c.shop, c.contactId)).toMatchObject({ smsConsent: 'unsubscribed' });
    await expectNothingMoreAfterAnOrder(c, 7002);
  });

  it('a checkouts/update of a checkout begun before the STOP, SMS box ticked, is no new opt-in', async () => {
    const c = await optedOutCustomer();
    const begun = new Date(Date.now() - 30 * 60_000).toISOString();
    const checkout = smsCheckout({ token: `tok-${c.phone.slice(-6)}`, phone: c.phone, createdAt: begun, updatedAt: new Date().toISOString(), customerId: c.customerId });
    await h.webhook('checkouts/update', checkout, { shop: c.shop });
    expect(await consentOf(c.shop, c.contactId)).toMatchObject({ smsConsent: 'unsubscribed' });
    await expectNothingMoreAfterAnOrder(c, 7003);
  });
});

describe("only the person's own later word lifts it", () => {
  it('START re-subscribes (confirmed) and messages flow again', async () => {
    const c = await optedOutCustomer();
    const res = await h.inbound({ from: c.phone, to: SHARED_SENDER, text: 'START', messageId: `start-${c.phone}` });
    expect(res.body).toMatchObject({ result: 'opted_in', consentChanged: true });
    expect(await consentOf(c.shop, c.contactId)).toMatchObject({ smsConsent: 'subscribed', optedOutAt: null });
    await h.webhook('orders/paid', paidOrder({ orderId: 7004, customerId: c.customerId, phone: c.phone }), { shop: c.shop });
    await h.settleMessages(c.phone);
    const after = h.received(c.phone).slice(c.sent).map((m) => m.text);
    expect(after).toEqual([expect.stringMatching(/resubscribed/), expect.stringMatching(/Thanks for your order #7004/)]);
  });

  it('a Shopify consent record newer than the STOP re-subscribes; an older one does not', async () => {
    const c = await optedOutCustomer();
    await h.webhook('customers_marketing_consent/update', consentUpdate({ customerId: c.customerId, phone: c.phone, state: 'subscribed', at: new Date(Date.now() - 600_000).toISOString() }), {
      shop: c.shop,
    });
    expect(await consentOf(c.shop, c.contactId)).toMatchObject({ smsConsent: 'unsubscribed' });
    await h.webhook('customers_marketing_consent/update', consentUpdate({ customerId: c.customerId, phone: c.phone, state: 'subscribed', at: new Date().toISOString() }), {
      shop: c.shop,
    });
    expect(await consentOf(c.shop, c.contactId)).toMatchObject({ smsConsent: 'subscribed', optedOutAt: null });
    // Opted in again by their own later act: messages go out again from the number they had stopped (the welcome
    // was sent once already, at the first subscription).
    await h.webhook('orders/paid', paidOrder({ orderId: 7005, customerId: c.customerId, phone: c.phone }), { shop: c.shop });
    await h.settleMessages(c.phone);
    expect(h.received(c.phone).slice(c.sent).map((m) => m.text)).toEqual([expect.stringMatching(/Thanks for your order #7005/)]);
  });
});
