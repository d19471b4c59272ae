/**
 * Compliance — replies as carriers expect (issue 11, items 3, 4, 5, 7): only START/UNSTOP as the whole message opts
 * back in, and YES only confirms a pending double opt-in; a STOP to a shared sender stops every shop that sends from
 * it; a sender number belongs to one shop; a STOP in any number format is never lost.
 */
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contacts, inboundMessages } from '../../src/db/schema.js';
import { fixture } from '../helpers/webhooks.js';
import { consentUpdate, newShop, nyPhone, paidOrder, SHARED_SENDER, startCompliance, type Compliance } from './harness.js';

let h: Compliance;
beforeAll(async () => {
  h = await startCompliance();
});
afterAll(async () => {
  await h?.close();
});

let seq = 0;
const nextCustomer = () => 93_000_000 + ++seq;

async function contactIn(shop: string, phone: string) {
  const s = await h.shop(shop);
  const rows = await h.sys.db.db.select().from(contacts).where(eq(contacts.phone, phone));
  return rows.find((c) => c.shopId === s.id);
}

/** A shop (quiet hours off) whose customer got an order confirmation from it. */
async function customerOf(shop: string, phone: string, consent?: 'subscribed' | 'pending') {
  const customerId = nextCustomer();
  await h.webhook('orders/paid', paidOrder({ orderId: 8000 + seq, customerId, phone }), { shop });
  await h.api(shop, 'PATCH', '/api/settings', { quietHours: { enabled: false } });
  if (consent) await h.webhook('customers_marketing_consent/update', consentUpdate({ customerId, phone, state: consent, at: new Date(Date.now() - 60_000).toISOString() }), { shop });
  await h.settleMessages(phone);
  return customerId;
}

describe('opting in takes a deliberate word', () => {
  it('"Yes, thanks! Got it" from someone who never consented subscribes nobody and starts nothing', async () => {
    const shop = newShop('yes');
    const phone = nyPhone();
    await customerOf(shop, phone);
    const before = h.received(phone).length;
    for (const text of ['Yes, thanks! Got it', 'YES', 'Start the order over?']) {
      const res = await h.inbound({ from: phone, to: SHARED_SENDER, text, messageId: `m-${seq}-${text.length}` });
      expect(res.status).toBe(200);
      expect(res.body.consentChanged).toBe(false);
    }
    expect(await contactIn(shop, phone)).toMatchObject({ smsConsent: 'not_subscribed' });
    await h.settleMessages(phone);
    expect(h.received(phone)).toHaveLength(before);
  });

  it('YES confirms a pending double opt-in, and only that', async () => {
    const shop = newShop('double');
    const phone = nyPhone();
    await customerOf(shop, phone, 'pending');
    expect(await contactIn(shop, phone)).toMatchObject({ smsConsent: 'pending' });
    const res = await h.inbound({ from: phone, to: SHARED_SENDER, text: 'yes', messageId: `yes-${phone}` });
    expect(res.body).toMatchObject({ result: 'confirmed_opt_in', consentChanged: true });
    expect(await contactIn(shop, phone)).toMatchObject({ smsConsent: 'subscribed', smsConsentOptInLevel: 'confirmed_opt_in', smsConsentSource: 'sms:inbound' });
  });

  it('START from someone who never opted out changes nothing', async () => {
    const shop = newShop('start');
    const phone = nyPhone();
    await customerOf(shop, phone);
    const res = await h.inbound({ from: phone, to: SHARED_SENDER, text: 'START', messageId: `start-${phone}` });
    expect(res.body).toMatchObject({ result: 'start_without_opt_out', consentChanged: false });
    expect(await contactIn(shop, phone)).toMatchObject({ smsConsent: 'not_subscribed' });
  });
});

