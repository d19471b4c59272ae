/**
 * Drizzle table definitions. They mirror the numbered SQL migrations in `./migrations`, which are the source of truth
 * for the database; `test/integration/migrations.test.ts` fails when the two drift apart.
 */
import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, date, integer, jsonb, numeric, pgTable, primaryKey, smallint, text, timestamp } from 'drizzle-orm/pg-core';
import type { PrivacyTopicName } from '../shopify/topics.js';

const id = () => bigserial('id', { mode: 'number' }).primaryKey();
const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });
const createdAt = () => ts('created_at').notNull().defaultNow();
const updatedAt = () => ts('updated_at').notNull().defaultNow();

export type ConsentState = 'not_subscribed' | 'pending' | 'subscribed' | 'unsubscribed' | 'redacted';
export type EventStatus = 'received' | 'queued' | 'processed' | 'ignored' | 'failed';

export const shops = pgTable('shops', {
  id: id(),
  domain: text('domain').notNull().unique(),
  name: text('name'),
  timezone: text('timezone').notNull().default('UTC'),
  countryCode: text('country_code'),
  currency: text('currency'),
  settings: jsonb('settings').$type<Record<string, unknown>>().notNull().default({}),
  installedAt: ts('installed_at').notNull().defaultNow(),
  uninstalledAt: ts('uninstalled_at'),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
  // 0009: the Shopify plan's display name, read by the sync.
  planName: text('plan_name'),
});

export const contacts = pgTable('contacts', {
  id: id(),
  shopId: bigint('shop_id', { mode: 'number' })
    .notNull()
    .references(() => shops.id, { onDelete: 'cascade' }),
  shopifyCustomerId: text('shopify_customer_id'),
  phone: text('phone'),
  firstName: text('first_name'),
  lastName: text('last_name'),
  email: text('email'),
  tags: text('tags').array().notNull().default(sql`'{}'`),
  countryCode: text('country_code'),
  provinceCode: text('province_code'),
  timezone: text('timezone'),
  smsConsent: text('sms_consent').$type<ConsentState>().notNull().default('not_subscribed'),
  smsConsentOptInLevel: text('sms_consent_opt_in_level'),
  smsConsentSource: text('sms_consent_source'),
  smsConsentUpdatedAt: ts('sms_consent_updated_at'),
  optedOutAt: ts('opted_out_at'),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
  // 0004: order statistics for segments, maintained from order webhooks.
  lastOrderAt: ts('last_order_at'),
  ordersCount: integer('orders_count').notNull().default(0),
  totalSpent: numeric('total_spent', { precision: 14, scale: 2 }).notNull().default('0'),
});

export const consentChanges = pgTable('consent_changes', {
  id: id(),
  shopId: bigint('shop_id', { mode: 'number' })
    .notNull()
    .references(() => shops.id, { onDelete: 'cascade' }),
  contactId: bigint('contact_id', { mode: 'number' })
    .notNull()
    .references(() => contacts.id, { onDelete: 'cascade' }),
  previousState: text('previous_state'),
  newState: text('new_state').notNull(),
  source: text('source').notNull(),
  occurredAt: ts('occurred_at').notNull(),
  recordedAt: ts('recorded_at').notNull().defaultNow(),
  requestId: text('request_id'),
});

export const events = pgTable('events', {
  id: id(),
  shopDomain: text('shop_domain').notNull(),
  topic: text('topic').notNull(),
  objectId: text('object_id'),
  webhookId: text('webhook_id').notNull(),
  eventId: text('event_id'),
  apiVersion: text('api_version'),
  triggeredAt: ts('triggered_at'),
  payload: jsonb('payload').$type<Record<string, unknown>>(),
  requestId: text('request_id'),
  status: text('status').$type<EventStatus>().notNull().default('received'),
  outcome: text('outcome'),
  error: text('error'),
  receivedAt: ts('received_at').notNull().defaultNow(),
  queuedAt: ts('queued_at'),
  processedAt: ts('processed_at'),
});

export const deadLetters = pgTable('dead_letters', {
  id: id(),
  queue: text('queue').notNull(),
  jobName: text('job_name').notNull(),
  jobId: text('job_id').notNull(),
  jobCreatedAt: ts('job_created_at').notNull(),
  data: jsonb('data').$type<Record<string, unknown>>().notNull(),
  errorCode: text('error_code'),
  errorMessage: text('error_message').notNull(),
  stack: text('stack'),
  attemptsMade: integer('attempts_made').notNull(),
  maxAttempts: integer('max_attempts').notNull(),
  requestId: text('request_id'),
  shopId: text('shop_id'),
  failedAt: ts('failed_at').notNull().defaultNow(),
  replayCount: integer('replay_count').notNull().default(0),
  replayedAt: ts('replayed_at'),
  replayJobId: text('replay_job_id'),
});

