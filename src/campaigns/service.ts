/**
 * Campaign lifecycle, as plain functions over explicit dependencies (HTTP routes and the CLI both call these):
 *
 * ```
 * draft ──send──▶ sending ──every message final──▶ sent
 *   │               ▲  │
 *   └─schedule─▶ scheduled (delayed job fires)    pause ⇄ resume (paused)
 * draft | scheduled | sending | paused ──cancel──▶ cancelled          shop uninstalled ──▶ failed
 * ```
 *
 * Every transition is a conditional UPDATE from the states that allow it, so two racing requests cannot both win.
 * Send, schedule and resume bump the campaign's generation and add its batch job under `campaign-<id>-g<generation>`:
 * a deterministic id (adding twice is a no-op) that a newer generation supersedes (the older job stands down).
 */
import { randomUUID } from 'node:crypto';
import { DateTime } from 'luxon';
import { shopSender } from '../automations/settings.js';
import {
  campaignCounts,
  cancelQueuedMessages,
  createCampaign as insertCampaign,
  getShopCampaign,
  transitionCampaign,
  updateDraftCampaign,
} from '../db/campaigns.js';
import type { Database } from '../db/client.js';
import { reserveMessage } from '../db/messages.js';
import type { Campaign, CampaignSettings, CampaignStatus, Shop } from '../db/schema.js';
import { countAudience, getSegment, sampleAudience } from '../db/segments.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { contentColumns } from '../messages/compose.js';
import { estimateCost } from '../messages/encoding.js';
import type { Renderer } from '../messages/render.js';
import { jobIdFrom, type QueueRegistry } from '../queue/queues.js';
import { isValidWindow, quietHoursDecision } from '../rules/quietHours.js';
import { toE164 } from '../shopify/phone.js';
import { campaignFilter, campaignRules, composeCampaignMessage, type CampaignPacing } from './batch.js';
import { parseSegmentFilter, type SegmentFilter } from './segments.js';

export interface CampaignServiceDeps {
  database: Database;
  queues: QueueRegistry;
  logger: Logger;
  renderer: Renderer;
  sms: { sender: string; costPerSegment: number };
  pacing: Pick<CampaignPacing, 'batchSize'>;
  now?: () => Date;
}

export interface CampaignInput {
  name: string;
  body: string;
  segmentId?: number | null;
  /** An inline audience filter (instead of, or without, a saved segment). */
  filter?: unknown;
  discountCode?: string | null;
  linkUrl?: string | null;
  settings?: CampaignSettings;
}

const EDITABLE: readonly CampaignStatus[] = ['draft', 'scheduled'];

function validateSettings(s: CampaignSettings | undefined): void {
  const qh = s?.quietHours;
  if (qh && (qh.start !== undefined || qh.end !== undefined) && !isValidWindow({ start: qh.start ?? '21:00', end: qh.end ?? '08:00' })) {
    throw new AppError('VALIDATION_FAILED', 'settings.quietHours: start and end must be HH:mm');
  }
}

/** A campaign's audience may only be a segment of its own shop: another shop's is not found, like a missing one. */
async function checkSegmentOfShop(deps: CampaignServiceDeps, shop: Shop, segmentId: number | null | undefined): Promise<void> {
  if (segmentId != null && !(await getSegment(deps.database.db, shop.id, segmentId))) {
    throw new AppError('NOT_FOUND', `segment ${segmentId} does not exist`);
  }
}

export async function createCampaign(deps: CampaignServiceDeps, shop: Shop, input: CampaignInput): Promise<Campaign> {
  deps.renderer.validate(input.body);
  validateSettings(input.settings);
  const filter = input.filter !== undefined && input.filter !== null ? parseSegmentFilter(input.filter) : null;
  await checkSegmentOfShop(deps, shop, input.segmentId);
  return insertCampaign(deps.database.db, {
    shopId: shop.id,
    name: input.name,
    segmentId: input.segmentId ?? null,
    filter,
    body: input.body,
    discountCode: input.discountCode ?? null,
    linkUrl: input.linkUrl ?? null,
    settings: input.settings ?? {},
  });
}

