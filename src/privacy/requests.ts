/**
 * Shopify's mandatory privacy webhooks and `app/uninstalled`, carried out. Each is recorded in `privacy_requests`
 * (topic, time, rows per table) and is idempotent: a retried job does the same work again on what is left and updates
 * the same record.
 *
 * - `customers/data_request`: everything stored about the customer, kept as the request's export for an operator.
 * - `customers/redact`: the customer's personal data erased (rows kept, so counts survive), their pending automation
 *   and delivery jobs removed, and the events jobs of the webhooks about them (which carry only the stored event's id:
 *   the payload is erased in `events`, so no job data needs searching).
 * - `shop/redact`: all of the shop's data deleted, in the database and in the queues.
 * - `app/uninstalled`: the shop marked uninstalled, its Admin API access token deleted, its pending automation,
 *   campaign, delivery and sync jobs removed and its queued messages cancelled. Nothing is sent for it until it is installed again (the automations and delivery
 *   processors check at evaluation and at send time).
 */
import type { Job } from 'bullmq';
import type { Db } from '../db/client.js';
import {
  cancelQueuedMessagesOfShop,
  deleteShopData,
  exportContacts,
  findContactIds,
  findCustomerEvents,
  recordPrivacyRequest,
  redactCustomer,
} from '../db/privacy.js';
import type { PrivacyRequest } from '../db/schema.js';
import { deleteShopToken } from '../db/shopTokens.js';
import { getShopByDomain, markShopUninstalled, upsertShop } from '../db/shops.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { jobIdFrom, type QueueRegistry } from '../queue/queues.js';
import { pickCountry, toE164 } from '../shopify/phone.js';
import { FINISHED_STATES, PENDING_STATES, removeJobsById, removeMatchingJobs } from './jobs.js';

export interface PrivacyDeps {
  db: Db;
  queues: QueueRegistry;
  logger: Logger;
}

export interface PrivacyMeta {
  shopDomain: string;
  webhookId: string | null;
  requestId: string;
  triggeredAt: Date | null;
}

/** The customer a privacy payload names. */
export interface CustomerRef {
  customerId: string | null;
  email: string | null;
  phone: string | null;
  orderIds: string[];
}

const idString = (v: unknown): string | null => (typeof v === 'number' || (typeof v === 'string' && v.trim() !== '') ? String(v) : null);

/** Reads `customer{id,email,phone}` and `orders_to_redact` / `orders_requested` from a privacy payload. */
export function customerRefFrom(raw: Record<string, unknown>): CustomerRef {
  const c = (raw.customer && typeof raw.customer === 'object' ? raw.customer : {}) as Record<string, unknown>;
  const orders = [raw.orders_to_redact, raw.orders_requested].flatMap((v) => (Array.isArray(v) ? v : []));
  return {
    customerId: idString(c.id),
    email: typeof c.email === 'string' && c.email.includes('@') ? c.email.trim() : null,
    phone: typeof c.phone === 'string' && c.phone.trim() ? c.phone.trim() : null,
    orderIds: [...new Set(orders.map(idString).filter((v): v is string => v !== null))],
  };
}

export async function handlePrivacyTopic(topic: string, raw: Record<string, unknown>, meta: PrivacyMeta, deps: PrivacyDeps): Promise<PrivacyRequest> {
  switch (topic) {
    case 'customers/data_request':
      return exportCustomer(raw, meta, deps);
    case 'customers/redact':
      return eraseCustomer(raw, meta, deps);
    case 'shop/redact':
      return eraseShop(meta, deps);
    case 'app/uninstalled':
      return uninstallShop(meta, deps);
    default:
      throw new AppError('INVALID_PAYLOAD', `"${topic}" is not a privacy topic`);
  }
}

async function contactIdsFor(ref: CustomerRef, shopDomain: string, deps: PrivacyDeps): Promise<{ shopId: number | null; contactIds: number[] }> {
  const shop = await getShopByDomain(deps.db, shopDomain);
  if (!shop) return { shopId: null, contactIds: [] };
  const phone = toE164(ref.phone, pickCountry(shop.countryCode));
  return { shopId: shop.id, contactIds: await findContactIds(deps.db, shop.id, { customerId: ref.customerId, phone, email: ref.email }) };
}

async function exportCustomer(raw: Record<string, unknown>, meta: PrivacyMeta, deps: PrivacyDeps): Promise<PrivacyRequest> {
  const ref = customerRefFrom(raw);
  const { shopId, contactIds } = await contactIdsFor(ref, meta.shopDomain, deps);
  const data = shopId === null ? await exportContacts(deps.db, 0, []) : await exportContacts(deps.db, shopId, contactIds);
  const rowCounts = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.length]));
  const dataRequestId = idString((raw.data_request as Record<string, unknown> | undefined)?.id);
  const row = await recordPrivacyRequest(deps.db, {
    shopDomain: meta.shopDomain,
    topic: 'customers/data_request',
    webhookId: meta.webhookId,
    shopifyCustomerId: ref.customerId,
    requestId: meta.requestId,
    rowCounts,
    export: { shopDomain: meta.shopDomain, shopifyCustomerId: ref.customerId, dataRequestId, ordersRequested: ref.orderIds, exportedAt: new Date().toISOString(), ...data },
  });
  deps.logger.info({ privacyRequestId: row.id, contacts: contactIds.length, rowCounts }, 'Customer data exported');
  return row;
}

