/**
 * Replies customers text back, handled as carriers (CTIA) expect:
 *
 * - STOP and friends opt the person out of **the number they wrote to**: a shop's own number stops that shop; the
 *   platform's shared sender stops every shop that sends from it (a number-wide opt-out in `sender_opt_outs`, checked
 *   again at send time, covers shops that have not met the person yet). One confirmation is sent back.
 * - START/UNSTOP (the whole message) lifts an opt-out on that number, and only an opt-out: it subscribes nobody who
 *   never opted out.
 * - YES (the whole message) confirms a pending double opt-in, and nothing else.
 * - HELP/INFO gets an auto-reply.
 *
 * Routing is by the number written to, deterministically: the shop that owns it; else the shared sender; else the
 * shop that last texted the person from it (a shop that has since changed its sender). Every message is stored in
 * `inbound_messages` first and answered 200 whatever it says; one that cannot be routed or read is kept with its
 * outcome.
 */
import { shopDisplayName, shopSettings } from '../automations/settings.js';
import type { Db } from '../db/client.js';
import { findContactByPhone, upsertContact, type ContactUpsertResult } from '../db/contacts.js';
import {
  addSenderOptOut,
  contactsOnSharedSender,
  recordInbound,
  removeSenderOptOut,
  settleInbound,
  shopOwningSender,
} from '../db/inbound.js';
import { lastSenderTo, reserveMessage, shopForReply } from '../db/messages.js';
import type { Contact, Shop } from '../db/schema.js';
import { getShopByDomain, getShopById } from '../db/shops.js';
import type { Logger } from '../logger.js';
import { jobIdFrom, type QueueRegistry } from '../queue/queues.js';
import { isOptedOut } from '../rules/consent.js';
import { composeSms, contentColumns } from './compose.js';
import { classifyInbound, countryOfNumber, customerNumber, normalizeNumber, type InboundKeyword, type InboundMessage } from './inbound.js';

export interface RepliesDeps {
  db: Db;
  queues: QueueRegistry;
  logger: Logger;
  sms: { sender: string; costPerSegment: number };
}

/** What became of an inbound message; stored as `inbound_messages.outcome`. */
export type InboundResult =
  | 'opted_out'
  | 'opted_in'
  | 'confirmed_opt_in'
  | 'help_replied'
  | 'no_keyword'
  | 'start_without_opt_out'
  | 'yes_without_pending'
  | 'unrouted'
  | 'unreadable_number'
  | 'duplicate';

export type InboundOutcome = {
  matched: boolean;
  keyword: InboundKeyword | null;
  result: InboundResult;
  /** The shop the message was routed to (for a shared sender: the one that last texted the person, if any). */
  shopId?: string;
  contactId?: number;
  consentChanged: boolean;
  /** Shops whose consent for this person changed (a STOP to a shared sender reaches several). */
  shops?: string[];
  replyMessageId?: number;
};

/** How an inbound number is routed. */
type Route =
  | { scope: 'own'; sender: string; shop: Shop }
  | { scope: 'shared'; sender: string; lastShop: Shop | undefined }
  | { scope: 'history'; sender: string; shop: Shop };

async function route(deps: RepliesDeps, to: string, fromRaw: string): Promise<Route | undefined> {
  const own = await shopOwningSender(deps.db, to);
  if (own) return { scope: 'own', sender: to, shop: own };
  // The history lookups need the customer's number, read as international here (the route gives no country yet).
  const from = customerNumber(fromRaw, countryOfNumber(to));
  if (to === normalizeNumber(deps.sms.sender)) {
    const last = from ? await shopForReply(deps.db, from, deps.sms.sender) : undefined;
    return { scope: 'shared', sender: to, lastShop: last ? await getShopById(deps.db, last.shopId) : undefined };
  }
  const last = from ? await shopForReply(deps.db, from, to) : undefined;
  const shop = last ? await getShopById(deps.db, last.shopId) : undefined;
  return shop ? { scope: 'history', sender: to, shop } : undefined;
}