export async function requireCampaign(deps: Pick<CampaignServiceDeps, 'database'>, shop: Shop, id: number): Promise<Campaign> {
  const c = await getShopCampaign(deps.database.db, shop.id, id);
  if (!c) throw new AppError('NOT_FOUND', `campaign ${id} does not exist`);
  return c;
}

function conflict(c: Campaign, action: string): AppError {
  return new AppError('CAMPAIGN_STATE_CONFLICT', `campaign ${c.id} is ${c.status}: cannot ${action}`, { details: { status: c.status } });
}

export async function updateCampaign(deps: CampaignServiceDeps, shop: Shop, id: number, patch: Partial<CampaignInput>): Promise<Campaign> {
  const c = await requireCampaign(deps, shop, id);
  if (c.status !== 'draft') throw conflict(c, 'edit (only drafts can be edited)');
  if (patch.body !== undefined) deps.renderer.validate(patch.body);
  validateSettings(patch.settings);
  const filter = patch.filter !== undefined ? (patch.filter === null ? null : parseSegmentFilter(patch.filter)) : undefined;
  await checkSegmentOfShop(deps, shop, patch.segmentId);
  const row = await updateDraftCampaign(deps.database.db, id, {
    ...(patch.name !== undefined ? { name: patch.name } : {}),
    ...(patch.body !== undefined ? { body: patch.body } : {}),
    ...(patch.segmentId !== undefined ? { segmentId: patch.segmentId } : {}),
    ...(filter !== undefined ? { filter } : {}),
    ...(patch.discountCode !== undefined ? { discountCode: patch.discountCode } : {}),
    ...(patch.linkUrl !== undefined ? { linkUrl: patch.linkUrl } : {}),
    ...(patch.settings !== undefined ? { settings: patch.settings } : {}),
  });
  if (!row) throw conflict(await requireCampaign(deps, shop, id), 'edit');
  return row;
}

/** The audience filter frozen into the campaign when it starts: its inline filter, else its segment's. */
async function audienceOf(deps: CampaignServiceDeps, shop: Shop, c: Campaign): Promise<SegmentFilter> {
  if (c.filter !== null && c.filter !== undefined) return parseSegmentFilter(c.filter);
  if (c.segmentId !== null) {
    const seg = await getSegment(deps.database.db, shop.id, c.segmentId);
    if (!seg) throw new AppError('NOT_FOUND', `segment ${c.segmentId} of campaign ${c.id} no longer exists`);
    return parseSegmentFilter(seg.filter);
  }
  return { and: [] };
}

async function enqueueBatch(deps: CampaignServiceDeps, shop: Shop, c: Campaign, delayMs = 0): Promise<string> {
  return deps.queues.enqueueJob(
    'campaigns',
    'batch',
    { campaignId: c.id, shopId: shop.domain, batchSize: deps.pacing.batchSize, generation: c.generation },
    { jobId: batchJobId(c), ...(delayMs > 0 ? { delay: delayMs } : {}) },
  );
}

export const batchJobId = (c: Pick<Campaign, 'id' | 'generation'>) => jobIdFrom('campaign', c.id, `g${c.generation}`);

/** Starts sending now (from draft or scheduled). */
export async function sendCampaign(deps: CampaignServiceDeps, shop: Shop, id: number): Promise<Campaign> {
  const c = await requireCampaign(deps, shop, id);
  if (!EDITABLE.includes(c.status)) throw conflict(c, 'send');
  const filter = await audienceOf(deps, shop, c);
  const now = deps.now?.() ?? new Date();
  const total = await countAudience(deps.database.db, { shopId: shop.id, filter, now });
  const started = await transitionCampaign(deps.database.db, id, EDITABLE, {
    status: 'sending',
    filter,
    startedAt: now,
    scheduledAt: null,
    totalRecipients: total,
    bumpGeneration: true,
  });
  if (!started) throw conflict(await requireCampaign(deps, shop, id), 'send');
  if (c.status === 'scheduled') await removeBatchJob(deps, c);
  await enqueueBatch(deps, shop, started);
  deps.logger.info({ campaignId: id, total }, 'Campaign sending');
  return started;
}

