/**
 * `campaigns:batch` — a campaign's audience becomes message rows and delivery jobs, one keyset page at a time,
 * paced by the campaign's backlog.
 *
 * Exactly once:
 * - a page is one transaction: lock the campaign row, read the next `batchSize` matching contacts after the cursor
 *   (locked, in id order), decide per recipient (consent, frequency cap, quiet hours — `evaluateRules`, as automations
 *   do), insert one message row per contact (idempotency key `camp-<campaign>-<contact>`, skipped recipients included),
 *   advance the cursor. A crash before the commit leaves nothing; after it, the cursor has moved with the rows.
 * - delivery jobs are added after the commit with ids `msg-<message id>`, or `msgs-<first>-<last>` for a batch of them
 *   ({@link enqueueCampaignDeliveries}). The page's `pending_enqueue` flag stays set until they are in Redis; the next
 *   run that finds it set adds the page's still-queued messages again (a job already there is not added twice; one for
 *   a message another job took finds it claimed or final, and sends nothing).
 *
 * Bounded memory: a page is produced only while the campaign has fewer than `maxBacklog − batchSize` messages
 * `queued`/`sending`; otherwise the job puts itself off `pollMs` and lets the delivery workers drain. Redis holds at
 * most `maxBacklog` delivery jobs per running campaign, whatever the audience size. Once the audience is exhausted the
 * job keeps polling until every message is final, then marks the campaign `sent`.
 */
import { DEFAULT_FREQUENCY_CAP, DEFAULT_QUIET_HOURS } from '../automations/defaults.js';
import { shopDisplayName, shopSender, shopSettings } from '../automations/settings.js';
import {
  advanceCursor,
  clearPendingEnqueue,
  countOutstanding,
  getCampaign,
  insertPageMessages,
  lockCampaign,
  queuedMessagesOfPage,
  recentSendsOfPage,
  selectAudiencePage,
  transitionCampaign,
  type AudienceContact,
  type PageMessage,
} from '../db/campaigns.js';
import type { Database } from '../db/client.js';
import { countAudience } from '../db/segments.js';
import type { Campaign, Shop } from '../db/schema.js';
import { getShopByDomain } from '../db/shops.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { composeSms, contentColumns, type ComposedSms } from '../messages/compose.js';
import { withUtm } from '../messages/links.js';
import type { Renderer, RenderOptions } from '../messages/render.js';
import { jobIdFrom, newRequestId, parseJobData, type JobData, type QueueRegistry } from '../queue/queues.js';
import { evaluateRules, type AutomationRules } from '../rules/pipeline.js';
import { recipientTimezone } from '../rules/quietHours.js';
import { parseSegmentFilter, type SegmentFilter } from './segments.js';

/**
 * BullMQ priority of campaign delivery jobs. Jobs without a priority (automations, transactional messages, test sends)
 * sit in the queue's wait list, which a worker always empties before it takes a prioritized job: an order confirmation
 * never waits behind a campaign's backlog.
 */
export const CAMPAIGN_DELIVERY_PRIORITY = 10;

export interface CampaignPacing {
  /** Contacts per page (CAMPAIGN_BATCH_SIZE). */
  batchSize: number;
  /** Most messages of one campaign `queued`/`sending` at once (CAMPAIGN_MAX_BACKLOG). */
  maxBacklog: number;
  /** How long a job whose backlog is full waits before looking again (CAMPAIGN_POLL_MS). */
  pollMs: number;
  /** Pages one run produces before it yields the worker to other campaigns. */
  maxPagesPerRun: number;
  /** Messages per delivery job (CAMPAIGN_SEND_BATCH; 1 when the provider has a send rate). Default 1. */
  sendBatch?: number;
}

export interface CampaignDeps {
  database: Database;
  queues: QueueRegistry;
  logger: Logger;
  renderer: Renderer;
  sms: { sender: string; costPerSegment: number };
  pacing: CampaignPacing;
  now?: () => Date;
}

/** How the processor puts its job off, without knowing BullMQ. */
export interface BatchControl {
  /** Run the job again at `at` (not counted as an attempt). Never returns. */
  deferUntil(at: Date): Promise<never>;
}

export type BatchOutcome =
  | { outcome: 'stale'; reason: string }
  | { outcome: 'stopped'; status: Campaign['status'] }
  | { outcome: 'sent'; campaignId: number };