export async function handleInbound(msg: InboundMessage, deps: RepliesDeps, requestId: string): Promise<InboundOutcome> {
  const keyword = classifyInbound(msg.text);
  const log = deps.logger.child({ keyword });
  const { row, duplicate } = await recordInbound(deps.db, {
    fromRaw: msg.from,
    toNumber: msg.to,
    text: msg.text,
    keyword,
    providerMessageId: msg.providerMessageId,
    requestId,
  });
  if (duplicate) {
    log.info({ inboundId: row.id }, 'Inbound message already handled');
    return { matched: row.shopId !== null, keyword, result: 'duplicate', consentChanged: false };
  }

  const r = await route(deps, msg.to, msg.from);
  const primary = r ? (r.scope === 'shared' ? r.lastShop : r.shop) : undefined;
  const country = countryOfNumber(msg.to) ?? primary?.countryCode ?? null;
  const from = customerNumber(msg.from, country);
  if (!r || !from) {
    const result = !r ? 'unrouted' : 'unreadable_number';
    await settleInbound(deps.db, row.id, result, { shopId: primary?.id ?? null, fromPhone: from });
    log.info({ inboundId: row.id, result }, !r ? 'Inbound message to a number no shop sends from: stored' : 'Inbound message from an unreadable number: stored');
    return { matched: false, keyword, result, consentChanged: false };
  }

  const ctx: ReplyContext = { deps, msg, from, route: r, primary, requestId, log };
  let outcome: InboundOutcome;
  switch (keyword) {
    case 'stop':
      outcome = await optOut(ctx);
      break;
    case 'start':
      outcome = await optIn(ctx);
      break;
    case 'yes':
      outcome = await confirmPending(ctx);
      break;
    case 'help':
      outcome = await help(ctx);
      break;
    default:
      outcome = { matched: primary !== undefined, keyword, result: 'no_keyword', consentChanged: false, ...shopFields(primary) };
  }
  await settleInbound(deps.db, row.id, outcome.result, { shopId: primary?.id ?? null, fromPhone: from });
  log.info({ inboundId: row.id, result: outcome.result, shops: outcome.shops?.length ?? 0 }, 'Inbound message handled');
  return outcome;
}

interface ReplyContext {
  deps: RepliesDeps;
  msg: InboundMessage;
  from: string;
  route: Route;
  primary: Shop | undefined;
  requestId: string;
  log: Logger;
}

function shopFields(shop: Shop | undefined, contactId?: number | null) {
  return { ...(shop ? { shopId: shop.domain } : {}), ...(contactId ? { contactId } : {}) };
}

/** Applies the person's own consent word to a shop's contact (created on a STOP to a shop's own number). */
async function applyCustomerConsent(ctx: ReplyContext, shop: Shop, state: 'subscribed' | 'unsubscribed', optInLevel: string | null = null) {
  return upsertContact(
    ctx.deps.db,
    shop.id,
    {
      shopifyCustomerId: null,
      phone: ctx.from,
      firstName: null,
      lastName: null,
      email: null,
      tags: null,
      countryCode: null,
      provinceCode: null,
      consent: { state, optInLevel, updatedAt: null, source: 'sms:inbound', origin: 'customer' },
    },
    { requestId: ctx.requestId },
  );
}

/** The shops on this number that know the person, with their contacts. */
async function reachedContacts(ctx: ReplyContext): Promise<Array<{ shop: Shop; contact: Contact | undefined }>> {
  const r = ctx.route;
  if (r.scope !== 'shared') return [{ shop: r.shop, contact: await findContactByPhone(ctx.deps.db, r.shop.id, ctx.from) }];
  return contactsOnSharedSender(ctx.deps.db, ctx.from, ctx.deps.sms.sender);
}

