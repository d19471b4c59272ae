/**
 * Callbacks from the SMS provider through the real HTTP app (`app.inject()`), on a real database and Redis:
 * delivery reports (auth, unknown ids, idempotency, order, GET/POST/form) and inbound messages (STOP/START/HELP scoped
 * to the shop whose number the customer wrote to, consent history, the HELP auto-reply sent through the sandbox).
 */
import { createHmac } from 'node:crypto';
import { Writable } from 'node:stream';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { getContact, listConsentChanges } from '../../src/db/contacts.js';
import { claimForSending, markFailed, markSent } from '../../src/db/messages.js';
import { contacts, inboundMessages, messages as messagesTable, shops, type Message } from '../../src/db/schema.js';
import { createLogger } from '../../src/logger.js';
import type { Sandbox } from '../../src/sandbox/server.js';
import { messageRow, messagesOfShop, seedContact, seedMessage, uniquePhone, uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';

const DLR_TOKEN = 'callbacks-test-dlr-token-0123456789';
const HMAC_SECRET = 'callbacks-test-hmac-secret-0123456789';
const dlrUrl = (token: string | null = DLR_TOKEN, query = '') => `/webhooks/mitto/dlr${token === null ? '' : `?token=${encodeURIComponent(token)}`}${query}`;
const inboundUrl = `/webhooks/mitto/inbound?token=${DLR_TOKEN}`;

let providerSeq = 0;

/** A message the provider accepted: `sent`, with a provider message id. */
async function sentMessage(sys: TestSystem): Promise<{ message: Message; providerId: string }> {
  const { message } = await seedMessage(sys.db.db);
  const providerId = `prov-${Date.now().toString(36)}-${++providerSeq}`;
  expect(await claimForSending(sys.db.db, message.id, 'mitto')).toBe(true);
  await markSent(sys.db.db, message.id, providerId, new Date());
  return { message: await messageRow(sys.db.db, message.id), providerId };
}

describe.each(DB_KINDS)('provider callbacks on %s', (kind) => {
  let sys: TestSystem;
  let sandbox: Sandbox;

  beforeAll(async () => {
    // Delivery runs too: the HELP auto-reply must really go out through the sandbox.
    sys = await startTestSystem(kind, { workers: ['delivery'], listen: true, env: { SMS_PROVIDER: 'sandbox', DLR_TOKEN } });
    sandbox = sys.sandbox!;
  });
  afterEach(() => sandbox.reset());
  afterAll(async () => {
    await sys?.teardown();
  });

  const postDlr = (payload: Record<string, unknown>, token: string | null = DLR_TOKEN) =>
    sys.app!.inject({ method: 'POST', url: dlrUrl(token), payload });

  describe('delivery reports', () => {
    it('refuse a request without the token or with a wrong one (401), and change nothing', async () => {
      const { message, providerId } = await sentMessage(sys);
      for (const token of [null, '', 'wrong-token-0123456789abcdef', `${DLR_TOKEN}x`]) {
        const res = await postDlr({ id: providerId, status: 'delivered' }, token);
        expect(res.statusCode, `token ${String(token)}`).toBe(401);
        expect(res.json()).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
      }
      const get = await sys.app!.inject({ method: 'GET', url: `/webhooks/mitto/dlr?id=${providerId}&status=delivered` });
      expect(get.statusCode).toBe(401);
      expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'sent' });
    });

    it('answer 404 for a report that matches no message', async () => {
      const res = await postDlr({ id: 'no-such-provider-id', reference: '987654321', status: 'delivered' });
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    });

    it('answer 400 naming the field for a report without a status', async () => {
      const { providerId } = await sentMessage(sys);
      const res = await postDlr({ id: providerId });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: { code: 'VALIDATION_FAILED', details: { field: 'status' } } });
    });

    it('are idempotent: the same report twice changes the message once', async () => {
      const { message, providerId } = await sentMessage(sys);
      const first = await postDlr({ id: providerId, reference: String(message.id), status: 'delivered' });
      expect(first.statusCode, first.body).toBe(200);
      expect(first.json()).toEqual({ ok: true, messageId: message.id, status: 'delivered', changed: true });
      const deliveredAt = (await messageRow(sys.db.db, message.id)).deliveredAt;
      expect(deliveredAt).toBeInstanceOf(Date);

      const second = await postDlr({ id: providerId, reference: String(message.id), status: 'delivered' });
      expect(second.json()).toEqual({ ok: true, messageId: message.id, status: 'delivered', changed: false });
      expect((await messageRow(sys.db.db, message.id)).deliveredAt).toEqual(deliveredAt);
    });

    it('never move a message backwards: a late failed after delivered leaves it delivered', async () => {
      const { message, providerId } = await sentMessage(sys);
      expect((await postDlr({ id: providerId, status: 'DELIVRD' })).json()).toMatchObject({ status: 'delivered', changed: true });
      const late = await postDlr({ id: providerId, status: 'UNDELIV', errorCode: '1' });
      expect(late.statusCode).toBe(200);
      expect(late.json()).toMatchObject({ status: 'delivered', changed: false });
      expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'delivered', errorCode: null });
    });

    it('let delivered override an earlier failed (delivered is final, failed is not)', async () => {
      const { message, providerId } = await sentMessage(sys);
      expect((await postDlr({ id: providerId, status: 'failed', errorCode: 'EXPIRED' })).json()).toMatchObject({ status: 'failed', changed: true });
      expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'failed', errorCode: 'EXPIRED' });
      expect((await postDlr({ id: providerId, status: 'delivered' })).json()).toMatchObject({ status: 'delivered', changed: true });
      const row = await messageRow(sys.db.db, message.id);
      expect(row).toMatchObject({ status: 'delivered', errorCode: null });
      expect(row.deliveredAt).toBeInstanceOf(Date);
    });

    it('a pending report neither regresses a sent message nor settles it', async () => {
      const { message, providerId } = await sentMessage(sys);
      expect((await postDlr({ id: providerId, status: 'ENROUTE' })).json()).toMatchObject({ status: 'sent', changed: false });
      expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'sent', deliveredAt: null });
    });

    it.each([
      { reported: 'UNDELIV', errorCode: 'EXPIRED', expected: { status: 'failed', errorCode: 'EXPIRED' } },
      { reported: 'ENROUTE', errorCode: undefined, expected: { status: 'sent', errorCode: null, failedAt: null } },
      { reported: 'DELIVRD', errorCode: undefined, expected: { status: 'delivered', errorCode: null } },
    ])('a late $reported report settles a message failed as DELIVERY_UNCONFIRMED', async ({ reported, errorCode, expected }) => {
      const { message } = await seedMessage(sys.db.db);
      await claimForSending(sys.db.db, message.id, 'mitto');
      await markFailed(sys.db.db, message.id, { code: 'DELIVERY_UNCONFIRMED', text: 'no delivery report' });
      const res = await postDlr({ id: `prov-late-${message.id}`, reference: String(message.id), status: reported, ...(errorCode ? { errorCode } : {}) });
      expect(res.json()).toMatchObject({ status: expected.status, changed: true });
      expect(await messageRow(sys.db.db, message.id)).toMatchObject({ ...expected, providerMessageId: `prov-late-${message.id}` });
    });

    it('a failed report does not touch a message failed for another reason', async () => {
      const { message } = await seedMessage(sys.db.db);
      await claimForSending(sys.db.db, message.id, 'mitto');
      await markFailed(sys.db.db, message.id, { code: 'MITTO_INVALID_RECEIVER', text: 'rejected' });
      expect((await postDlr({ reference: String(message.id), status: 'failed', errorCode: 'X' })).json()).toMatchObject({ status: 'failed', changed: false });
      expect(await messageRow(sys.db.db, message.id)).toMatchObject({ errorCode: 'MITTO_INVALID_RECEIVER' });
    });

    it('are read from a GET query string, the reference alone being enough (the ref our callback URL carries)', async () => {
      const { message } = await sentMessage(sys);
      const res = await sys.app!.inject({ method: 'GET', url: dlrUrl(DLR_TOKEN, `&ref=${message.id}&status=DELIVRD&doneDate=2501021530`) });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toEqual({ ok: true, messageId: message.id, status: 'delivered', changed: true });
      expect((await messageRow(sys.db.db, message.id)).deliveredAt).toEqual(new Date('2025-01-02T15:30:00Z'));
    });

    it('are read from a form-encoded POST body', async () => {
      const { message, providerId } = await sentMessage(sys);
      const res = await sys.app!.inject({
        method: 'POST',
        url: dlrUrl(),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ messageId: providerId, status: 'failed', errorCode: 'UNDELIV' }).toString(),
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'failed', errorCode: 'UNDELIV' });
    });

    it('settle a message whose send outcome was unknown (still sending) by our reference', async () => {
      const { message } = await seedMessage(sys.db.db);
      await claimForSending(sys.db.db, message.id, 'mitto');
      const res = await postDlr({ id: 'prov-from-report', reference: String(message.id), status: 'delivered' });
      expect(res.json()).toMatchObject({ status: 'delivered', changed: true });
      expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'delivered', providerMessageId: 'prov-from-report' });
    });
  });

  describe('inbound messages', () => {
    const SENDER_A = '+41791110001';
    const SENDER_B = '+41791110002';

    /** A message the customer received: claimed and accepted by the provider. */
    async function texted(o: Parameters<typeof seedMessage>[1]) {
      const seeded = await seedMessage(sys.db.db, o);
      await claimForSending(sys.db.db, seeded.message.id, 'mitto');
      await markSent(sys.db.db, seeded.message.id, `prov-${seeded.message.id}`, new Date());
      return seeded;
    }

    /** One customer texted by two shops from two numbers; shop B texted last. */
    async function customerOfTwoShops() {
      const phone = uniquePhone();
      const a = await texted({ shop: uniqueShop('a'), phone, sender: SENDER_A });
      const b = await texted({ shop: uniqueShop('b'), phone, sender: SENDER_B });
      return { phone, a, b };
    }

    const inbound = (payload: Record<string, unknown>) => sys.app!.inject({ method: 'POST', url: inboundUrl, payload });

    it('requires the token', async () => {
      const res = await sys.app!.inject({ method: 'POST', url: '/webhooks/mitto/inbound', payload: { from: '+41790000000', to: SENDER_A, text: 'STOP' } });
      expect(res.statusCode).toBe(401);
    });

    it.each(['STOP', 'stop please', 'Unsubscribe', 'QUIT'])('"%s" to shop A\'s number opts the customer out of shop A only, recorded with the previous state', async (text) => {
      const { phone, a, b } = await customerOfTwoShops();
      // As gateways often send them: international numbers without the "+".
      const res = await inbound({ from: phone.slice(1), to: SENDER_A.slice(1), text, messageId: `in-${phone}` });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ ok: true, matched: true, keyword: 'stop', result: 'opted_out', shopId: a.shop.domain, contactId: a.contact.id, consentChanged: true, shops: [a.shop.domain] });

      const contactA = await getContact(sys.db.db, a.shop.id, a.contact.id);
      expect(contactA).toMatchObject({ smsConsent: 'unsubscribed', smsConsentSource: 'sms:inbound' });
      expect(contactA!.optedOutAt).toBeInstanceOf(Date);
      expect(await getContact(sys.db.db, b.shop.id, b.contact.id)).toMatchObject({ smsConsent: 'subscribed', optedOutAt: null });

      const changesA = await listConsentChanges(sys.db.db, a.contact.id);
      expect(changesA.at(-1)).toMatchObject({ shopId: a.shop.id, previousState: 'subscribed', newState: 'unsubscribed', source: 'sms:inbound' });
      expect(changesA.at(-1)!.occurredAt).toBeInstanceOf(Date);
      expect((await listConsentChanges(sys.db.db, b.contact.id)).filter((c) => c.source === 'sms:inbound')).toHaveLength(0);
    });

    it('STOP again changes nothing; START re-subscribes, for that shop only', async () => {
      const { phone, a, b } = await customerOfTwoShops();
      await sys.db.db.update(contacts).set({ smsConsent: 'unsubscribed' }).where(eq(contacts.id, b.contact.id));
      expect((await inbound({ from: phone, to: SENDER_A, text: 'STOP' })).json()).toMatchObject({ consentChanged: true });
      expect((await inbound({ from: phone, to: SENDER_A, text: 'stop' })).json()).toMatchObject({ keyword: 'stop', consentChanged: false });

      const res = await inbound({ from: phone, to: SENDER_A, text: 'Start' });
      expect(res.json()).toMatchObject({ matched: true, keyword: 'start', shopId: a.shop.domain, consentChanged: true });
      expect(await getContact(sys.db.db, a.shop.id, a.contact.id)).toMatchObject({ smsConsent: 'subscribed', optedOutAt: null });
      expect(await getContact(sys.db.db, b.shop.id, b.contact.id)).toMatchObject({ smsConsent: 'unsubscribed' });
      expect((await listConsentChanges(sys.db.db, a.contact.id)).filter((c) => c.source === 'sms:inbound').map((c) => [c.previousState, c.newState])).toEqual([
        ['subscribed', 'unsubscribed'],
        ['unsubscribed', 'subscribed'],
      ]);
    });

    it('HELP gets a transactional auto-reply from the shop written to, sent even though the customer opted out', async () => {
      const { phone, a, b } = await customerOfTwoShops();
      expect((await inbound({ from: phone, to: SENDER_A, text: 'STOP' })).json()).toMatchObject({ consentChanged: true });

      const res = await inbound({ from: phone, to: SENDER_A, text: 'help', messageId: `help-${phone}` });
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json<{ matched: boolean; keyword: string; shopId: string; replyMessageId: number }>();
      expect(body).toMatchObject({ matched: true, keyword: 'help', shopId: a.shop.domain, consentChanged: false });
      expect(body.replyMessageId).toEqual(expect.any(Number));

      const reply = await vi.waitFor(
        async () => {
          const row = await messageRow(sys.db.db, body.replyMessageId);
          if (row.status !== 'sent' && row.status !== 'delivered') throw new Error(`reply is ${row.status} (${row.errorCode ?? ''})`);
          return row;
        },
        { timeout: 10_000, interval: 20 },
      );
      expect(reply).toMatchObject({ shopId: a.shop.id, contactId: a.contact.id, kind: 'transactional', trigger: 'help_reply', toPhone: phone, sender: SENDER_A });
      expect(reply.body).toMatch(/Reply STOP to unsubscribe/);
      expect(reply.body).toContain(a.shop.domain.replace(/\.myshopify\.com$/, ''));
      expect(sandbox.messages().filter((m) => m.reference === String(reply.id))).toEqual([
        expect.objectContaining({ to: phone, from: SENDER_A, reference: String(reply.id), text: reply.body }),
      ]);
      // Shop B sent nothing new; the customer is still opted out of shop A.
      expect(await messagesOfShop(sys.db.db, b.shop.id)).toHaveLength(1);
      expect(await getContact(sys.db.db, a.shop.id, a.contact.id)).toMatchObject({ smsConsent: 'unsubscribed' });
    });

    it('the same HELP delivered twice by the provider gets one reply', async () => {
      const { phone, a } = await customerOfTwoShops();
      const payload = { from: phone, to: SENDER_A, text: 'INFO', messageId: `info-${phone}` };
      const first = (await inbound(payload)).json<{ replyMessageId: number }>();
      const second = (await inbound(payload)).json<{ result: string }>();
      expect(first.replyMessageId).toEqual(expect.any(Number));
      expect(second.result).toBe('duplicate');
      await vi.waitFor(() => expect(sandbox.stats().accepted).toBe(1), { timeout: 10_000, interval: 20 });
      const replies = (await messagesOfShop(sys.db.db, a.shop.id)).filter((m) => m.trigger === 'help_reply');
      expect(replies).toHaveLength(1);
    });

    it('a message from a number no shop has texted is answered 200 {matched: false} and changes nothing', async () => {
      const stranger = uniquePhone();
      const res = await inbound({ from: stranger, to: '+41791119999', text: 'STOP' });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ ok: true, matched: false, keyword: 'stop', result: 'unrouted', consentChanged: false });
      expect(await sys.db.db.select().from(contacts).where(eq(contacts.phone, stranger))).toHaveLength(0);
      // Kept, with what became of it.
      const [stored] = await sys.db.db.select().from(inboundMessages).where(eq(inboundMessages.fromRaw, stranger));
      expect(stored).toMatchObject({ toNumber: '+41791119999', keyword: 'stop', outcome: 'unrouted', shopId: null });
    });

    it('a message without a keyword changes nothing', async () => {
      const { phone, a } = await customerOfTwoShops();
      expect((await inbound({ from: phone, to: SENDER_A, text: 'where is my order?' })).json()).toMatchObject({ matched: true, keyword: null, consentChanged: false });
      expect(await getContact(sys.db.db, a.shop.id, a.contact.id)).toMatchObject({ smsConsent: 'subscribed' });
    });

    it('with one shared sender, STOP opts the customer out of every shop that sends from it', async () => {
      const phone = uniquePhone();
      const a = await texted({ shop: uniqueShop('a'), phone, sender: 'SMSBlossom' });
      // Shop B queued a message that was skipped (the customer never subscribed there).
      const b = await seedMessage(sys.db.db, { shop: uniqueShop('b'), phone, sender: 'SMSBlossom', consent: 'not_subscribed' });
      await sys.db.db.update(messagesTable).set({ status: 'skipped' }).where(eq(messagesTable.id, b.message.id));
      const res = await inbound({ from: phone, to: 'SMSBlossom', text: 'STOP' });
      // Routed to the shop that last really texted them (it carries the confirmation); both are opted out.
      expect(res.json()).toMatchObject({ matched: true, result: 'opted_out', shopId: a.shop.domain, contactId: a.contact.id, consentChanged: true });
      expect(res.json<{ shops: string[] }>().shops.sort()).toEqual([a.shop.domain, b.shop.domain].sort());
      expect(await getContact(sys.db.db, a.shop.id, a.contact.id)).toMatchObject({ smsConsent: 'unsubscribed' });
      expect(await getContact(sys.db.db, b.shop.id, b.contact.id)).toMatchObject({ smsConsent: 'unsubscribed' });
    });

    it('STOP always opts out, even when the stored consent time is ahead of our clock', async () => {
      const { phone, a } = await customerOfTwoShops();
      // Shopify's consent_updated_at a few minutes ahead of this server's clock (skew, or a customer who subscribed
      // at checkout and replied STOP at once).
      await sys.db.db.update(contacts).set({ smsConsentUpdatedAt: new Date(Date.now() + 5 * 60_000) }).where(eq(contacts.id, a.contact.id));
      const res = await inbound({ from: phone, to: SENDER_A, text: 'STOP' });
      expect(res.json()).toMatchObject({ matched: true, keyword: 'stop', shopId: a.shop.domain, consentChanged: true });
      expect(await getContact(sys.db.db, a.shop.id, a.contact.id)).toMatchObject({ smsConsent: 'unsubscribed', smsConsentSource: 'sms:inbound' });
      expect((await listConsentChanges(sys.db.db, a.contact.id)).at(-1)).toMatchObject({ previousState: 'subscribed', newState: 'unsubscribed', source: 'sms:inbound' });
    });

    it('a STOP to a shop\'s configured sender reaches that shop even before it texted the customer', async () => {
      const phone = uniquePhone();
      const { shop, contact } = await seedContact(sys.db.db, uniqueShop('named'), phone);
      const sender = '+41791110077';
      await sys.db.db.update(shops).set({ settings: { sender } }).where(eq(shops.id, shop.id));
      const res = await inbound({ from: phone, to: sender, text: 'STOP' });
      expect(res.json()).toMatchObject({ matched: true, shopId: shop.domain, contactId: contact.id, consentChanged: true });
    });
  });
});

