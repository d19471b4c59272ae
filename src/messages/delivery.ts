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
import type { SemaphoreInterface } from 'async-mutex';
import type { Db } from '../db/client.js';
import { findContactByPhone } from '../db/contacts.js';
import { getShopByDomain } from '../db/shops.js';
import { getCheckout } from '../db/checkouts.js';
import { readForSending, readManyForSending, type SendingView } from '../db/sending.js';
import {
  claimForSending,
  claimManyForSending,
  getMessage,
  markFailed,
  markManySent,
  markNotSent,
  markSent,
  recordSkip,
  releaseClaim,
  releaseClaims,
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
import { ProviderError, type SendRequest, type SmsProvider } from './providers/types.js';
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
  /**
   * The process's slots for sends of campaign batches (DELIVERY_CONCURRENCY of them): a batch claims a round only
   * while it holds a slot for each of its messages. Absent: unbounded (tests that call the batch directly).
   */
  sendSlots?: { semaphore: SemaphoreInterface; size: number };
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

/** A batch job's control: the one-message job's, and a way to hand messages to one-message jobs. */
export interface BatchDeliveryControl extends DeliveryControl {
  /**
   * Gives messages of a batch to one-message jobs (`msg-<id>`, deduplicated by that id): a send whose outcome is
   * unknown (to wait for its report, `reconcileRound` 1) or a message due later.
   */
  handOff(items: readonly HandOff[]): Promise<void>;
}

export interface HandOff {
  messageId: number;
  contactId: number | null;
  campaignId: number | null;
  at: Date;
  reconcileRound: number;
}

export type DeliveryOutcome =
  | { status: 'sent'; messageId: number; providerMessageId: string }
  | { status: 'already'; messageId: number; messageStatus: Message['status'] }
  | { status: 'skipped' | 'cancelled'; messageId: number; reason: string }
  | { status: 'unconfirmed'; messageId: number };

/** What became of a batch's messages (`already`: final or gone before this run; `handedOff`: to one-message jobs). */
export interface BatchOutcome {
  status: 'batch';
  messages: number;
  sent: number;
  already: number;
  notSent: number;
  failed: number;
  handedOff: number;
}

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
    await recordNotSent(message, notSent, data.requestId, deps, log);
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
    const result = await deps.provider.send(sendRequestOf(message, deps));
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

/** What the provider gets for a message row (its recipient and body checked present by the caller). */
function sendRequestOf(m: Message, deps: Pick<DeliveryDeps, 'callbackUrl'>): SendRequest {
  return {
    to: m.toPhone!,
    text: m.body!,
    from: m.sender ?? 'SMSBlossom',
    unicode: m.encoding === 'UCS-2',
    reference: String(m.id),
    callbackUrl: deps.callbackUrl(m.id),
  };
}

/** A queued message the send-time checks stop: its row says why, and so does a skip record. */
async function recordNotSent(
  message: Message,
  notSent: { status: 'skipped' | 'cancelled'; reason: string },
  requestId: string,
  deps: DeliveryDeps,
  log: Logger,
): Promise<void> {
  if (!(await markNotSent(deps.db, message.id, notSent.status, notSent.reason))) return;
  await recordSkip(deps.db, {
    shopId: message.shopId,
    contactId: message.contactId,
    automationId: message.automationId,
    campaignId: message.campaignId,
    messageId: message.id,
    trigger: message.trigger,
    objectId: null,
    reason: notSent.reason,
    detail: 'checked again at send time',
    requestId,
  });
  log.info({ reason: notSent.reason }, 'Message not sent');
}

/** Sends in flight at once for one batch job: its messages go out in rounds of this many. */
const BATCH_SEND_CONCURRENCY = 8;

/**
 * Several messages of a campaign (`messageIds`), with the guarantees of {@link deliverMessage} and a fraction of its
 * round trips: one statement reads them all with what the send-time checks need; they go to the provider in rounds of
 * a few, each round claimed in one statement (`queued` → `sending`, as one caller); one statement settles the accepted
 * ones. Anything off the common path goes to the one-message path, which knows it
 * already: a message found `sending` (an earlier run of this job died mid-send) or whose send's outcome is unknown
 * waits for its delivery report in a job of its own (`msg-<id>`, never resent); a message due later is put off in one.
 * A provider asking us to slow down, or failing in a way that certainly sent nothing, stops the batch: the messages
 * it refused go back to `queued` with the later rounds', and the job is retried (the accepted ones are final by then
 * and not sent again).
 */
export async function deliverMessages(
  messageIds: readonly number[],
  data: JobData<'delivery'>,
  deps: DeliveryDeps,
  control: BatchDeliveryControl,
): Promise<BatchOutcome> {
  const now = deps.now?.() ?? new Date();
  const later = () => new Date((deps.now?.() ?? new Date()).getTime() + deps.reconcileDelayMs);
  const views = await readManyForSending(deps.db, messageIds);
  const log = deps.logger.child({ campaignId: data.campaignId, messages: messageIds.length });
  const tally = { messages: messageIds.length, sent: 0, already: messageIds.length - views.length, notSent: 0, failed: 0, handedOff: 0 };
  const handOff: HandOff[] = [];
  const handOver = (m: Message, at: Date, reconcileRound: number) =>
    handOff.push({ messageId: m.id, contactId: m.contactId, campaignId: m.campaignId === null ? null : Number(m.campaignId), at, reconcileRound });

  let due: SendingView[] = [];
  for (const view of views) {
    const m = view.message;
    if (TERMINAL.has(m.status)) tally.already++;
    else if (m.status === 'sending') handOver(m, later(), 1);
    else if (m.scheduledFor && m.scheduledFor.getTime() > now.getTime() + 1000) handOver(m, m.scheduledFor, 0);
    else due.push(view);
  }

  if (deps.campaignGate) {
    for (const campaignId of new Set(due.flatMap((v) => (v.message.campaignId ? [v.message.campaignId] : [])))) {
      const gate = await deps.campaignGate(campaignId);
      if (gate.action === 'send') continue;
      const ofCampaign = due.filter((v) => v.message.campaignId === campaignId);
      due = due.filter((v) => v.message.campaignId !== campaignId);
      if (gate.action === 'hold') {
        for (const v of ofCampaign) handOver(v.message, gate.until, 0);
        continue;
      }
      for (const v of ofCampaign) if (await markNotSent(deps.db, v.message.id, 'cancelled', 'campaign_cancelled')) tally.notSent++;
    }
  }

  const sendable: SendingView[] = [];
  for (const view of due) {
    const notSent = await recheckAtSendTime(view, data, deps);
    if (notSent) {
      await recordNotSent(view.message, notSent, data.requestId, deps, log.child({ messageId: view.message.id }));
      tally.notSent++;
    } else if (!view.message.toPhone || !view.message.body) {
      await markFailed(deps.db, view.message.id, { code: 'INVALID_PAYLOAD', text: 'no recipient or no body' });
      tally.failed++;
    } else {
      sendable.push(view);
    }
  }

  const accepted: Array<{ id: number; providerMessageId: string; at: Date }> = [];
  /** Claimed, then refused by the provider in a way that certainly sent nothing. */
  const refused: number[] = [];
  /** Never claimed: the rounds after a stop. Still `queued`. */
  const untouched: Message[] = [];
  let stop: ProviderError | undefined;
  let gate: Awaited<ReturnType<NonNullable<DeliveryDeps['campaignGate']>>> = { action: 'send' };
  const sendOne = async (m: Message) => {
    try {
      const result = await deps.provider.send(sendRequestOf(m, deps));
      accepted.push({ id: m.id, providerMessageId: result.providerMessageId, at: result.acceptedAt });
    } catch (err) {
      if (err instanceof ProviderError && err.kind === 'permanent') {
        await markFailed(deps.db, m.id, { code: err.code, text: err.message });
        tally.failed++;
      } else if (err instanceof ProviderError && (err.kind === 'transient' || err.kind === 'rate_limited')) {
        if (!stop || err.kind === 'rate_limited') stop = err;
        refused.push(m.id);
      } else {
        // Ambiguous, or unknown after the claim: it may have reached the provider. Wait for its report; never resend.
        log.warn({ messageId: m.id, code: err instanceof ProviderError ? err.code : undefined }, 'Send outcome unknown: waiting for the delivery report');
        handOver(m, later(), 1);
      }
    }
  };

  // Rounds of BATCH_SEND_CONCURRENCY (at most the slots). A round is claimed only once the process's send slots for it
  // are held, so what a killed process leaves claimed and unsent is bounded by the slots, not by the batches running.
  // Before each round after the first the campaign is looked at again: a pause or a cancel stops a batch within one
  // round.
  const campaignId = sendable[0]?.message.campaignId ?? null;
  const roundSize = Math.min(BATCH_SEND_CONCURRENCY, deps.sendSlots?.size ?? BATCH_SEND_CONCURRENCY);
  for (let i = 0; i < sendable.length; i += roundSize) {
    const round = sendable.slice(i, i + roundSize).map((v) => v.message);
    if (stop === undefined && i > 0 && campaignId !== null && deps.campaignGate) gate = await deps.campaignGate(campaignId);
    if (stop !== undefined || gate.action !== 'send') {
      untouched.push(...round);
      continue;
    }
    const [, release] = deps.sendSlots ? await deps.sendSlots.semaphore.acquire(round.length) : [0, () => {}];
    try {
      const claimed = await claimManyForSending(deps.db, round.map((m) => m.id), deps.provider.name);
      // Not claimed: another run holds it (it may die mid-send) or it is final; the one-message path finds out which.
      for (const m of round) if (!claimed.has(m.id)) handOver(m, later(), 1);
      await Promise.all(round.filter((m) => claimed.has(m.id)).map(sendOne));
    } finally {
      release();
    }
  }

  await markManySent(deps.db, accepted);
  tally.sent = accepted.length;
  if (gate.action === 'hold') for (const m of untouched) handOver(m, gate.until, 0);
  if (gate.action === 'cancel') for (const m of untouched) if (await markNotSent(deps.db, m.id, 'cancelled', 'campaign_cancelled')) tally.notSent++;
  if (handOff.length) await control.handOff(handOff);
  tally.handedOff = handOff.length;
  log.info({ provider: deps.provider.name, ...tally, unsent: refused.length + untouched.length }, 'Messages sent');
  if (stop) {
    const error = { code: stop.code, text: stop.message };
    if (stop.kind === 'rate_limited') {
      await releaseClaims(deps.db, refused, error);
      return control.rateLimited(stop.retryAfterMs ?? 1000);
    }
    if (control.attemptsMade + 1 >= control.maxAttempts) {
      const text = `retries exhausted: ${stop.message}`;
      for (const id of [...refused, ...untouched.map((m) => m.id)]) await markFailed(deps.db, id, { code: stop.code, text });
    } else {
      await releaseClaims(deps.db, refused, error);
    }
    throw stop;
  }
  return { status: 'batch', ...tally };
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