async function optOut(ctx: ReplyContext): Promise<InboundOutcome> {
  const { deps, route: r } = ctx;
  await addSenderOptOut(deps.db, { sender: r.sender, phone: ctx.from, at: new Date(), source: 'sms:inbound', requestId: ctx.requestId });
  const changed: string[] = [];
  let primaryContact: number | null = null;
  for (const { shop, contact } of await reachedContacts(ctx)) {
    // A shop's own number creates the contact if needed, so the opt-out shows in that shop; on the shared sender
    // the number-wide opt-out covers shops that have never met the person.
    if (r.scope === 'shared' && !contact) continue;
    const sync = await applyCustomerConsent(ctx, shop, 'unsubscribed');
    if (sync?.consentChange) changed.push(shop.domain);
    if (shop.id === ctx.primary?.id) primaryContact = sync?.contact.id ?? null;
  }
  const names = await shopNames(ctx, changed);
  const body =
    r.scope === 'shared'
      ? `You're unsubscribed from all messages from this number${names ? ` (${names})` : ''} and will get no more. Reply START to resubscribe.`
      : `${shopDisplayName(r.shop)}: You're unsubscribed and will get no more messages from this number. Reply START to resubscribe.`;
  return confirmed(ctx, { keyword: 'stop', result: 'opted_out', trigger: 'stop_reply', body, changed, primaryContact });
}

/** Sends the confirmation of a STOP or START and describes what was done. */
async function confirmed(
  ctx: ReplyContext,
  o: { keyword: 'stop' | 'start'; result: InboundResult; trigger: 'stop_reply' | 'start_reply'; body: string; changed: string[]; primaryContact: number | null },
): Promise<InboundOutcome> {
  const replyMessageId = await reply(ctx, o.primaryContact, o.body, o.trigger);
  return {
    matched: true,
    keyword: o.keyword,
    result: o.result,
    consentChanged: o.changed.length > 0,
    shops: o.changed,
    ...shopFields(ctx.primary, o.primaryContact),
    ...(replyMessageId ? { replyMessageId } : {}),
  };
}

async function shopNames(ctx: ReplyContext, domains: string[]): Promise<string> {
  const list = [...new Set(domains)];
  const named: string[] = [];
  for (const d of list.slice(0, 3)) {
    const shop = await getShopByDomain(ctx.deps.db, d);
    if (shop) named.push(shopDisplayName(shop));
  }
  return list.length > 3 ? `${named.join(', ')} and ${list.length - 3} more` : named.join(', ');
}

async function optIn(ctx: ReplyContext): Promise<InboundOutcome> {
  const { deps, route: r } = ctx;
  const hadNumberOptOut = await removeSenderOptOut(deps.db, r.sender, ctx.from);
  const changed: string[] = [];
  let primaryContact: number | null = null;
  for (const { shop, contact } of await reachedContacts(ctx)) {
    if (!contact || !isOptedOut(contact)) continue;
    // On the shared sender START undoes a STOP sent to it, not an unsubscribe the person gave one shop elsewhere.
    if (r.scope === 'shared' && contact.smsConsentSource !== 'sms:inbound') continue;
    const sync = await applyCustomerConsent(ctx, shop, 'subscribed', 'single_opt_in');
    if (sync?.consentChange) changed.push(shop.domain);
    if (shop.id === ctx.primary?.id) primaryContact = contact.id;
  }
  if (!hadNumberOptOut && changed.length === 0) {
    return { matched: ctx.primary !== undefined, keyword: 'start', result: 'start_without_opt_out', consentChanged: false, ...shopFields(ctx.primary) };
  }
  const body =
    r.scope === 'shared'
      ? "You're resubscribed to messages from this number. Reply HELP for help, STOP to unsubscribe."
      : `${shopDisplayName(r.shop)}: You're resubscribed. Reply HELP for help, STOP to unsubscribe. Msg & data rates may apply.`;
  return confirmed(ctx, { keyword: 'start', result: 'opted_in', trigger: 'start_reply', body, changed, primaryContact });
}

async function confirmPending(ctx: ReplyContext): Promise<InboundOutcome> {
  const shop = ctx.primary;
  const contact = shop ? await findContactByPhone(ctx.deps.db, shop.id, ctx.from) : undefined;
  if (!shop || !contact || contact.smsConsent !== 'pending') {
    return { matched: shop !== undefined, keyword: 'yes', result: 'yes_without_pending', consentChanged: false, ...shopFields(shop, contact?.id) };
  }
  const sync: ContactUpsertResult | null = await applyCustomerConsent(ctx, shop, 'subscribed', 'confirmed_opt_in');
  return {
    matched: true,
    keyword: 'yes',
    result: 'confirmed_opt_in',
    consentChanged: Boolean(sync?.consentChange),
    shops: sync?.consentChange ? [shop.domain] : [],
    ...shopFields(shop, contact.id),
  };
}

