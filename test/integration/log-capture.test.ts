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
import { deadLetters, messages, type Message } from '../../src/db/schema.js';
import { getShopByDomain } from '../../src/db/shops.js';
import { createLogger } from '../../src/logger.js';
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
      env: { SMS_PROVIDER: 'sandbox', HOUSEKEEPING_SCHEDULES: 'false', LOG_LEVEL: 'trace' },
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
});
