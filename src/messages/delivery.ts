/**
 * One message row → one send through the provider, exactly once. Knows nothing of BullMQ: how to put a job off or
 * wait out a rate limit is handed in ({@link DeliveryControl}; src/queue/processors/delivery.ts maps it to BullMQ).
 *
 * - The message row exists before any send (unique idempotency key); a job for a message that is already sent,
 *   delivered, failed, skipped or cancelled does nothing.
 * - `queued` → `sending` is a conditional UPDATE: of two workers running the same job (a stalled job picked up again),
 *   only one gets to send.
 * - A failure that certainly did not reach the provider (connection refused, HTTP 5xx/429, provider code 1) puts the
 *   row back to `queued` and lets BullMQ retry with backoff. A permanent one (codes 2–8, 4xx) fails the row and is
 *   thrown as it is: a permanent error, which the worker turns into an end without retries.
 * - A send whose outcome is unknown (a timeout after the request was written, a worker killed mid-send) leaves the row
 *   `sending`. It is never sent again: the job waits for the delivery report, which carries our message id as
 *   `reference` and settles the row; if none comes after `reconcileAttempts` waits, the row is failed as
 *   `DELIVERY_UNCONFIRMED` (the message may have been delivered; it is not sent twice).
 *
 * A job in the specification's shape (`{ shopId, recipient, template, context }`, no `messageId`) is a direct send:
 * its template is rendered with `context` by the service's renderer and composed as marketing (opt-out footer), and
 * its message row is created under an idempotency key derived from the job (its id and creation time), so a retry
 * finds the same row; from there it takes the path above. It obeys what every send obeys at send time — the shop
 * installed, the recipient a contact of the shop with marketing consent, no STOP to the sender — but not quiet hours
 * nor the frequency cap, which belong to automations and campaigns: the producer chose the moment and the audience.
 * A recipient who is no contact of the shop is skipped (`no_contact`).
 */
import type { Db } from '../db/client.js';
import { findContactByPhone } from '../db/contacts.js';
import { getShopByDomain } from '../db/shops.js';
import { getCheckout } from '../db/checkouts.js';
import { readForSending, type SendingView } from '../db/sending.js';
import {
  claimForSending,
  getMessage,
  markFailed,
  markNotSent,
  markSent,
  recordSkip,
  releaseClaim,
  reserveMessage,
  UNCONFIRMED,
} from '../db/messages.js';
import type { Message } from '../db/schema.js';
import { AppError, isAppError } from '../errors.js';
import { shopSender, shopSettings } from '../automations/settings.js';
import { composeSms } from './compose.js';
import type { Renderer } from './render.js';
import { pickCountry, toE164 } from '../shopify/phone.js';
import type { Logger } from '../logger.js';
import { ProviderError, type SmsProvider } from './providers/types.js';
import { blockedBySenderOptOut, REPLY_TRIGGERS } from './replies.js';
import { checkConsent } from '../rules/consent.js';
import type { JobData } from '../queue/queues.js';

export interface DeliveryDeps {
  db: Db;
  provider: SmsProvider;
  logger: Logger;
  /** Delivery-report callback URL for a message (carries the secret token). */
  callbackUrl: (messageId: number) => string;
  reconcileDelayMs: number;
  reconcileAttempts: number;
  now?: () => Date;
  /**
   * For campaign messages: whether the campaign still sends (`send`), is paused (`hold`: look again at the given time)
   * or was cancelled (`cancel`). Absent: campaign messages are sent like any other.
   */
  campaignGate?: (campaignId: string) => Promise<{ action: 'send' } | { action: 'hold'; until: Date } | { action: 'cancel' }>;
  /** Renders the template of a direct send (a job without `messageId`): the service's one renderer. */
  renderer: Renderer;
  /** The platform's sender (a shop's own wins) and the price of one part, for a direct send's message row. */
  sms: { sender: string; costPerSegment: number };
}

/** Trigger recorded on the message a direct send (the specification's `delivery:send`) creates. */
export const DIRECT_SEND_TRIGGER = 'direct';

/** How the processor talks back to the queue, without knowing BullMQ. */
export interface DeliveryControl {
  /** Names this job for good (its id and creation time): a direct send's message is created under it. */
  jobKey: string;
  /** Attempts made before this one, and the job's limit. */
  attemptsMade: number;
  maxAttempts: number;
  /** How many times this job has already waited for a delivery report. */
  reconcileRound: number;
  /** Put the job off until `at` (not counted as an attempt). Never returns. */
  deferUntil(at: Date, reconcileRound?: number): Promise<never>;
  /** The provider said slow down: pause this queue's worker for `ms` and retry the job. Never returns. */
  rateLimited(ms: number): Promise<never>;
}

export type DeliveryOutcome =
  | { status: 'sent'; messageId: number; providerMessageId: string }
  | { status: 'already'; messageId: number; messageStatus: Message['status'] }
  | { status: 'skipped' | 'cancelled'; messageId: number; reason: string }
  | { status: 'unconfirmed'; messageId: number };

