/** Seeding message rows the way automations and campaigns create them, for delivery and callback tests. */
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { Db } from '../../src/db/client.js';
import { upsertContact } from '../../src/db/contacts.js';
import { getMessage, reserveMessage } from '../../src/db/messages.js';
import { messages, type ConsentState, type Contact, type Message, type MessageKind, type Shop } from '../../src/db/schema.js';
import { upsertShop } from '../../src/db/shops.js';
import { newRequestId } from '../../src/queue/queues.js';

let seq = 0;
const phoneBase = Math.floor(Math.random() * 9_000_000);

/** A shop domain no other test uses. */
export function uniqueShop(label = 'shop'): string {
  return `${label}-${Date.now().toString(36)}-${++seq}.myshopify.com`;
}

/** A Swiss mobile number (valid for libphonenumber and the sandbox) no other test in this process uses. */
export function uniquePhone(): string {
  return `+4179${String((phoneBase + ++seq) % 10_000_000).padStart(7, '0')}`;
}

export async function seedContact(db: Db, shopDomain: string, phone: string, state: ConsentState = 'subscribed'): Promise<{ shop: Shop; contact: Contact }> {
  const { shop } = await upsertShop(db, shopDomain);
  const result = await upsertContact(db, shop.id, {
    shopifyCustomerId: null,
    phone,
    firstName: 'Jane',
    lastName: 'Doe',
    email: null,
    tags: null,
    countryCode: 'CH',
    provinceCode: null,
    consent: { state, optInLevel: 'single_opt_in', updatedAt: new Date(Date.now() - 60_000), source: 'test', origin: 'shopify' },
  });
  return { shop, contact: result!.contact };
}

export interface SeedMessageOptions {
  shop?: string;
  phone?: string;
  kind?: MessageKind;
  trigger?: string;
  sender?: string;
  body?: string;
  consent?: ConsentState;
  checkoutToken?: string;
}

/** Shop, contact and a `queued` message row (created by `reserveMessage`, as the automations processor does). */
export async function seedMessage(db: Db, o: SeedMessageOptions = {}): Promise<{ shop: Shop; contact: Contact; message: Message; requestId: string }> {
  const { shop, contact } = await seedContact(db, o.shop ?? uniqueShop(), o.phone ?? uniquePhone(), o.consent);
  const requestId = newRequestId();
  const reserved = await reserveMessage(
    db,
    {
      shopId: shop.id,
      contactId: contact.id,
      kind: o.kind ?? 'transactional',
      trigger: o.trigger ?? 'order_paid',
      idempotencyKey: `test-${randomUUID()}`,
      toPhone: contact.phone,
      sender: o.sender ?? 'Blossom',
      body: o.body ?? 'Your order #1001 is paid. Thank you!',
      encoding: 'GSM-7',
      segments: 1,
      costEstimate: 0.03,
      renderWarnings: [],
      scheduledFor: null,
      requestId,
      ...(o.checkoutToken ? { checkoutToken: o.checkoutToken } : {}),
    },
    null,
  );
  if (reserved.outcome !== 'created') throw new Error(`seedMessage: ${reserved.outcome}`);
  return { shop, contact, message: reserved.message, requestId };
}

export async function messageRow(db: Db, id: number): Promise<Message> {
  const row = await getMessage(db, id);
  if (!row) throw new Error(`message ${id} does not exist`);
  return row;
}

/** Every message row of a shop, oldest first. */
export async function messagesOfShop(db: Db, shopId: number): Promise<Message[]> {
  return db.select().from(messages).where(eq(messages.shopId, shopId)).orderBy(messages.id);
}
