/**
 * No personal data where it does not belong: every log line of a full pipeline run — a signed orders/paid webhook
 * through events → automations → delivery to the sandbox → delivery report back, plus a send the provider refuses for
 * good — is captured (pino into memory, level trace), and none carries the customer's phone number, e-mail, name or
 * the message text. The dead letter the refused send leaves carries none either, nor do the job payloads between the
 * stages.
 */
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { getEvent } from '../../src/db/events.js';
import { deadLetters, events, messages, type Message } from '../../src/db/schema.js';
import { getShopByDomain } from '../../src/db/shops.js';
import { createLogger } from '../../src/logger.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { uniquePhone, uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook } from '../helpers/webhooks.js';

describe.each(DB_KINDS)('logs and dead letters carry no personal data on %s', (kind) => {
  const lines: string[] = [];
  let sys: TestSystem;
  beforeAll(async () => {
    const logger = createLogger({ level: 'trace', destination: { write: (chunk: string) => void lines.push(chunk) } });
    sys = await startTestSystem(kind, {
      workers: ['events', 'automations', 'delivery'],
      listen: true,
      logger,
      env: { SMS_PROVIDER: 'sandbox', HOUSEKEEPING_SCHEDULES: 'false', LOG_LEVEL: 'trace', SHOPIFY_API_KEY },
    });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  /** An order of a new customer with a distinctive name, e-mail and phone, in the formats Shopify sends. */
  function order(phone: string) {
    const body = fixture('orders-paid') as Record<string, any>;
    const tag = randomUUID().slice(0, 8);
    body.id = Date.now() * 10 + Math.floor(Math.random() * 10);
    body.customer.id = body.id + 1;
    body.customer.first_name = `Zelda${tag}`;
    body.customer.last_name = `Quixote${tag}`;
    body.customer.email = `zelda.${tag}@example.com`;
    body.email = body.customer.email;
    // The customer's number as typed, with spaces: normalised to E.164 for the contact and the provider.
    body.customer.phone = `${phone.slice(0, 3)} ${phone.slice(3, 5)} ${phone.slice(5, 8)} ${phone.slice(8)}`;
    return body;
  }

  async function orderMessage(shop: string, status: Message['status']): Promise<Message> {
    return vi.waitFor(
      async () => {
        const s = await getShopByDomain(sys.db.db, shop);
        const [m] = s ? (await sys.db.db.select().from(messages).where(eq(messages.shopId, s.id))).filter((r) => r.trigger === 'order_paid') : [];
        if (m?.status !== status) throw new Error(`order message is ${m?.status ?? 'missing'}, waiting for ${status}`);
        return m;
      },
      { timeout: 15_000, interval: 25 },
    );
  }

  it('a full pipeline run logs ids, never the phone, e-mail, name or text', async () => {
    const shop = uniqueShop('logs');
    const phone = uniquePhone();
    const body = order(phone);
    const webhookId = randomUUID();
    expect((await postWebhook(sys.app!, { topic: 'orders/paid', body, shop, webhookId })).statusCode).toBe(200);
    const delivered = await orderMessage(shop, 'delivered');
    expect(delivered.toPhone).toBe(phone);
    expect(delivered.body).toContain('Thanks for your order');

    // A second shop whose send the provider refuses for good: a failed message and a dead letter.
    const refusedShop = uniqueShop('refused');
    const refusedPhone = uniquePhone();
    const refusedBody = order(refusedPhone);
    sys.sandbox!.setFaults({ permanentCode: 8, permanentRate: 1 });
    try {
      expect((await postWebhook(sys.app!, { topic: 'orders/paid', body: refusedBody, shop: refusedShop })).statusCode).toBe(200);
      await orderMessage(refusedShop, 'failed');
    } finally {
      sys.sandbox!.reset();
    }
    const dead = await vi.waitFor(
      async () => {
        const rows = await sys.db.db.select().from(deadLetters).where(eq(deadLetters.shopId, refusedShop));
        if (!rows.length) throw new Error('no dead letter yet');
        return rows;
      },
      { timeout: 10_000, interval: 25 },
    );
    expect(dead[0]).toMatchObject({ queue: 'delivery', errorCode: expect.any(String) });

    const forbidden = (b: Record<string, any>, e164: string, text: string | null) => [
      e164,
      e164.slice(1), // without the plus
      b.customer.phone,
      b.customer.email,
      b.customer.first_name,
      b.customer.last_name,
      ...(text ? [text, text.slice(0, 24)] : []),
    ];
    const refusedText = (await orderMessage(refusedShop, 'failed')).body;
    const secrets = [...forbidden(body, phone, delivered.body), ...forbidden(refusedBody, refusedPhone, refusedText)];

    const log = lines.join('');
    // The run was logged (so an empty capture cannot pass): each stage left lines with ids.
    expect(log).toContain('Webhook accepted');
    expect(log).toContain('Message sent');
    expect(log).toContain('Job dead-lettered');
    expect(log).toContain(String(delivered.id));
    for (const s of secrets) expect(log, `a log line carries "${s}"`).not.toContain(s);

    const deadJson = JSON.stringify(dead);
    for (const s of secrets) expect(deadJson, `the dead letter carries "${s}"`).not.toContain(s);

    // The jobs between the stages carry ids and context, not the customer's contact details or the text.
    const automationsJobs = await sys.queues.get('automations').getJobs(['completed']);
    const deliveryJobs = await sys.queues.get('delivery').getJobs(['completed', 'failed']);
    const payloads = JSON.stringify([...automationsJobs, ...deliveryJobs].filter((j) => j.data.shopId === shop || j.data.shopId === refusedShop).map((j) => j.data));
    expect(payloads).toContain(String(delivered.id));
    for (const s of [phone, refusedPhone, body.customer.email, refusedBody.customer.email, delivered.body!, refusedText!]) {
      expect(payloads, `a job payload carries "${s}"`).not.toContain(s);
    }
    expect((await getEvent(sys.db.db, shop, webhookId))?.status).toBe('processed');
  });

  it('searches, failed queries, failed jobs and unmatched routes log no search term, secret, phone, e-mail or name', async () => {
    const shop = uniqueShop('quiet');
    const headers = await merchantHeaders(shop);
    const phone = uniquePhone();
    const tag = randomUUID().slice(0, 8);
    const email = `yvette.${tag}@example.com`;
    const firstName = `Yvette${tag}`;
    const lastName = `Ostrogoth${tag}`;
    const from = lines.length;

    // A search by e-mail and by phone: the terms are in the query string, which the request log used to print.
    for (const q of [email, phone]) {
      const res = await sys.app!.inject({ method: 'GET', url: `/api/contacts?q=${encodeURIComponent(q)}`, headers });
      expect(res.statusCode, res.body).toBe(200);
    }
    // A NUL in the search: refused naming the parameter, before any query runs.
    const nul = await sys.app!.inject({ method: 'GET', url: '/api/contacts?q=%00', headers });
    expect(nul.statusCode, nul.body).toBe(400);
    expect(nul.json().error).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('query.q') });

    // A query that fails in the database (its table is briefly away): 500, and the log keeps the SQLSTATE only.
    await sys.db.exec('ALTER TABLE contacts RENAME TO contacts_away');
    try {
      const failed = await sys.app!.inject({ method: 'GET', url: `/api/contacts?q=${encodeURIComponent(email)}`, headers });
      expect(failed.statusCode).toBe(500);
      expect(failed.body).not.toContain(email);
    } finally {
      await sys.db.exec('ALTER TABLE contacts_away RENAME TO contacts');
    }

    // Routes that do not exist, carrying the callback token and a phone number the way a misrouted callback does.
    const token = sys.config.sms.dlrToken;
    for (const url of [
      `/webhooks/mitto/inbound?token=${token}&from=${encodeURIComponent(phone)}&text=${firstName}`,
      `/nowhere/${encodeURIComponent(phone)}/${encodeURIComponent(email)}?token=${token}`,
    ]) {
      const res = await sys.app!.inject({ method: 'GET', url });
      expect(res.statusCode).toBe(404);
    }

    // A webhook whose processing fails in the database. The case was a consent time in year 200000, which the
    // insert refused as out of range (SQLSTATE class 22); here a CHECK that divides by zero for this customer's name
    // (also class 22) makes the same failure independent of how the payload is normalised. The job fails for good at
    // once and is dead-lettered; neither its log lines nor the dead letter quote the failed insert's values.
    const customer = { ...fixture('customers-update'), id: Date.now(), email, first_name: firstName, last_name: lastName, phone };
    let dead: Array<typeof deadLetters.$inferSelect> = [];
    await sys.db.exec(`ALTER TABLE contacts ADD CONSTRAINT refuse_${tag} CHECK (first_name IS DISTINCT FROM '${firstName}' OR 1 / 0 = 1) NOT VALID`);
    try {
      expect((await postWebhook(sys.app!, { topic: 'customers/update', shop, body: customer })).statusCode).toBe(200);
      dead = await vi.waitFor(
        async () => {
          const rows = await sys.db.db.select().from(deadLetters).where(eq(deadLetters.shopId, shop));
          if (!rows.length) throw new Error('no dead letter yet');
          return rows;
        },
        { timeout: 15_000, interval: 50 },
      );
    } finally {
      await sys.db.exec(`ALTER TABLE contacts DROP CONSTRAINT refuse_${tag}`);
    }
    expect(dead[0]).toMatchObject({ queue: 'events', errorMessage: expect.stringMatching(/^database error 22/) });

    // Erasure of that customer leaves nothing of theirs in the dead letters either.
    const redact = { shop_domain: shop, customer: { id: customer.id, email, phone }, orders_to_redact: [] };
    const redactId = randomUUID();
    expect((await postWebhook(sys.app!, { topic: 'customers/redact', shop, body: redact, webhookId: redactId })).statusCode).toBe(200);
    await vi.waitFor(
      async () => {
        if ((await getEvent(sys.db.db, shop, redactId))?.status !== 'processed') throw new Error('redaction not processed yet');
      },
      { timeout: 15_000, interval: 50 },
    );

    const log = lines.slice(from).join('');
    expect(log).toContain('Job failed');
    expect(log).toContain('Unhandled error');
    expect(log).toContain('/api/contacts');
    expect(log).not.toContain('Failed query');
    const secrets = [email, encodeURIComponent(email), phone, phone.slice(1), encodeURIComponent(phone), firstName, lastName, token];
    for (const s of secrets) expect(log, `a log line carries "${s}"`).not.toContain(s);
    const stored = JSON.stringify([
      await sys.db.db.select().from(deadLetters).where(eq(deadLetters.shopId, shop)),
      (await sys.db.db.select({ error: events.error }).from(events).where(eq(events.shopDomain, shop))).map((r) => r.error),
    ]);
    for (const s of [email, phone, phone.slice(1), firstName, lastName]) expect(stored, `a dead letter or event error carries "${s}"`).not.toContain(s);
    // The failed job as BullMQ keeps it in Redis (failedReason, stack trace) quotes nothing either.
    const failedJobs = (await sys.queues.get('events').getJobs(['failed'])).filter((j) => j.data.shopId === shop);
    const reasons = JSON.stringify(failedJobs.map((j) => [j.failedReason, j.stacktrace]));
    for (const s of [email, phone.slice(1), firstName, lastName]) expect(reasons, `a failed job carries "${s}"`).not.toContain(s);
  });
});