export type Shop = typeof shops.$inferSelect;
export type Contact = typeof contacts.$inferSelect;
export type EventRow = typeof events.$inferSelect;
export type DeadLetter = typeof deadLetters.$inferSelect;

export type AutomationTrigger = 'order_paid' | 'order_created' | 'abandoned_checkout' | 'fulfillment_update' | 'welcome';
export type MessageStatus = 'queued' | 'sending' | 'sent' | 'delivered' | 'failed' | 'skipped' | 'cancelled';
export type MessageKind = 'marketing' | 'transactional';

/** Per-automation rules; every field optional, defaults in `src/automations/defaults.ts`. */
export interface AutomationRules {
  quietHours?: { enabled?: boolean; start?: string; end?: string; bypass?: boolean };
  frequencyCap?: { max: number; windowHours: number } | null;
  dedupeWindowHours?: number | null;
  conditions?: unknown;
  /** Consent needed: marketing (subscribed) or transactional (not opted out). Defaults from `transactional`. */
  consent?: 'marketing' | 'transactional';
}

export const automations = pgTable('automations', {
  id: id(),
  shopId: bigint('shop_id', { mode: 'number' })
    .notNull()
    .references(() => shops.id, { onDelete: 'cascade' }),
  trigger: text('trigger').$type<AutomationTrigger>().notNull(),
  name: text('name').notNull(),
  enabled: boolean('enabled').notNull().default(true),
  template: text('template').notNull(),
  delayMinutes: integer('delay_minutes').notNull().default(0),
  transactional: boolean('transactional').notNull().default(false),
  rules: jsonb('rules').$type<AutomationRules>().notNull().default({}),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

export const messages = pgTable('messages', {
  id: id(),
  shopId: bigint('shop_id', { mode: 'number' })
    .notNull()
    .references(() => shops.id, { onDelete: 'cascade' }),
  contactId: bigint('contact_id', { mode: 'number' }).references(() => contacts.id, { onDelete: 'set null' }),
  automationId: bigint('automation_id', { mode: 'number' }).references(() => automations.id, { onDelete: 'set null' }),
  campaignId: text('campaign_id'),
  kind: text('kind').$type<MessageKind>().notNull(),
  trigger: text('trigger'),
  idempotencyKey: text('idempotency_key').notNull(),
  toPhone: text('to_phone'),
  sender: text('sender'),
  body: text('body'),
  encoding: text('encoding').$type<'GSM-7' | 'UCS-2'>(),
  segments: integer('segments'),
  costEstimate: numeric('cost_estimate', { precision: 10, scale: 4 }),
  renderWarnings: text('render_warnings').array().notNull().default(sql`'{}'`),
  status: text('status').$type<MessageStatus>().notNull().default('queued'),
  provider: text('provider'),
  providerMessageId: text('provider_message_id'),
  errorCode: text('error_code'),
  errorText: text('error_text'),
  sendAttempts: integer('send_attempts').notNull().default(0),
  scheduledFor: ts('scheduled_for'),
  queuedAt: ts('queued_at').notNull().defaultNow(),
  sendingAt: ts('sending_at'),
  sentAt: ts('sent_at'),
  deliveredAt: ts('delivered_at'),
  failedAt: ts('failed_at'),
  requestId: text('request_id'),
  // 0010: the checkout an abandoned-checkout reminder is about (delivery cancels it once that checkout completes).
  checkoutToken: text('checkout_token'),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

export const messageSkips = pgTable('message_skips', {
  id: id(),
  shopId: bigint('shop_id', { mode: 'number' })
    .notNull()
    .references(() => shops.id, { onDelete: 'cascade' }),
  contactId: bigint('contact_id', { mode: 'number' }).references(() => contacts.id, { onDelete: 'set null' }),
  automationId: bigint('automation_id', { mode: 'number' }).references(() => automations.id, { onDelete: 'set null' }),
  campaignId: text('campaign_id'),
  messageId: bigint('message_id', { mode: 'number' }).references(() => messages.id, { onDelete: 'set null' }),
  trigger: text('trigger'),
  objectId: text('object_id'),
  reason: text('reason').notNull(),
  detail: text('detail'),
  requestId: text('request_id'),
  createdAt: createdAt(),
});

export const checkouts = pgTable('checkouts', {
  id: id(),
  shopId: bigint('shop_id', { mode: 'number' })
    .notNull()
    .references(() => shops.id, { onDelete: 'cascade' }),
  token: text('token').notNull(),
  contactId: bigint('contact_id', { mode: 'number' }).references(() => contacts.id, { onDelete: 'set null' }),
  recoveryUrl: text('recovery_url'),
  abandonedAt: ts('abandoned_at').notNull().defaultNow(),
  lastSeenAt: ts('last_seen_at').notNull().defaultNow(),
  completedAt: ts('completed_at'),
});

export type Automation = typeof automations.$inferSelect;
export type Message = typeof messages.$inferSelect;
export type MessageSkip = typeof messageSkips.$inferSelect;
export type Checkout = typeof checkouts.$inferSelect;

// ---- 0004: segments and campaigns ----

export const contactOrders = pgTable('contact_orders', {
  shopId: bigint('shop_id', { mode: 'number' })
    .notNull()
    .references(() => shops.id, { onDelete: 'cascade' }),
  orderId: text('order_id').notNull(),
  contactId: bigint('contact_id', { mode: 'number' })
    .notNull()
    .references(() => contacts.id, { onDelete: 'cascade' }),
  total: numeric('total', { precision: 14, scale: 2 }).notNull().default('0'),
  orderedAt: ts('ordered_at').notNull(),
});

export const segments = pgTable('segments', {
  id: id(),
  shopId: bigint('shop_id', { mode: 'number' })
    .notNull()
    .references(() => shops.id, { onDelete: 'cascade' }),
  name: text('name').notNull(),
  filter: jsonb('filter').$type<unknown>().notNull(),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

export type CampaignStatus = 'draft' | 'scheduled' | 'sending' | 'paused' | 'sent' | 'cancelled' | 'failed';

/** Per-campaign overrides of the shop's marketing rules; an absent field follows the shop. */
export interface CampaignSettings {
  frequencyCap?: { max: number; windowHours: number } | null;
  quietHours?: { enabled?: boolean; start?: string; end?: string };
}

export const campaigns = pgTable('campaigns', {
  id: id(),
  shopId: bigint('shop_id', { mode: 'number' })
    .notNull()
    .references(() => shops.id, { onDelete: 'cascade' }),
  name: text('name').notNull(),
  segmentId: bigint('segment_id', { mode: 'number' }).references(() => segments.id, { onDelete: 'set null' }),
  filter: jsonb('filter').$type<unknown>(),
  body: text('body').notNull(),
  discountCode: text('discount_code'),
  linkUrl: text('link_url'),
  settings: jsonb('settings').$type<CampaignSettings>().notNull().default({}),
  status: text('status').$type<CampaignStatus>().notNull().default('draft'),
  scheduledAt: ts('scheduled_at'),
  generation: integer('generation').notNull().default(0),
  cursorContactId: bigint('cursor_contact_id', { mode: 'number' }).notNull().default(0),
  pageStartId: bigint('page_start_id', { mode: 'number' }).notNull().default(0),
  pendingEnqueue: boolean('pending_enqueue').notNull().default(false),
  totalRecipients: integer('total_recipients'),
  materializedAt: ts('materialized_at'),
  startedAt: ts('started_at'),
  pausedAt: ts('paused_at'),
  completedAt: ts('completed_at'),
  cancelledAt: ts('cancelled_at'),
  error: text('error'),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

export type Segment = typeof segments.$inferSelect;
export type Campaign = typeof campaigns.$inferSelect;

/** A campaign's messages by status, kept by its pages and a trigger on `messages` (0008); up to 16 rows per campaign. */
export const campaignCounters = pgTable(
  'campaign_counters',
  {
    campaignId: bigint('campaign_id', { mode: 'number' })
      .notNull()
      .references(() => campaigns.id, { onDelete: 'cascade' }),
    shard: smallint('shard').notNull(),
    queued: integer('queued').notNull().default(0),
    sending: integer('sending').notNull().default(0),
    sent: integer('sent').notNull().default(0),
    delivered: integer('delivered').notNull().default(0),
    failed: integer('failed').notNull().default(0),
    skipped: integer('skipped').notNull().default(0),
    cancelled: integer('cancelled').notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.campaignId, t.shard] })],
);

/** A campaign's skipped messages by reason (0008). */
export const campaignSkipCounts = pgTable(
  'campaign_skip_counts',
  {
    campaignId: bigint('campaign_id', { mode: 'number' })
      .notNull()
      .references(() => campaigns.id, { onDelete: 'cascade' }),
    reason: text('reason').notNull(),
    n: integer('n').notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.campaignId, t.reason] })],
);

/** Daily counts per shop, per day in the shop's time zone, per automation / campaign / other (0003). */
export const reportRollups = pgTable('report_rollups', {
  id: id(),
  shopId: bigint('shop_id', { mode: 'number' })
    .notNull()
    .references(() => shops.id, { onDelete: 'cascade' }),
  day: date('day', { mode: 'string' }).notNull(),
  dimension: text('dimension').$type<'automation' | 'campaign' | 'other'>().notNull(),
  dimensionId: text('dimension_id').notNull().default(''),
  sent: integer('sent').notNull().default(0),
  delivered: integer('delivered').notNull().default(0),
  failed: integer('failed').notNull().default(0),
  skipped: integer('skipped').notNull().default(0),
  skippedByReason: jsonb('skipped_by_reason').$type<Record<string, number>>().notNull().default({}),
  parts: integer('parts').notNull().default(0),
  cost: numeric('cost', { precision: 14, scale: 4 }).notNull().default('0'),
  computedAt: ts('computed_at').notNull().defaultNow(),
});

/** A failed message sent again by housekeeping, at most once (0003). */
export const messageRetries = pgTable('message_retries', {
  messageId: bigint('message_id', { mode: 'number' })
    .primaryKey()
    .references(() => messages.id, { onDelete: 'cascade' }),
  jobId: text('job_id').notNull(),
  errorCode: text('error_code'),
  retriedAt: ts('retried_at').notNull().defaultNow(),
});

/** What a privacy request carries out: a privacy topic, or an uninstall (src/privacy/requests.ts). */
export type PrivacyTopic = PrivacyTopicName | 'app/uninstalled';

/** Privacy webhooks and uninstalls as carried out (0003). */
export const privacyRequests = pgTable('privacy_requests', {
  id: id(),
  shopDomain: text('shop_domain').notNull(),
  topic: text('topic').$type<PrivacyTopic>().notNull(),
  webhookId: text('webhook_id'),
  shopifyCustomerId: text('shopify_customer_id'),
  requestId: text('request_id'),
  status: text('status').$type<'completed' | 'failed'>().notNull().default('completed'),
  rowCounts: jsonb('row_counts').$type<Record<string, number>>().notNull().default({}),
  export: jsonb('export').$type<Record<string, unknown>>(),
  receivedAt: ts('received_at').notNull().defaultNow(),
  completedAt: ts('completed_at'),
});

export type ReportRollup = typeof reportRollups.$inferSelect;
export type PrivacyRequest = typeof privacyRequests.$inferSelect;

// 0005: consent truth.
export const senderOptOuts = pgTable('sender_opt_outs', {
  sender: text('sender').notNull(),
  phone: text('phone').notNull(),
  optedOutAt: ts('opted_out_at').notNull(),
  source: text('source').notNull(),
  requestId: text('request_id'),
});

export const inboundMessages = pgTable('inbound_messages', {
  id: id(),
  receivedAt: ts('received_at').notNull().defaultNow(),
  fromRaw: text('from_raw').notNull(),
  fromPhone: text('from_phone'),
  toNumber: text('to_number').notNull(),
  text: text('text').notNull(),
  keyword: text('keyword'),
  providerMessageId: text('provider_message_id'),
  shopId: bigint('shop_id', { mode: 'number' }).references(() => shops.id, { onDelete: 'cascade' }),
  outcome: text('outcome').notNull().default('received'),
  requestId: text('request_id'),
});

export type InboundMessageRow = typeof inboundMessages.$inferSelect;

/** 0009: the shop's offline Admin API access token, encrypted (src/shopify/tokens.ts); queries in db/shopTokens.ts. */
export const shopTokens = pgTable('shop_tokens', {
  shopId: bigint('shop_id', { mode: 'number' })
    .primaryKey()
    .references(() => shops.id, { onDelete: 'cascade' }),
  accessToken: text('access_token').notNull(),
  scope: text('scope'),
  expiresAt: ts('expires_at'),
  refreshToken: text('refresh_token'),
  refreshExpiresAt: ts('refresh_expires_at'),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

/** 0009: each shop's latest customer sync and its progress; queries in db/shopSyncs.ts. */
export const shopSyncs = pgTable('shop_syncs', {
  shopId: bigint('shop_id', { mode: 'number' })
    .primaryKey()
    .references(() => shops.id, { onDelete: 'cascade' }),
  status: text('status').notNull(),
  reason: text('reason').notNull(),
  bulkOperationId: text('bulk_operation_id'),
  objectCount: bigint('object_count', { mode: 'number' }),
  linesDone: bigint('lines_done', { mode: 'number' }).notNull().default(0),
  customersSynced: bigint('customers_synced', { mode: 'number' }).notNull().default(0),
  error: text('error'),
  startedAt: ts('started_at').notNull().defaultNow(),
  finishedAt: ts('finished_at'),
  updatedAt: updatedAt(),
});

export const schema = { shops, contacts, consentChanges, events, deadLetters, automations, messages, messageSkips, checkouts, reportRollups, messageRetries, privacyRequests, contactOrders, segments, campaigns, campaignCounters, campaignSkipCounts, senderOptOuts, inboundMessages, shopTokens, shopSyncs };