const TERMINAL = new Set<Message['status']>(['sent', 'delivered', 'failed', 'skipped', 'cancelled']);

export async function deliverMessage(data: JobData<'delivery'>, deps: DeliveryDeps, control: DeliveryControl): Promise<DeliveryOutcome> {
  const now = deps.now?.() ?? new Date();
  const id = data.messageId ?? (await createDirectMessage(data, deps, control.jobKey, now));
  // One statement: the message and everything the send-time checks read (shop, contact, STOPs on the number).
  const view = await readForSending(deps.db, id);
  if (!view) throw new AppError('NOT_FOUND', `messageId: message ${id} does not exist`, { details: { field: 'messageId' } });
  const { message } = view;
  const log = deps.logger.child({ messageId: id });

  if (TERMINAL.has(message.status)) return { status: 'already', messageId: id, messageStatus: message.status };

  // An earlier attempt may have reached the provider: reconcile, never resend.
  if (message.status === 'sending') return reconcile(id, deps, control, now, log);

  // status === 'queued'
  if (message.scheduledFor && message.scheduledFor.getTime() > now.getTime() + 1000) {
    return control.deferUntil(message.scheduledFor);
  }
  if (message.campaignId && deps.campaignGate) {
    const gate = await deps.campaignGate(message.campaignId);
    if (gate.action === 'hold') return control.deferUntil(gate.until);
    if (gate.action === 'cancel') {
      await markNotSent(deps.db, id, 'cancelled', 'campaign_cancelled');
      return { status: 'cancelled', messageId: id, reason: 'campaign_cancelled' };
    }
  }
  const notSent = await recheckAtSendTime(view, data, deps);
  if (notSent) {
    const changed = await markNotSent(deps.db, id, notSent.status, notSent.reason);
    if (changed) {
      await recordSkip(deps.db, {
        shopId: message.shopId,
        contactId: message.contactId,
        automationId: message.automationId,
        campaignId: message.campaignId,
        messageId: id,
        trigger: message.trigger,
        objectId: null,
        reason: notSent.reason,
        detail: 'checked again at send time',
        requestId: data.requestId,
      });
      log.info({ reason: notSent.reason }, 'Message not sent');
    }
    return { status: notSent.status, messageId: id, reason: notSent.reason };
  }
  if (!message.toPhone || !message.body) throw new AppError('INVALID_PAYLOAD', `message ${id} has no recipient or no body`);

  const claimed = await claimForSending(deps.db, id, deps.provider.name);
  if (!claimed) {
    const current = await getMessage(deps.db, id);
    // Another run of this job (a stalled job picked up again) claimed it first and may still be sending. Completing
    // here would leave no job to settle the row if that send turns out ambiguous (its own job calls then fail on the
    // lost lock), so this run becomes the one that waits for the outcome.
    if (current?.status === 'sending') return reconcile(id, deps, control, now, log);
    return { status: 'already', messageId: id, messageStatus: current?.status ?? 'failed' };
  }
  try {
    const result = await deps.provider.send({
      to: message.toPhone,
      text: message.body,
      from: message.sender ?? 'SMSBlossom',
      unicode: message.encoding === 'UCS-2',
      reference: String(id),
      callbackUrl: deps.callbackUrl(id),
    });
    await markSent(deps.db, id, result.providerMessageId, result.acceptedAt);
    log.info({ provider: deps.provider.name, providerMessageId: result.providerMessageId, segments: message.segments }, 'Message sent');
    return { status: 'sent', messageId: id, providerMessageId: result.providerMessageId };
  } catch (err) {
    // Counted from now, not from the start of the job: the send may have taken the whole client timeout.
    const reconcileAt = new Date((deps.now?.() ?? new Date()).getTime() + deps.reconcileDelayMs);
    if (!(err instanceof ProviderError)) {
      // Unknown failure after the claim: treat as ambiguous, the reconcile path settles it.
      log.error({ err: (err as Error).message }, 'Send failed unexpectedly; outcome unknown');
      return control.deferUntil(reconcileAt, control.reconcileRound + 1);
    }
    const error = { code: err.code, text: err.message };
    switch (err.kind) {
      case 'permanent':
        await markFailed(deps.db, id, error);
        log.warn({ code: err.code }, 'Message failed permanently');
        // Permanent (`err.permanent`): the worker ends the job at once instead of retrying it.
        throw err;
      case 'ambiguous':
        log.warn({ code: err.code }, 'Send outcome unknown: waiting for the delivery report');
        return control.deferUntil(reconcileAt, control.reconcileRound + 1);
      case 'rate_limited':
        await releaseClaim(deps.db, id, error);
        return control.rateLimited(err.retryAfterMs ?? 1000);
      case 'transient':
      default:
        if (control.attemptsMade + 1 >= control.maxAttempts) {
          await markFailed(deps.db, id, { code: err.code, text: `retries exhausted: ${err.message}` });
        } else {
          await releaseClaim(deps.db, id, error);
        }
        throw err;
    }
  }
}

