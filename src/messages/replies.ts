/**
 * Replies customers text back: STOP and friends opt them out, START opts them back in, HELP gets an auto-reply — each
 * for the shop whose number they wrote to, never for every shop.
 *
 * The shop is found, in order: the shop that last texted this customer from the number they wrote to; the shop whose
 * settings name that number as its sender; the shop that last texted this customer at all (one shared number).
 */
import { and, desc, eq, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { upsertContact } from '../db/contacts.js';
import { reserveMessage, shopForReply } from '../db/messages.js';
import { contacts, messages, shops, type Shop } from '../db/schema.js';
import type { Logger } from '../logger.js';
import { jobIdFrom, type QueueRegistry } from '../queue/queues.js';
import { analyzeSms, estimateCost } from './encoding.js';
import { classifyInbound, type InboundKeyword, type InboundMessage } from './inbound.js';
import { shopDisplayName, shopSettings } from '../queue/processors/automations.js';

export interface RepliesDeps {
  db: Db;
  queues: QueueRegistry;
  logger: Logger;
  sms: { sender: string; costPerSegment: number };
}

export type InboundOutcome =
  | { matched: false; keyword: InboundKeyword | null }
  | { matched: true; keyword: InboundKeyword | null; shopId: string; contactId: number; consentChanged: boolean; replyMessageId?: number };

async function findShop(db: Db, msg: InboundMessage): Promise<{ shop: Shop; contactId: number | null } | undefined> {
  const bySender = await shopForReply(db, msg.from, msg.to);
  const byAny = bySender ?? (await shopForReply(db, msg.from, null));
  const pick = async (shopId: number) => (await db.select().from(shops).where(eq(shops.id, shopId)))[0];
  if (bySender) return { shop: (await pick(bySender.shopId))!, contactId: bySender.contactId };
  const [named] = await db
    .select()
    .from(shops)
    .where(sql`${shops.settings}->>'sender' = ${msg.to}`)
    .limit(1);
  if (named) {
    const [c] = await db
      .select({ id: contacts.id })
      .from(contacts)
      .where(and(eq(contacts.shopId, named.id), eq(contacts.phone, msg.from)));
    return { shop: named, contactId: c?.id ?? null };
  }
  if (byAny) return { shop: (await pick(byAny.shopId))!, contactId: byAny.contactId };
  return undefined;
}

export async function handleInbound(msg: InboundMessage, deps: RepliesDeps, requestId: string): Promise<InboundOutcome> {
  const keyword = classifyInbound(msg.text);
  const found = await findShop(deps.db, msg);
  if (!found) {
    deps.logger.info({ keyword }, 'Inbound message from a number no shop has texted: ignored');
    return { matched: false, keyword };
  }
  const { shop } = found;
  const log = deps.logger.child({ shopId: shop.domain, keyword });
  if (!keyword) {
    log.info('Inbound message without a keyword');
    return { matched: true, keyword, shopId: shop.domain, contactId: found.contactId ?? 0, consentChanged: false };
  }

  if (keyword === 'stop' || keyword === 'start') {
    // The customer's reply is their latest word, whatever time the stored consent carries: Shopify's
    // consent_updated_at can be ahead of our clock (skew, or a STOP seconds after subscribing at checkout), and
    // upsertContact ignores consent older than what it holds. An opt-out must never be dropped that way.
    const [current] = await deps.db
      .select({ at: contacts.smsConsentUpdatedAt })
      .from(contacts)
      .where(and(eq(contacts.shopId, shop.id), eq(contacts.phone, msg.from)));
    const now = new Date();
    const at = current?.at && current.at.getTime() >= now.getTime() ? new Date(current.at.getTime() + 1) : now;
    const sync = await upsertContact(
      deps.db,
      shop.id,
      {
        shopifyCustomerId: null,
        phone: msg.from,
        firstName: null,
        lastName: null,
        email: null,
        tags: null,
        countryCode: null,
        provinceCode: null,
        consent: { state: keyword === 'stop' ? 'unsubscribed' : 'subscribed', optInLevel: null, updatedAt: at, source: 'sms:inbound' },
      },
      { requestId },
    );
    const contactId = sync!.contact.id;
    log.info({ contactId, consentChanged: Boolean(sync!.consentChange) }, keyword === 'stop' ? 'Contact opted out by reply' : 'Contact opted in by reply');
    return { matched: true, keyword, shopId: shop.domain, contactId, consentChanged: Boolean(sync!.consentChange) };
  }

  // HELP / INFO: a transactional auto-reply, once per inbound message.
  const contactId = found.contactId;
  const [contact] = contactId ? await deps.db.select().from(contacts).where(eq(contacts.id, contactId)) : [];
  const settings = shopSettings(shop);
  const body = `${shopDisplayName(shop)}: ${settings.helpText ?? 'Thanks for your message.'} Reply STOP to unsubscribe, START to resubscribe. Msg & data rates may apply.`;
  const sms = analyzeSms(body);
  const [lastSender] = await deps.db
    .select({ sender: messages.sender })
    .from(messages)
    .where(and(eq(messages.shopId, shop.id), eq(messages.toPhone, msg.from)))
    .orderBy(desc(messages.id))
    .limit(1);
  const reserved = await reserveMessage(
    deps.db,
    {
      shopId: shop.id,
      contactId: contact?.id ?? null,
      kind: 'transactional',
      trigger: 'help_reply',
      idempotencyKey: `reply-help-${msg.providerMessageId ?? `${msg.from}-${Date.now()}`}`,
      toPhone: msg.from,
      sender: lastSender?.sender ?? settings.sender ?? deps.sms.sender,
      body,
      encoding: sms.encoding,
      segments: sms.segments,
      costEstimate: estimateCost(sms.segments, deps.sms.costPerSegment),
      renderWarnings: [],
      scheduledFor: null,
      requestId,
    },
    null,
  );
  if (reserved.outcome !== 'capped' && reserved.message.status === 'queued') {
    await deps.queues.enqueueJob(
      'delivery',
      'send',
      { shopId: shop.domain, messageId: String(reserved.message.id), requestId },
      { jobId: jobIdFrom('msg', reserved.message.id) },
    );
  }
  log.info({ contactId }, 'Help auto-reply queued');
  return {
    matched: true,
    keyword,
    shopId: shop.domain,
    contactId: contactId ?? 0,
    consentChanged: false,
    ...(reserved.outcome !== 'capped' ? { replyMessageId: reserved.message.id } : {}),
  };
}