async function help(ctx: ReplyContext): Promise<InboundOutcome> {
  const shop = ctx.primary;
  const contact = shop ? await findContactByPhone(ctx.deps.db, shop.id, ctx.from) : undefined;
  const text = shop ? shopSettings(shop).helpText ?? 'Thanks for your message.' : 'Thanks for your message.';
  const body = `${shop ? `${shopDisplayName(shop)}: ` : ''}${text} Reply STOP to unsubscribe, START to resubscribe. Msg & data rates may apply.`;
  const replyMessageId = await reply(ctx, contact?.id ?? null, body, 'help_reply');
  return {
    matched: shop !== undefined,
    keyword: 'help',
    result: 'help_replied',
    consentChanged: false,
    ...shopFields(shop, contact?.id),
    ...(replyMessageId ? { replyMessageId } : {}),
  };
}

/** Triggers of the answers to a person's own message: sent even after a STOP (the STOP's confirmation included). */
export const REPLY_TRIGGERS: ReadonlySet<string> = new Set(['help_reply', 'stop_reply', 'start_reply']);

/**
 * One transactional answer per inbound message, from the number the person wrote to, attributed to the routed shop.
 * None when no shop can carry it (a shared sender whose shops never texted the person).
 */
async function reply(ctx: ReplyContext, contactId: number | null, body: string, trigger: 'help_reply' | 'stop_reply' | 'start_reply'): Promise<number | undefined> {
  const { deps, primary: shop } = ctx;
  if (!shop) return undefined;
  const lastSender = await lastSenderTo(deps.db, shop.id, ctx.from);
  // Answer from the number written to, spelled as the shop sends from it.
  const sender = ctx.route.scope === 'shared' ? deps.sms.sender : lastSender !== null && normalizeNumber(lastSender) === ctx.route.sender ? lastSender : ctx.route.sender;
  // The body says how to stop already; a reply is transactional and carries no footer.
  const sms = composeSms(body, { marketing: false, costPerSegment: deps.sms.costPerSegment });
  const reserved = await reserveMessage(
    deps.db,
    {
      shopId: shop.id,
      contactId: contactId ?? (await findContactByPhone(deps.db, shop.id, ctx.from))?.id ?? null,
      kind: 'transactional',
      trigger,
      idempotencyKey: `reply-${trigger.replace('_reply', '')}-${ctx.msg.providerMessageId ?? `${ctx.from}-${Date.now()}`}`,
      toPhone: ctx.from,
      sender,
      ...contentColumns(sms),
      renderWarnings: [],
      scheduledFor: null,
      requestId: ctx.requestId,
    },
    null,
  );
  if (reserved.outcome === 'capped') return undefined;
  if (reserved.message.status === 'queued') {
    await deps.queues.enqueueJob(
      'delivery',
      'send',
      { shopId: shop.domain, messageId: reserved.message.id, requestId: ctx.requestId },
      { jobId: jobIdFrom('msg', reserved.message.id) },
    );
  }
  return reserved.message.id;
}

/**
 * Whether a number-wide opt-out stops a message from `sender` to this contact's phone, given the STOPs recorded on
 * that phone (any sender). It does unless the person opted in again after it, in their own words or Shopify's (a
 * merchant's import or edit does not count).
 */
export function blockedBySenderOptOut(
  sender: string | null,
  optOuts: ReadonlyArray<{ sender: string; optedOutAt: Date }>,
  contact: Contact | undefined,
): boolean {
  if (!sender || optOuts.length === 0) return false;
  const number = normalizeNumber(sender);
  const optOut = optOuts.find((o) => o.sender === number);
  if (!optOut) return false;
  const renewed =
    contact !== undefined &&
    contact.smsConsent === 'subscribed' &&
    contact.smsConsentUpdatedAt !== null &&
    contact.smsConsentUpdatedAt.getTime() > optOut.optedOutAt.getTime() &&
    (contact.smsConsentSource?.startsWith('shopify:') === true || contact.smsConsentSource === 'sms:inbound');
  return !renewed;
}