export interface ScheduleResult {
  campaign: Campaign;
  /** Set when the time falls in the shop's quiet hours: recipients in that window get the message when it ends. */
  warning: string | null;
}

/**
 * Schedules the campaign. `at` is an ISO date-time; without an offset it is wall-clock time in the shop's timezone.
 * The batch job is a BullMQ delayed job (kept in Redis, so it survives a restart of every process).
 */
export async function scheduleCampaign(deps: CampaignServiceDeps, shop: Shop, id: number, at: string): Promise<ScheduleResult> {
  const c = await requireCampaign(deps, shop, id);
  if (!EDITABLE.includes(c.status)) throw conflict(c, 'schedule');
  const when = DateTime.fromISO(at, { zone: shop.timezone || 'UTC', setZone: false });
  if (!when.isValid) throw new AppError('VALIDATION_FAILED', `at: not an ISO 8601 date-time: ${JSON.stringify(at)}`);
  const now = deps.now?.() ?? new Date();
  if (when.toMillis() <= now.getTime()) throw new AppError('VALIDATION_FAILED', 'at: must be in the future (use send to start now)');
  const filter = await audienceOf(deps, shop, c);
  const scheduled = await transitionCampaign(deps.database.db, id, EDITABLE, {
    status: 'scheduled',
    filter,
    scheduledAt: when.toJSDate(),
    bumpGeneration: true,
  });
  if (!scheduled) throw conflict(await requireCampaign(deps, shop, id), 'schedule');
  if (c.status === 'scheduled') await removeBatchJob(deps, c);
  await enqueueBatch(deps, shop, scheduled, when.toMillis() - now.getTime());
  const rules = campaignRules(scheduled, shop);
  const qh = quietHoursDecision({ now: when.toJSDate(), timezone: shop.timezone, window: rules.quietHours!.window, enabled: rules.quietHours!.enabled !== false });
  const warning = qh.allowed
    ? null
    : `${when.setZone(qh.timezone).toFormat('yyyy-MM-dd HH:mm')} (${qh.timezone}) is inside quiet hours; recipients in that window get the message at ${DateTime.fromJSDate(qh.deferUntil).setZone(qh.timezone).toFormat('HH:mm')}`;
  return { campaign: scheduled, warning };
}

async function removeBatchJob(deps: CampaignServiceDeps, c: Campaign): Promise<void> {
  // Best effort: a job that is running or already gone stands down by itself (its generation is stale).
  await deps.queues
    .get('campaigns')
    .remove(batchJobId(c))
    .catch(() => 0);
}

/** Stops producing pages; queued messages of the campaign wait (their delivery jobs look again later). */
export async function pauseCampaign(deps: CampaignServiceDeps, shop: Shop, id: number): Promise<Campaign> {
  const paused = await transitionCampaign(deps.database.db, id, ['sending'], { status: 'paused', pausedAt: deps.now?.() ?? new Date() });
  if (!paused) throw conflict(await requireCampaign(deps, shop, id), 'pause');
  return paused;
}

export async function resumeCampaign(deps: CampaignServiceDeps, shop: Shop, id: number): Promise<Campaign> {
  const resumed = await transitionCampaign(deps.database.db, id, ['paused'], { status: 'sending', pausedAt: null, bumpGeneration: true });
  if (!resumed) throw conflict(await requireCampaign(deps, shop, id), 'resume');
  await enqueueBatch(deps, shop, resumed);
  return resumed;
}

/** No new messages: queued ones are cancelled; ones already handed to the provider finish. */
export async function cancelCampaign(deps: CampaignServiceDeps, shop: Shop, id: number): Promise<{ campaign: Campaign; cancelledMessages: number }> {
  const before = await requireCampaign(deps, shop, id);
  const cancelled = await transitionCampaign(deps.database.db, id, ['draft', 'scheduled', 'sending', 'paused'], {
    status: 'cancelled',
    cancelledAt: deps.now?.() ?? new Date(),
    completedAt: deps.now?.() ?? new Date(),
  });
  if (!cancelled) throw conflict(before, 'cancel');
  if (before.status === 'scheduled') await removeBatchJob(deps, before);
  const cancelledMessages = await cancelQueuedMessages(deps.database.db, id);
  return { campaign: cancelled, cancelledMessages };
}