describe('STOP applies to the sending number', () => {
  it('a STOP to the shared sender stops every shop on it, including one that had not met the person yet', async () => {
    const [a, b, c] = [newShop('shared-a'), newShop('shared-b'), newShop('shared-c')];
    const phone = nyPhone();
    const customerA = await customerOf(a, phone, 'subscribed');
    const customerB = await customerOf(b, phone, 'subscribed');
    const before = h.received(phone).length;

    const res = await h.inbound({ from: phone, to: SHARED_SENDER, text: 'STOP', messageId: `stop-${phone}` });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ result: 'opted_out', consentChanged: true });
    expect([...res.body.shops].sort()).toEqual([a, b].sort());
    expect(await contactIn(a, phone)).toMatchObject({ smsConsent: 'unsubscribed' });
    expect(await contactIn(b, phone)).toMatchObject({ smsConsent: 'unsubscribed' });
    await h.settleMessages(phone);
    const confirmation = h.received(phone).slice(before);
    expect(confirmation.map((m) => m.text)).toEqual([expect.stringMatching(/unsubscribed from all messages from this number/)]);
    expect(confirmation[0]!.from).toBe(SHARED_SENDER);

    // Neither shop, nor a third one on the same number, texts them again.
    await h.webhook('orders/paid', paidOrder({ orderId: 8101, customerId: customerA, phone }), { shop: a });
    await h.webhook('orders/paid', paidOrder({ orderId: 8102, customerId: customerB, phone }), { shop: b });
    await h.webhook('orders/paid', paidOrder({ orderId: 8103, customerId: nextCustomer(), phone }), { shop: c });
    await h.settleMessages(phone);
    expect(h.received(phone)).toHaveLength(before + 1);
  });

  it("a STOP to a shop's own number stops that shop only", async () => {
    const [a, b] = [newShop('own-a'), newShop('own-b')];
    const phone = nyPhone();
    await customerOf(a, phone, 'subscribed');
    const customerB = await customerOf(b, phone, 'subscribed');
    const own = '+41791239001';
    expect((await h.api(a, 'PATCH', '/api/settings', { sender: own })).status).toBe(200);
    const res = await h.inbound({ from: phone, to: own, text: 'STOP', messageId: `own-stop-${phone}` });
    expect(res.body).toMatchObject({ result: 'opted_out', shops: [a] });
    expect(await contactIn(a, phone)).toMatchObject({ smsConsent: 'unsubscribed' });
    expect(await contactIn(b, phone)).toMatchObject({ smsConsent: 'subscribed' });
    await h.settleMessages(phone);
    expect(h.received(phone).at(-1)).toMatchObject({ from: own, text: expect.stringMatching(/unsubscribed and will get no more messages from this number/) });
    const before = h.received(phone).length;
    await h.webhook('orders/paid', paidOrder({ orderId: 8104, customerId: customerB, phone }), { shop: b });
    await h.settleMessages(phone);
    expect(h.received(phone).slice(before).map((m) => m.from)).toEqual([SHARED_SENDER]);
  });
});

describe('a sender number belongs to one shop', () => {
  it("another shop's number, or the platform's shared sender, is refused with SENDER_TAKEN", async () => {
    const [a, b] = [newShop('owner'), newShop('squatter')];
    const number = '+41791239002';
    expect((await h.api(a, 'PATCH', '/api/settings', { sender: '0041791239002' })).body).toMatchObject({ sender: number });
    for (const sender of [number, '41791239002', SHARED_SENDER]) {
      const res = await h.api(b, 'PATCH', '/api/settings', { sender });
      expect(res.status, sender).toBe(409);
      expect(res.body.error).toMatchObject({ code: 'SENDER_TAKEN' });
    }
    // Replies to the number reach its owner only.
    const phone = nyPhone();
    await customerOf(b, phone, 'subscribed');
    const res = await h.inbound({ from: phone, to: number, text: 'STOP', messageId: `owner-${phone}` });
    expect(res.body).toMatchObject({ shopId: a, shops: [a] });
    expect(await contactIn(b, phone)).toMatchObject({ smsConsent: 'subscribed' });
  });
});

describe('nothing is lost on an odd number format', () => {
  it("a STOP from a national number is read with the sender's country and applied", async () => {
    const shop = newShop('de');
    const german = '+4915199990001';
    expect((await h.api(shop, 'PATCH', '/api/settings', { sender: german })).status).toBe(200);
    const phone = '+4915123456789';
    await customerOf(shop, phone, 'subscribed');
    const res = await h.inbound({ from: '015123456789', to: german.slice(1), text: 'Stop', messageId: 'de-stop-1' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ result: 'opted_out', consentChanged: true });
    expect(await contactIn(shop, phone)).toMatchObject({ smsConsent: 'unsubscribed' });
  });

  it('an unreadable sender number is stored and answered 200', async () => {
    const res = await h.inbound({ from: 'not a number', to: SHARED_SENDER, text: 'STOP', messageId: 'odd-1' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ matched: false, result: 'unreadable_number' });
    const [row] = await h.sys.db.db.select().from(inboundMessages).where(eq(inboundMessages.providerMessageId, 'odd-1'));
    expect(row).toMatchObject({ fromRaw: 'not a number', fromPhone: null, text: 'STOP', outcome: 'unreadable_number' });
  });
});

describe('privacy of replies', () => {
  it("customers/redact erases the person's stored replies but keeps their STOP in force", async () => {
    const shop = newShop('redact-replies');
    const phone = nyPhone();
    const customerId = await customerOf(shop, phone, 'subscribed');
    expect((await h.inbound({ from: phone, to: SHARED_SENDER, text: 'STOP', messageId: `redact-stop-${phone}` })).body).toMatchObject({ result: 'opted_out' });
    expect(await h.sys.db.db.select().from(inboundMessages).where(eq(inboundMessages.fromPhone, phone))).toHaveLength(1);
    const redact = { ...fixture('published/customers-redact'), shop_domain: shop, customer: { id: customerId, email: null, phone } };
    await h.webhook('customers/redact', redact, { shop });
    expect(await h.sys.db.db.select().from(inboundMessages).where(eq(inboundMessages.fromPhone, phone))).toHaveLength(0);
    // The number stays suppressed on the sender it stopped: a new order of the same phone is not texted.
    await h.settleMessages(phone);
    const before = h.received(phone).length;
    await h.webhook('orders/paid', paidOrder({ orderId: 8201, customerId: nextCustomer(), phone }), { shop });
    await h.settleMessages(phone);
    expect(h.received(phone)).toHaveLength(before);
  });
});