/**
 * The message row of a direct send, created once: rendered, composed and stored under a key derived from the job, so
 * a retry (or a second run of a stalled job) finds the row the first one made. Returns its id.
 */
async function createDirectMessage(data: JobData<'delivery'>, deps: DeliveryDeps, jobKey: string, now: Date): Promise<number> {
  const shopDomain = data.shopId;
  const shop = await getShopByDomain(deps.db, shopDomain);
  if (!shop) throw new AppError('NOT_FOUND', `shopId: no shop "${shopDomain}" is known`, { details: { field: 'shopId' } });
  const phone = toE164(data.recipient, pickCountry(shop.countryCode));
  if (!phone) throw new AppError('INVALID_PAYLOAD', 'recipient: not a phone number', { details: { field: 'recipient' } });
  const settings = shopSettings(shop);
  let rendered;
  try {
    rendered = await deps.renderer.render(data.template!, data.context, { timezone: shop.timezone, currency: shop.currency, locale: settings.locale, now });
  } catch (err) {
    if (isAppError(err)) throw new AppError(err.code, `template: ${err.message}`, { details: { field: 'template' }, cause: err });
    throw err;
  }
  const sms = composeSms(rendered.text, { marketing: true, shop: settings, costPerSegment: deps.sms.costPerSegment });
  const contact = await findContactByPhone(deps.db, shop.id, phone);
  const reserved = await reserveMessage(
    deps.db,
    {
      shopId: shop.id,
      contactId: contact?.id ?? null,
      kind: 'marketing',
      trigger: DIRECT_SEND_TRIGGER,
      idempotencyKey: `job-${jobKey}`,
      toPhone: phone,
      sender: shopSender(shop, deps.sms.sender),
      body: sms.text,
      encoding: sms.encoding,
      segments: sms.segments,
      costEstimate: sms.costEstimate,
      renderWarnings: rendered.warnings,
      scheduledFor: null,
      requestId: data.requestId,
    },
    null,
    now,
  );
  if (reserved.outcome === 'capped') throw new AppError('INTERNAL', 'a direct send is never capped');
  return reserved.message.id;
}

/**
 * A send whose outcome is unknown: wait for the delivery report (it settles the row, and the next run finds it
 * terminal), up to `reconcileAttempts` times; then fail it as unconfirmed. Never sends.
 */
async function reconcile(id: number, deps: DeliveryDeps, control: DeliveryControl, now: Date, log: Logger): Promise<DeliveryOutcome> {
  if (control.reconcileRound >= deps.reconcileAttempts) {
    await markFailed(deps.db, id, { code: UNCONFIRMED, text: 'no delivery report after an interrupted send; not resent' });
    log.warn('Send outcome unknown and unconfirmed: marked failed, not resent');
    return { status: 'unconfirmed', messageId: id };
  }
  log.info({ round: control.reconcileRound + 1 }, 'Send outcome unknown: waiting for the delivery report');
  return control.deferUntil(new Date(now.getTime() + deps.reconcileDelayMs), control.reconcileRound + 1);
}

/** What may have changed since the message was queued: consent, the shop, a STOP to the sender, a recovered checkout. */
async function recheckAtSendTime(
  view: SendingView,
  data: JobData<'delivery'>,
  deps: DeliveryDeps,
): Promise<{ status: 'skipped' | 'cancelled'; reason: string } | null> {
  const { message, contact } = view;
  if (view.shopUninstalledAt) return { status: 'cancelled', reason: 'shop_uninstalled' };
  // Answers to the customer's own message (HELP, the STOP and START confirmations): carriers require them even after
  // a STOP.
  if (message.trigger && REPLY_TRIGGERS.has(message.trigger)) return null;
  // A campaign's test send goes to the number the merchant typed in, not to a contact.
  if (message.trigger === 'campaign_test') return null;
  if (!contact) return { status: 'skipped', reason: 'no_contact' };
  const consent = checkConsent(contact, message.kind);
  if (!consent.allowed) return { status: 'skipped', reason: consent.reason };
  // A STOP to this sender, possibly through another shop sharing it, stops every message from it.
  if (blockedBySenderOptOut(message.sender, view.optOuts, contact)) return { status: 'skipped', reason: 'opted_out' };
  // The row's token: a job queued again by reconcile or a retry carries none (jobs queued before 0010 carry it alone).
  const checkoutToken = message.checkoutToken ?? data.checkoutToken;
  if (message.trigger === 'abandoned_checkout' && checkoutToken) {
    if ((await getCheckout(deps.db, message.shopId, checkoutToken))?.completedAt) return { status: 'cancelled', reason: 'checkout_completed' };
  }
  return null;
}