/**
 * Sends the campaign's message to one number now (not counted in the campaign), rendered with the first contact of
 * the audience, or sample values when it is empty. Goes through the delivery queue like any message, ahead of campaign
 * traffic.
 */
export async function testSendCampaign(deps: CampaignServiceDeps, shop: Shop, id: number, phone: string): Promise<{ messageId: number }> {
  const c = await requireCampaign(deps, shop, id);
  const e164 = toE164(phone, shop.countryCode);
  if (!e164) throw new AppError('VALIDATION_FAILED', 'phone: not a valid phone number');
  const now = deps.now?.() ?? new Date();
  const [sample] = await sampleAudience(deps.database.db, { shopId: shop.id, filter: await audienceOf(deps, shop, c), now }, 1);
  const contact = sample ? { ...sample, totalSpent: String(sample.totalSpent) } : { firstName: 'Jane', lastName: 'Doe' };
  const sms = await composeCampaignMessage({ body: c.body, campaign: c, shop, contact, timezone: shop.timezone, now }, deps);
  const requestId = `req_${now.getTime()}_test`;
  const reserved = await reserveMessage(
    deps.database.db,
    {
      shopId: shop.id,
      contactId: null,
      campaignId: null,
      kind: 'transactional',
      trigger: CAMPAIGN_TEST_TRIGGER,
      idempotencyKey: `camp-${c.id}-test-${randomUUID()}`,
      toPhone: e164,
      sender: shopSender(shop, deps.sms.sender),
      ...contentColumns(sms),
      renderWarnings: sms.warnings,
      scheduledFor: null,
      requestId,
    },
    null,
    now,
  );
  if (reserved.outcome === 'capped') throw new AppError('INTERNAL', 'a test send cannot be capped');
  await deps.queues.enqueueJob(
    'delivery',
    'send',
    { shopId: shop.domain, messageId: reserved.message.id, requestId },
    { jobId: jobIdFrom('msg', reserved.message.id) },
  );
  return { messageId: reserved.message.id };
}

/** Trigger of a campaign's test send: operator-requested, to the merchant's own number, not a marketing message. */
export const CAMPAIGN_TEST_TRIGGER = 'campaign_test';

export interface CampaignProgress {
  id: number;
  status: CampaignStatus;
  total: number;
  /** Message rows created and not skipped. */
  enqueued: number;
  queued: number;
  sending: number;
  /** Accepted by the provider (delivered ones included). */
  sent: number;
  delivered: number;
  failed: number;
  cancelled: number;
  skipped: number;
  skippedByReason: Record<string, number>;
  /** Contacts processed so far (messages + skips). */
  processed: number;
  /** Messages per second handed to the provider since the campaign started. */
  ratePerSec: number;
  /** Seconds until every recipient is processed at that rate; null when unknown. */
  etaSeconds: number | null;
  startedAt: string | null;
  completedAt: string | null;
  percent: number;
}

export async function campaignProgress(deps: Pick<CampaignServiceDeps, 'database' | 'now'>, c: Campaign): Promise<CampaignProgress> {
  // One statement over the campaign's counters: the same cost for 100 recipients or 1,000,000.
  const counts = await campaignCounts(deps.database.db, c.id);
  const { skippedByReason, skipped } = counts;
  const n = (s: 'queued' | 'sending' | 'sent' | 'delivered' | 'failed' | 'cancelled') => counts[s];
  const processed = counts.queued + counts.sending + counts.sent + counts.delivered + counts.failed + counts.skipped + counts.cancelled;
  const sent = n('sent') + n('delivered');
  const total = Math.max(c.totalRecipients ?? 0, processed);
  const end = c.completedAt ?? deps.now?.() ?? new Date();
  const elapsed = c.startedAt ? Math.max(0.001, (end.getTime() - c.startedAt.getTime()) / 1000) : 0;
  const done = sent + n('failed') + skipped + n('cancelled');
  const ratePerSec = elapsed ? (sent + n('failed')) / elapsed : 0;
  const remaining = Math.max(0, total - done);
  const doneRate = elapsed ? done / elapsed : 0;
  const finished = c.status === 'sent' || c.status === 'cancelled' || c.status === 'failed';
  return {
    id: c.id,
    status: c.status,
    total,
    enqueued: processed - skipped,
    queued: n('queued'),
    sending: n('sending'),
    sent,
    delivered: n('delivered'),
    failed: n('failed'),
    cancelled: n('cancelled'),
    skipped,
    skippedByReason,
    processed,
    ratePerSec: Math.round(ratePerSec * 10) / 10,
    etaSeconds: finished ? 0 : doneRate > 0 ? Math.ceil(remaining / doneRate) : null,
    startedAt: c.startedAt?.toISOString() ?? null,
    completedAt: c.completedAt?.toISOString() ?? null,
    percent: total ? Math.min(100, Math.round((done / total) * 1000) / 10) : finished ? 100 : 0,
  };
}

