/**
 * `delivery:send`: one message row → one send through the provider, exactly once.
 *
 * - The message row exists before any send (unique idempotency key); a job for a message that is already sent,
 *   delivered, failed, skipped or cancelled does nothing.
 * - `queued` → `sending` is a conditional UPDATE: of two workers running the same job (a stalled job picked up again),
 *   only one gets to send.
 * - A failure that certainly did not reach the provider (connection refused, HTTP 5xx/429, provider code 1) puts the
 *   row back to `queued` and lets BullMQ retry with backoff. A permanent one (codes 2–8, 4xx) fails the row and ends
 *   the job with `UnrecoverableError`.
 * - A send whose outcome is unknown (a timeout after the request was written, a worker killed mid-send) leaves the row
 *   `sending`. It is never sent again: the job waits for the delivery report, which carries our message id as
 *   `reference` and settles the row; if none comes after `reconcileAttempts` waits, the row is failed as
 *   `DELIVERY_UNCONFIRMED` (the message may have been delivered; it is not sent twice).
 */
import { UnrecoverableError } from 'bullmq';
import type { Db } from '../../db/client.js';
import { getContact } from '../../db/contacts.js';
import { getShopByDomain } from '../../db/shops.js';
import { getCheckout } from '../../db/checkouts.js';
import { claimForSending, getMessage, markFailed, markNotSent, markSent, recordSkip, releaseClaim, UNCONFIRMED } from '../../db/messages.js';
import type { Message } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { ProviderError, type SmsProvider } from '../../messages/providers/types.js';
import { checkConsent } from '../../rules/consent.js';
import type { JobData } from '../queues.js';

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
}

/** How the processor talks back to the queue, without knowing BullMQ. */
export interface DeliveryControl {
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

export async function processDelivery(data: JobData<'delivery'>, deps: DeliveryDeps, control: DeliveryControl): Promise<DeliveryOutcome> {
  const now = deps.now?.() ?? new Date();
  if (!data.messageId) {
    throw new AppError('INVALID_JOB_DATA', 'delivery:send needs messageId: messages are created by automations and campaigns');
  }
  const id = Number(data.messageId);
  const message = await getMessage(deps.db, id);
  if (!message) throw new AppError('NOT_FOUND', `message ${id} does not exist`);
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
  const notSent = await recheckAtSendTime(message, data, deps);
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
        throw new UnrecoverableError(`${err.code}: ${err.message}`);
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

/** What may have changed since the message was queued: consent, the shop, a recovered checkout. */
async function recheckAtSendTime(
  message: Message,
  data: JobData<'delivery'>,
  deps: DeliveryDeps,
): Promise<{ status: 'skipped' | 'cancelled'; reason: string } | null> {
  const shop = await getShopByDomain(deps.db, data.shopId);
  if (!shop || shop.uninstalledAt) return { status: 'cancelled', reason: 'shop_uninstalled' };
  // A HELP auto-reply answers the customer's own message: carriers require it even after STOP.
  if (message.trigger === 'help_reply') return null;
  // A campaign's test send goes to the number the merchant typed in, not to a contact.
  if (message.trigger === 'campaign_test') return null;
  const contact = message.contactId !== null ? await getContact(deps.db, message.shopId, message.contactId) : undefined;
  if (!contact) return { status: 'skipped', reason: 'no_contact' };
  const consent = checkConsent(contact, message.kind);
  if (!consent.allowed) return { status: 'skipped', reason: consent.reason };
  if (message.trigger === 'abandoned_checkout') {
    const token = /-checkout-(.+)$/.exec(message.idempotencyKey)?.[1];
    if (token && (await getCheckout(deps.db, message.shopId, token))?.completedAt) return { status: 'cancelled', reason: 'checkout_completed' };
  }
  return null;
}