/** The rules a campaign message goes through: marketing consent, the cap and quiet hours of the campaign, else the shop. */
export function campaignRules(campaign: Campaign, shop: Shop): AutomationRules {
  const s = shopSettings(shop);
  const c = campaign.settings ?? {};
  const qh = { ...DEFAULT_QUIET_HOURS, ...s.quietHours, ...c.quietHours };
  const cap = c.frequencyCap !== undefined ? c.frequencyCap : s.frequencyCap !== undefined ? s.frequencyCap : DEFAULT_FREQUENCY_CAP;
  return {
    enabled: true,
    transactional: false,
    consent: 'marketing',
    conditions: null,
    frequencyCap: cap,
    quietHours: { enabled: qh.enabled, window: { start: qh.start, end: qh.end } },
    quietHoursBypass: false,
  };
}

/** What a campaign template can use: shop, customer (no phone or email), campaign, discount code and tagged link. */
export function campaignTemplateVars(campaign: Campaign, shop: Shop, contact: Partial<AudienceContact>): Record<string, unknown> {
  const link = withUtm(campaign.linkUrl, String(campaign.id));
  return {
    shop: { name: shopDisplayName(shop), domain: shop.domain, currency: shop.currency },
    customer: {
      firstName: contact.firstName ?? null,
      lastName: contact.lastName ?? null,
      countryCode: contact.countryCode ?? null,
      tags: contact.tags ?? [],
      ordersCount: contact.ordersCount ?? 0,
      totalSpent: contact.totalSpent ?? '0',
    },
    campaign: { id: String(campaign.id), name: campaign.name },
    discountCode: campaign.discountCode,
    link,
  };
}

/** How a campaign message renders for a recipient in `timezone`: the shop's currency and locale. */
function campaignRenderOptions(shop: Shop, timezone: string | null, now: Date): RenderOptions {
  return { timezone, currency: shop.currency, locale: shopSettings(shop).locale, now };
}

/** A rendered campaign text as the recipient gets it: with the shop's opt-out footer, encoded and priced. */
function composeCampaignText(text: string, shop: Shop, deps: { sms: { costPerSegment: number } }): ComposedSms {
  return composeSms(text, { marketing: true, shop: shopSettings(shop), costPerSegment: deps.sms.costPerSegment });
}

/** A campaign message as the recipient gets it: rendered, with the shop's opt-out footer, encoded and priced. */
export async function composeCampaignMessage(
  input: { body: string; campaign: Campaign; shop: Shop; contact: Partial<AudienceContact>; timezone: string | null; now: Date },
  deps: { renderer: Renderer; sms: { costPerSegment: number } },
): Promise<ComposedSms & { warnings: string[] }> {
  const vars = campaignTemplateVars(input.campaign, input.shop, input.contact);
  const rendered = await deps.renderer.render(input.body, vars, campaignRenderOptions(input.shop, input.timezone, input.now));
  return { ...composeCampaignText(rendered.text, input.shop, deps), warnings: rendered.warnings };
}

/** One message per campaign per contact, whatever is retried, resumed or re-run. */
export const campaignIdempotencyKey = (campaignId: number, contactId: number) => `camp-${campaignId}-${contactId}`;

/** The audience filter the campaign sends to: its own copy, else its segment's, else every contact. */
export function campaignFilter(campaign: Campaign): SegmentFilter {
  return campaign.filter === null || campaign.filter === undefined ? { and: [] } : parseSegmentFilter(campaign.filter);
}

/**
 * Delivery jobs for a campaign's queued messages, at campaign priority, deferred ones delayed. With `sendBatch` 1, a
 * job per message (`msg-<id>`); otherwise messages due at the same moment go `sendBatch` to a job (`messageIds`, id
 * `msgs-<first>-<last>`), which reads, claims and settles them in one statement each. Adding the same rows again adds
 * nothing new when they group the same way; a job for a message another job already took finds it claimed or final.
 */
export async function enqueueCampaignDeliveries(
  queues: QueueRegistry,
  shopDomain: string,
  campaignId: number,
  rows: ReadonlyArray<{ id: number; contactId: number | null; scheduledFor: Date | null }>,
  requestId: string,
  now: Date,
  sendBatch = 1,
): Promise<void> {
  if (!rows.length) return;
  const enqueuedAt = now.toISOString();
  const byTime = new Map<number, Array<(typeof rows)[number]>>();
  for (const r of rows) {
    const at = r.scheduledFor ? Math.max(now.getTime(), r.scheduledFor.getTime()) : now.getTime();
    const group = byTime.get(at);
    if (group) group.push(r);
    else byTime.set(at, [r]);
  }
  const jobs = [];
  for (const [at, due] of byTime) {
    const delay = at - now.getTime();
    const opts = { priority: CAMPAIGN_DELIVERY_PRIORITY, ...(delay > 0 ? { delay } : {}) };
    for (let i = 0; i < due.length; i += sendBatch) {
      const chunk = due.slice(i, i + sendBatch);
      const one = chunk.length === 1 ? chunk[0]! : null;
      const data: JobData<'delivery'> = parseJobData('delivery', 'send', {
        shopId: shopDomain,
        ...(one ? { messageId: one.id, ...(one.contactId !== null ? { contactId: one.contactId } : {}) } : { messageIds: chunk.map((r) => r.id) }),
        campaignId,
        requestId,
        enqueuedAt,
      });
      const jobId = one ? jobIdFrom('msg', one.id) : jobIdFrom('msgs', chunk[0]!.id, chunk[chunk.length - 1]!.id);
      jobs.push({ name: 'send', data, opts: { jobId, ...opts } });
    }
  }
  await queues.get('delivery').addBulk(jobs);
}

