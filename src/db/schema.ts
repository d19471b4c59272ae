/**
 * Drizzle table definitions. They mirror the numbered SQL migrations in `./migrations`, which are the source of truth
 * for the database; `test/integration/migrations.test.ts` fails when the two drift apart.
 */
import { sql } from 'drizzle-orm';
import { bigint, bigserial, integer, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

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

export const schema = { shops, contacts, consentChanges, events, deadLetters };
export type Shop = typeof shops.$inferSelect;
export type Contact = typeof contacts.$inferSelect;
export type EventRow = typeof events.$inferSelect;
export type DeadLetter = typeof deadLetters.$inferSelect;