describe('delivery reports with DLR_HMAC_SECRET (postgres)', () => {
  let sys: TestSystem;
  /** Every log line the system writes. */
  const logLines: string[] = [];
  beforeAll(async () => {
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logLines.push(chunk.toString());
        done();
      },
    });
    // At debug: delivery-report requests log their request lines only then (deliveryReportLogLevel).
    sys = await startTestSystem('postgres', { env: { DLR_TOKEN, DLR_HMAC_SECRET: HMAC_SECRET, LOG_LEVEL: 'debug' }, logger: createLogger({ level: 'debug', destination }) });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  const sign = (raw: string, secret = HMAC_SECRET) => createHmac('sha256', secret).update(raw).digest('hex');

  it('refuses a missing or wrong X-Signature (401) even with the right token, and accepts a right one', async () => {
    const { message, providerId } = await sentMessage(sys);
    const raw = JSON.stringify({ id: providerId, status: 'delivered' });
    const post = (headers: Record<string, string>) =>
      sys.app!.inject({ method: 'POST', url: dlrUrl(), headers: { 'content-type': 'application/json', ...headers }, payload: raw });

    const wrong: Array<Record<string, string>> = [
      {},
      { 'x-signature': 'zz' },
      { 'x-signature': sign(raw, 'another-secret-0123456789') },
      { 'x-signature': sign(`${raw} `) },
    ];
    for (const headers of wrong) {
      const res = await post(headers);
      expect(res.statusCode, JSON.stringify(headers)).toBe(401);
      expect(res.json()).toMatchObject({ error: { code: 'INVALID_SIGNATURE' } });
    }
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'sent' });

    const ok = await post({ 'x-signature': sign(raw) });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(await messageRow(sys.db.db, message.id)).toMatchObject({ status: 'delivered' });
  });

  it('checks the token before the signature', async () => {
    const raw = JSON.stringify({ id: 'x', status: 'delivered' });
    const res = await sys.app!.inject({ method: 'POST', url: dlrUrl('wrong-token-0123456789abcdef'), headers: { 'content-type': 'application/json', 'x-signature': sign(raw) }, payload: raw });
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
  });

  it('logs a report for an unknown message, and never the token from the callback URL', async () => {
    logLines.length = 0;
    const raw = JSON.stringify({ id: 'unknown-provider-id', status: 'delivered' });
    const res = await sys.app!.inject({ method: 'POST', url: dlrUrl(DLR_TOKEN, '&ref=999999999'), headers: { 'content-type': 'application/json', 'x-signature': sign(raw) }, payload: raw });
    expect(res.statusCode).toBe(404);
    const inbound = await sys.app!.inject({ method: 'POST', url: inboundUrl, payload: { from: '+41790000001', to: '+41790000002', text: 'STOP' } });
    expect(inbound.statusCode).toBe(401);

    const lines = logLines.map((l) => JSON.parse(l) as { msg: string; req?: { url?: string } });
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'Delivery report for an unknown message', providerMessageId: 'unknown-provider-id' }));
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'incoming request', req: expect.objectContaining({ url: '/webhooks/mitto/dlr', query: 'token,ref' }) }));
    for (const line of logLines) {
      expect(line).not.toContain(DLR_TOKEN);
      expect(line).not.toContain(HMAC_SECRET);
    }
  });
});