/**
 * Decides and renders one page's recipients. Pure apart from rendering (which is pure too, but async): the page's
 * renders go to the render threads together (`renderMany`), not one round trip per recipient.
 */
async function pageMessages(
  campaign: Campaign,
  shop: Shop,
  page: AudienceContact[],
  recent: Map<number, number[]>,
  deps: CampaignDeps,
  now: Date,
): Promise<PageMessage[]> {
  const rules = campaignRules(campaign, shop);
  const decided = page.map((c) => ({
    contact: c,
    base: { contactId: c.id, idempotencyKey: campaignIdempotencyKey(campaign.id, c.id) },
    decision: evaluateRules({
      now,
      automation: rules,
      contact: c,
      shopTimezone: shop.timezone,
      context: {},
      duplicate: false,
      recentSends: recent.get(c.id) ?? [],
    }),
  }));
  const toRender = decided.filter((d) => d.decision.action !== 'skip');
  const rendered = await deps.renderer.renderMany(
    campaign.body,
    toRender.map(({ contact: c }) => ({
      vars: campaignTemplateVars(campaign, shop, c),
      options: campaignRenderOptions(shop, recipientTimezone(c, shop.timezone, now), now),
    })),
  );
  const texts = new Map(toRender.map((d, i) => [d.contact.id, rendered[i]!]));
  return decided.map(({ contact: c, base, decision }): PageMessage => {
    if (decision.action === 'skip') {
      return { ...base, status: 'skipped', reason: decision.reason, toPhone: null, body: null, encoding: null, segments: null, costEstimate: null, scheduledFor: null, renderWarnings: [] };
    }
    const rendered = texts.get(c.id)!;
    return {
      ...base,
      status: 'queued',
      reason: null,
      toPhone: c.phone,
      ...contentColumns(composeCampaignText(rendered.text, shop, deps)),
      scheduledFor: decision.action === 'defer' ? decision.until : null,
      renderWarnings: rendered.warnings,
    };
  });
}

type PageResult =
  | { kind: 'stopped'; status: Campaign['status'] }
  | { kind: 'stale' }
  | { kind: 'page'; created: Array<{ id: number; contactId: number; scheduledFor: Date | null }>; exhausted: boolean; cursor: number };

/**
 * Produces the next page in one transaction (see the file comment). Safe to run concurrently with itself: the
 * campaign row lock makes pages of one campaign strictly sequential, each reading the cursor its predecessor left.
 */
export async function materializeNextPage(campaignId: number, generation: number, shop: Shop, deps: CampaignDeps, requestId: string): Promise<PageResult> {
  const now = deps.now?.() ?? new Date();
  const db = deps.database.db;
  const campaign = await getCampaign(db, campaignId);
  if (!campaign) throw new AppError('NOT_FOUND', `campaign ${campaignId} does not exist`);
  const filter = campaignFilter(campaign);
  const rules = campaignRules(campaign, shop);
  const batchSize = deps.pacing.batchSize;
  // The page is only known once locked, so it is rendered inside the transaction: a few milliseconds per page.
  return deps.database.transaction(async (tx) => {
    const locked = await lockCampaign(tx, campaignId);
    if (!locked) return { kind: 'stopped', status: 'cancelled' } as const;
    if (locked.generation !== generation) return { kind: 'stale' } as const;
    if (locked.status !== 'sending') return { kind: 'stopped', status: locked.status } as const;
    if (locked.materialized) return { kind: 'page', created: [], exhausted: true, cursor: locked.cursor } as const;
    const page = await selectAudiencePage(tx, shop.id, { filter, now }, locked.cursor, batchSize);
    const last = page.length ? page[page.length - 1]!.id : locked.cursor;
    const cap = rules.frequencyCap;
    const recent = cap && page.length
      ? await recentSendsOfPage(tx, shop.id, locked.cursor, last, new Date(now.getTime() - cap.windowHours * 3_600_000), String(campaignId))
      : new Map<number, number[]>();
    const rows = await pageMessages(campaign, shop, page, recent, deps, now);
    const created = await insertPageMessages(tx, { shopId: shop.id, campaignId: String(campaignId), sender: shopSender(shop, deps.sms.sender), requestId }, rows);
    const exhausted = page.length < batchSize;
    await advanceCursor(tx, campaignId, locked.cursor, last, exhausted);
    return { kind: 'page', created, exhausted, cursor: last } as const;
  });
}