export interface AudiencePreview {
  count: number;
  sample: Array<{ id: number; firstName: string | null; lastName: string | null; countryCode: string | null; tags: string[]; smsConsent: string }>;
}

export async function previewAudience(deps: Pick<CampaignServiceDeps, 'database' | 'now'>, shop: Shop, filter: SegmentFilter, sampleSize = 10): Promise<AudiencePreview> {
  const now = deps.now?.() ?? new Date();
  const q = { shopId: shop.id, filter, now };
  const [count, sample] = await Promise.all([countAudience(deps.database.db, q), sampleAudience(deps.database.db, q, sampleSize)]);
  // No phone numbers or emails in a preview.
  return {
    count,
    sample: sample.map((c) => ({ id: c.id, firstName: c.firstName, lastName: c.lastName, countryCode: c.countryCode, tags: c.tags, smsConsent: c.smsConsent })),
  };
}

export interface AudienceEstimate {
  /** Contacts matching the filter. */
  matching: number;
  /** Of those, contacts a marketing message may go to (subscribed, not opted out, with a phone). */
  recipients: number;
  messages: number;
  /** SMS parts per message, from the body rendered for a sample contact (with the opt-out footer). */
  partsPerMessage: number;
  parts: number;
  encoding: 'GSM-7' | 'UCS-2';
  cost: number;
  costPerPart: number;
  note: string;
}

/** Recipients after consent, messages, parts and cost, for a filter and a body. */
export async function estimateAudience(
  deps: Pick<CampaignServiceDeps, 'database' | 'now' | 'renderer' | 'sms'>,
  shop: Shop,
  filter: SegmentFilter,
  body: string,
  campaign?: Campaign,
): Promise<AudienceEstimate> {
  const now = deps.now?.() ?? new Date();
  const q = { shopId: shop.id, filter, now };
  const [matching, recipients, sample] = await Promise.all([
    countAudience(deps.database.db, q),
    countAudience(deps.database.db, { ...q, marketingConsent: true }),
    sampleAudience(deps.database.db, { ...q, marketingConsent: true }, 1),
  ]);
  const pseudo = (campaign ?? { id: 0, name: 'estimate', discountCode: null, linkUrl: null }) as Campaign;
  const contact = sample[0] ? { ...sample[0], totalSpent: String(sample[0].totalSpent) } : { firstName: 'Jane' };
  const sms = await composeCampaignMessage({ body, campaign: pseudo, shop, contact, timezone: shop.timezone, now }, deps);
  const parts = sms.segments * recipients;
  return {
    matching,
    recipients,
    messages: recipients,
    partsPerMessage: sms.segments,
    parts,
    encoding: sms.encoding,
    cost: estimateCost(parts, deps.sms.costPerSegment),
    costPerPart: deps.sms.costPerSegment,
    note: 'an upper bound: the frequency cap is applied per recipient when the campaign sends',
  };
}

export async function estimateCampaign(deps: CampaignServiceDeps, shop: Shop, id: number): Promise<AudienceEstimate> {
  const c = await requireCampaign(deps, shop, id);
  const filter = c.status === 'draft' ? await audienceOf(deps, shop, c) : campaignFilter(c);
  return estimateAudience(deps, shop, filter, c.body, c);
}