async function eraseCustomer(raw: Record<string, unknown>, meta: PrivacyMeta, deps: PrivacyDeps): Promise<PrivacyRequest> {
  const ref = customerRefFrom(raw);
  const { shopId, contactIds } = await contactIdsFor(ref, meta.shopDomain, deps);
  // Pending work for the customer first, so nothing starts on data about to be erased. Jobs carry ids: the contact's
  // for automations and delivery, the stored event's for events.
  const ids = new Set(contactIds);
  const aboutContact = (job: Job): boolean => {
    const d = (job.data ?? {}) as { shopId?: unknown; contactId?: unknown; context?: { contactId?: unknown } };
    if (d.shopId !== meta.shopDomain) return false;
    return ids.has(Number(d.contactId ?? d.context?.contactId));
  };
  const jobs = await removeMatchingJobs(deps.queues, ['automations', 'delivery'], [...PENDING_STATES, ...FINISHED_STATES], aboutContact, deps.logger);
  const events = await findCustomerEvents(deps.db, { shopDomain: meta.shopDomain, customerId: ref.customerId, email: ref.email, orderIds: ref.orderIds });
  jobs.events = await removeJobsById(
    deps.queues,
    'events',
    // The job running this very request is active, so never removed.
    events.filter((e) => e.webhookId !== meta.webhookId).map((e) => jobIdFrom('wh', meta.shopDomain, e.webhookId)),
    deps.logger,
  );
  const rowCounts = await redactCustomer(deps.db, {
    shopDomain: meta.shopDomain,
    shopId,
    contactIds,
    customerId: ref.customerId,
    email: ref.email,
    orderIds: ref.orderIds,
  });
  const row = await recordPrivacyRequest(deps.db, {
    shopDomain: meta.shopDomain,
    topic: 'customers/redact',
    webhookId: meta.webhookId,
    shopifyCustomerId: ref.customerId,
    requestId: meta.requestId,
    rowCounts: { ...rowCounts, ...prefixed('jobs_', jobs) },
  });
  deps.logger.info({ privacyRequestId: row.id, contacts: contactIds.length, rowCounts: row.rowCounts }, 'Customer redacted');
  return row;
}

async function eraseShop(meta: PrivacyMeta, deps: PrivacyDeps): Promise<PrivacyRequest> {
  const jobs = await removeMatchingJobs(
    deps.queues,
    ['events', 'automations', 'campaigns', 'delivery', 'housekeeping'],
    [...PENDING_STATES, ...FINISHED_STATES],
    (job) => job.data?.shopId === meta.shopDomain,
    deps.logger,
  );
  const rowCounts = await deleteShopData(deps.db, meta.shopDomain, meta.webhookId);
  const row = await recordPrivacyRequest(deps.db, {
    shopDomain: meta.shopDomain,
    topic: 'shop/redact',
    webhookId: meta.webhookId,
    shopifyCustomerId: null,
    requestId: meta.requestId,
    rowCounts: { ...rowCounts, ...prefixed('jobs_', jobs) },
  });
  deps.logger.info({ privacyRequestId: row.id, rowCounts: row.rowCounts }, 'Shop data deleted');
  return row;
}

async function uninstallShop(meta: PrivacyMeta, deps: PrivacyDeps): Promise<PrivacyRequest> {
  // The uninstall may be the first we hear of the shop; record it either way.
  const { shop } = await upsertShop(deps.db, meta.shopDomain);
  await markShopUninstalled(deps.db, meta.shopDomain, meta.triggeredAt ?? new Date());
  // Shopify revokes the token on uninstall; ours must not outlive it (a reinstall exchanges a new one).
  const tokens = (await deleteShopToken(deps.db, shop.id)) ? 1 : 0;
  const jobs = await removeMatchingJobs(
    deps.queues,
    ['automations', 'campaigns', 'delivery', 'sync'],
    PENDING_STATES,
    (job) => job.data?.shopId === meta.shopDomain,
    deps.logger,
  );
  const cancelled = await cancelQueuedMessagesOfShop(deps.db, shop.id, 'shop_uninstalled', meta.requestId);
  const row = await recordPrivacyRequest(deps.db, {
    shopDomain: meta.shopDomain,
    topic: 'app/uninstalled',
    webhookId: meta.webhookId,
    shopifyCustomerId: null,
    requestId: meta.requestId,
    rowCounts: { shops: 1, shopTokens: tokens, messagesCancelled: cancelled, ...prefixed('jobs_', jobs) },
  });
  deps.logger.info({ privacyRequestId: row.id, rowCounts: row.rowCounts }, 'Shop uninstalled');
  return row;
}

function prefixed(prefix: string, counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).map(([k, v]) => [`${prefix}${k}`, v]));
}