/** Marks a `sending` campaign whose audience is exhausted and whose messages are all final as `sent`. */
async function finishIfDone(campaign: Campaign, deps: CampaignDeps): Promise<boolean> {
  if ((await countOutstanding(deps.database.db, campaign.id)) > 0) return false;
  const done = await transitionCampaign(deps.database.db, campaign.id, ['sending'], { status: 'sent', completedAt: new Date() });
  if (done) deps.logger.info({ campaignId: campaign.id }, 'Campaign sent');
  return true;
}

/** Starts a campaign whose scheduled time came: `scheduled` → `sending`, with its audience counted. */
export async function startScheduled(campaign: Campaign, shop: Shop, deps: CampaignDeps): Promise<Campaign | undefined> {
  const now = deps.now?.() ?? new Date();
  const total = await countAudience(deps.database.db, { shopId: shop.id, filter: campaignFilter(campaign), now });
  return transitionCampaign(deps.database.db, campaign.id, ['scheduled'], { status: 'sending', startedAt: now, totalRecipients: total });
}

export async function runCampaignBatch(data: JobData<'campaigns'> & { generation?: number }, deps: CampaignDeps, control: BatchControl): Promise<BatchOutcome> {
  const db = deps.database.db;
  const id = data.campaignId;
  const log = deps.logger.child({ campaignId: id });
  let campaign = await getCampaign(db, id);
  if (!campaign) throw new AppError('NOT_FOUND', `campaignId: campaign ${id} does not exist`, { details: { field: 'campaignId' } });
  const generation = data.generation ?? campaign.generation;
  if (campaign.generation !== generation) return { outcome: 'stale', reason: `generation ${generation} superseded by ${campaign.generation}` };
  const shop = await getShopByDomain(db, data.shopId);
  if (!shop || shop.id !== campaign.shopId) {
    throw new AppError('NOT_FOUND', `shopId: campaign ${id} does not belong to ${data.shopId}`, { details: { field: 'shopId' } });
  }

  if (campaign.status === 'scheduled') {
    campaign = (await startScheduled(campaign, shop, deps)) ?? (await getCampaign(db, id))!;
    log.info({ total: campaign.totalRecipients }, 'Scheduled campaign started');
  }
  if (campaign.status !== 'sending') return { outcome: 'stopped', status: campaign.status };
  if (shop.uninstalledAt) {
    await transitionCampaign(db, id, ['sending'], { status: 'failed', error: 'shop_uninstalled', completedAt: new Date() });
    return { outcome: 'stopped', status: 'failed' };
  }

  const requestId = data.requestId ?? newRequestId();
  // A page committed by a run that died before its jobs reached Redis.
  if (campaign.pendingEnqueue) {
    const rows = await queuedMessagesOfPage(db, id, campaign.pageStartId, campaign.cursorContactId);
    await enqueueCampaignDeliveries(deps.queues, shop.domain, id, rows, requestId, deps.now?.() ?? new Date(), deps.pacing.sendBatch);
    await clearPendingEnqueue(db, id, campaign.cursorContactId);
    if (rows.length) log.warn({ jobs: rows.length }, 'Re-added the delivery jobs of a page interrupted before they were queued');
  }

  const { batchSize, maxBacklog, pollMs, maxPagesPerRun } = deps.pacing;
  const headroom = Math.max(maxBacklog, batchSize) - batchSize;
  let exhausted = campaign.materializedAt !== null;
  for (let pages = 0; !exhausted && pages < maxPagesPerRun; pages++) {
    const backlog = await countOutstanding(db, id);
    if (backlog > headroom) return control.deferUntil(new Date(Date.now() + pollMs));
    const result = await materializeNextPage(id, generation, shop, deps, requestId);
    if (result.kind === 'stale') return { outcome: 'stale', reason: 'generation changed' };
    if (result.kind === 'stopped') return { outcome: 'stopped', status: result.status };
    await enqueueCampaignDeliveries(deps.queues, shop.domain, id, result.created, requestId, deps.now?.() ?? new Date(), deps.pacing.sendBatch);
    await clearPendingEnqueue(db, id, result.cursor);
    exhausted = result.exhausted;
  }
  if (!exhausted) return control.deferUntil(new Date());
  const current = await getCampaign(db, id);
  if (!current || current.status !== 'sending' || current.generation !== generation) return { outcome: 'stopped', status: current?.status ?? 'cancelled' };
  if (await finishIfDone(current, deps)) return { outcome: 'sent', campaignId: id };
  return control.deferUntil(new Date(Date.now() + pollMs));
}
