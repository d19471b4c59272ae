/**
 * Named database operations of Shopify's privacy webhooks: the record of each request (`privacy_requests`), a
 * customer's export, a customer's erasure and the deletion of a shop's data.
 */
import { shopChanged } from './changes.js';
import { and, desc, eq, lt, sql, type SQL } from 'drizzle-orm';
import type { Db } from './client.js';
import { rowsOf } from './rows.js';
import { privacyRequests, type PrivacyRequest, type PrivacyTopic } from './schema.js';

export interface NewPrivacyRequest {
  shopDomain: string;
  topic: PrivacyTopic;
  webhookId: string | null;
  shopifyCustomerId: string | null;
  requestId: string | null;
  rowCounts: Record<string, number>;
  export?: Record<string, unknown> | null;
}

/** Records a request as carried out. Idempotent per shop and webhook id: a retry of the job updates the same row. */
export async function recordPrivacyRequest(db: Db, r: NewPrivacyRequest): Promise<PrivacyRequest> {
  const values = { ...r, export: r.export ?? null, status: 'completed' as const, completedAt: new Date() };
  if (r.webhookId === null) return (await db.insert(privacyRequests).values(values).returning())[0]!;
  const [row] = await db
    .insert(privacyRequests)
    .values(values)
    .onConflictDoUpdate({
      target: [privacyRequests.shopDomain, privacyRequests.webhookId],
      targetWhere: sql`webhook_id IS NOT NULL`,
      set: { rowCounts: values.rowCounts, export: values.export, status: 'completed', completedAt: values.completedAt },
    })
    .returning();
  return row!;
}

/** Request metadata without the export (which holds personal data), newest first. */
export async function listPrivacyRequests(
  db: Db,
  filter: { shopDomain?: string; topic?: PrivacyTopic; limit?: number; beforeId?: number } = {},
): Promise<Array<Omit<PrivacyRequest, 'export'> & { hasExport: boolean }>> {
  return db
    .select({
      id: privacyRequests.id,
      shopDomain: privacyRequests.shopDomain,
      topic: privacyRequests.topic,
      webhookId: privacyRequests.webhookId,
      shopifyCustomerId: privacyRequests.shopifyCustomerId,
      requestId: privacyRequests.requestId,
      status: privacyRequests.status,
      rowCounts: privacyRequests.rowCounts,
      receivedAt: privacyRequests.receivedAt,
      completedAt: privacyRequests.completedAt,
      hasExport: sql<boolean>`${privacyRequests.export} IS NOT NULL`,
    })
    .from(privacyRequests)
    .where(
      and(
        filter.shopDomain ? eq(privacyRequests.shopDomain, filter.shopDomain) : undefined,
        filter.topic ? eq(privacyRequests.topic, filter.topic) : undefined,
        filter.beforeId ? lt(privacyRequests.id, filter.beforeId) : undefined,
      ),
    )
    .orderBy(desc(privacyRequests.id))
    .limit(filter.limit ?? 50);
}

export async function getPrivacyRequest(db: Db, id: number): Promise<PrivacyRequest | undefined> {
  const [row] = await db.select().from(privacyRequests).where(eq(privacyRequests.id, id));
  return row;
}

export interface CustomerKeys {
  /** Shopify customer id. */
  customerId: string | null;
  /** E.164. */
  phone: string | null;
  email: string | null;
}

/** The ids of the contacts a privacy request names: by Shopify customer id, phone or e-mail. */
export async function findContactIds(db: Pick<Db, 'execute'>, shopId: number, keys: CustomerKeys): Promise<number[]> {
  const ors: SQL[] = [];
  if (keys.customerId) ors.push(sql`shopify_customer_id = ${keys.customerId}`);
  if (keys.phone) ors.push(sql`phone = ${keys.phone}`);
  if (keys.email) ors.push(sql`lower(email) = lower(${keys.email})`);
  if (!ors.length) return [];
  const rows = await rowsOf<{ id: string }>(db, sql`SELECT id FROM contacts WHERE shop_id = ${shopId} AND (${sql.join(ors, sql` OR `)}) ORDER BY id`);
  return rows.map((r) => Number(r.id));
}

const idList = (ids: readonly number[]) => sql`(${sql.join(ids.map((id) => sql`${id}`), sql`, `)})`;
const textList = (values: readonly string[]) => sql`(${sql.join(values.map((v) => sql`${v}`), sql`, `)})`;

/** Everything stored about these contacts: the contact rows, consent history, messages, skips and checkouts. */
export async function exportContacts(db: Db, shopId: number, contactIds: readonly number[]): Promise<Record<string, unknown[]>> {
  if (!contactIds.length) return { contacts: [], consentChanges: [], messages: [], messageSkips: [], checkouts: [], inboundMessages: [] };
  const ids = idList(contactIds);
  // to_jsonb: the same JSON from both drivers (ids as numbers, times as ISO strings), ready to store as the export.
  const q = async (table: string) =>
    (
      await rowsOf<{ row: Record<string, unknown> }>(
        db,
        sql`SELECT to_jsonb(t) AS row FROM ${sql.raw(table)} t
            WHERE t.shop_id = ${shopId} AND t.${sql.raw(table === 'contacts' ? 'id' : 'contact_id')} IN ${ids} ORDER BY t.id`,
      )
    ).map((r) => r.row);
  return {
    contacts: await q('contacts'),
    consentChanges: await q('consent_changes'),
    messages: await q('messages'),
    messageSkips: await q('message_skips'),
    checkouts: await q('checkouts'),
    inboundMessages: (
      await rowsOf<{ row: Record<string, unknown> }>(
        db,
        sql`SELECT to_jsonb(t) AS row FROM inbound_messages t
            WHERE t.shop_id = ${shopId} AND t.from_phone IN (SELECT phone FROM contacts WHERE shop_id = ${shopId} AND id IN ${ids} AND phone IS NOT NULL)
            ORDER BY t.id`,
      )
    ).map((r) => r.row),
  };
}

export interface RedactInput {
  shopDomain: string;
  shopId: number | null;
  contactIds: readonly number[];
  customerId: string | null;
  email: string | null;
  /** Shopify order ids named by the request (`orders_to_redact`). */
  orderIds: readonly string[];
}

/** Conditions on a webhook payload (`col`) that make it about the customer: their id, e-mail or orders. */
function customerPayloadMatch(r: Pick<RedactInput, 'customerId' | 'email' | 'orderIds'>, col: SQL): SQL[] {
  const ors: SQL[] = [];
  if (r.customerId) {
    ors.push(sql`${col} -> 'customer' ->> 'id' = ${r.customerId}`);
    ors.push(sql`${col} ->> 'customer_id' = ${r.customerId}`);
  }
  if (r.email) ors.push(sql`lower(${col} ->> 'email') = lower(${r.email})`);
  if (r.orderIds.length) {
    ors.push(sql`(${col} ->> 'admin_graphql_api_id' LIKE 'gid://shopify/Order/%' AND ${col} ->> 'id' IN ${textList(r.orderIds)})`);
    ors.push(sql`${col} ->> 'order_id' IN ${textList(r.orderIds)}`);
  }
  return ors;
}

/** Conditions on an `events` row that make it about the customer. */
function customerEventMatch(r: Pick<RedactInput, 'customerId' | 'email' | 'orderIds'>): SQL[] {
  const ors = customerPayloadMatch(r, sql`payload`);
  if (r.orderIds.length) ors.push(sql`(topic LIKE 'orders/%' AND payload ->> 'id' IN ${textList(r.orderIds)})`);
  return ors;
}

/** The stored webhooks about a customer whose payloads are still kept (what {@link redactCustomer} will clear). */
export async function findCustomerEvents(
  db: Pick<Db, 'execute'>,
  r: Pick<RedactInput, 'shopDomain' | 'customerId' | 'email' | 'orderIds'>,
): Promise<Array<{ id: number; webhookId: string }>> {
  const ors = customerEventMatch(r);
  if (!ors.length) return [];
  const rows = await rowsOf<{ id: string | number; webhook_id: string }>(
    db,
    sql`SELECT id, webhook_id FROM events WHERE shop_domain = ${r.shopDomain} AND payload IS NOT NULL AND (${sql.join(ors, sql` OR `)})`,
  );
  return rows.map((row) => ({ id: Number(row.id), webhookId: row.webhook_id }));
}

const count = async (db: Pick<Db, 'execute'>, statement: SQL): Promise<number> =>
  Number((await rowsOf<{ n: number }>(db, sql`WITH changed AS (${statement} RETURNING 1) SELECT count(*)::int AS n FROM changed`))[0]?.n ?? 0);

/**
 * Erases a customer's personal data, keeping the rows (anonymous counts survive): the contact's phone, e-mail, names,
 * tags and address codes; their inbound replies (deleted); the bodies and numbers of their messages (queued ones are cancelled); the payloads of the
 * webhooks about them or their orders; such payloads and contexts in dead letters; earlier exports of their data.
 * One transaction. Returns the rows changed per table.
 */
export async function redactCustomer(db: Db, r: RedactInput): Promise<Record<string, number>> {
  return db.transaction(async (tx) => {
    const counts: Record<string, number> = {};
    if (r.shopId !== null && r.contactIds.length) {
      const ids = idList(r.contactIds);
      counts.messagesCancelled = await count(
        tx,
        sql`UPDATE messages SET status = 'cancelled', error_code = 'customer_redacted', updated_at = now()
            WHERE shop_id = ${r.shopId} AND contact_id IN ${ids} AND status = 'queued'`,
      );
      counts.messages = await count(
        tx,
        sql`UPDATE messages SET to_phone = NULL, body = NULL, render_warnings = '{}', updated_at = now()
            WHERE shop_id = ${r.shopId} AND contact_id IN ${ids}`,
      );
      counts.checkouts = await count(tx, sql`UPDATE checkouts SET recovery_url = NULL WHERE shop_id = ${r.shopId} AND contact_id IN ${ids}`);
      // Their replies (texts and numbers). A number-wide STOP (`sender_opt_outs`) stays: it is the suppression record
      // that keeps the number from being texted again, which erasure must not undo.
      counts.inboundMessages = await count(
        tx,
        sql`DELETE FROM inbound_messages
            WHERE shop_id = ${r.shopId} AND from_phone IN (SELECT phone FROM contacts WHERE shop_id = ${r.shopId} AND id IN ${ids} AND phone IS NOT NULL)`,
      );
      counts.contacts = await count(
        tx,
        sql`UPDATE contacts SET phone = NULL, email = NULL, first_name = NULL, last_name = NULL, tags = '{}',
              province_code = NULL, timezone = NULL, shopify_customer_id = NULL, sms_consent = 'redacted', updated_at = now()
            WHERE shop_id = ${r.shopId} AND id IN ${ids}`,
      );
    }
    const payloadMatch = (col: SQL) => customerPayloadMatch(r, col);
    const eventOrs = customerEventMatch(r);
    counts.events = eventOrs.length
      ? await count(tx, sql`UPDATE events SET payload = NULL WHERE shop_domain = ${r.shopDomain} AND payload IS NOT NULL AND (${sql.join(eventOrs, sql` OR `)})`)
      : 0;
    const dlOrs = payloadMatch(sql`(data -> 'raw')`);
    if (r.contactIds.length) {
      const ids = textList(r.contactIds.map(String));
      dlOrs.push(sql`data -> 'context' ->> 'contactId' IN ${ids}`, sql`data ->> 'contactId' IN ${ids}`);
    }
    counts.deadLetters = dlOrs.length
      ? await count(tx, sql`UPDATE dead_letters SET data = (data - 'raw') - 'context' WHERE shop_id = ${r.shopDomain} AND (${sql.join(dlOrs, sql` OR `)})`)
      : 0;
    counts.exports = r.customerId
      ? await count(
          tx,
          sql`UPDATE privacy_requests SET export = NULL
              WHERE shop_domain = ${r.shopDomain} AND topic = 'customers/data_request' AND shopify_customer_id = ${r.customerId} AND export IS NOT NULL`,
        )
      : 0;
    return counts;
  });
}

/**
 * Deletes everything stored for a shop: its row and, by cascade, contacts, consent history, automations, messages,
 * skips, checkouts, rollups (and whatever later tables hang off `shops`); its webhook events but the one being
 * handled (`keepWebhookId`, which carries no personal data); its dead letters; the exports of its data requests. The
 * privacy request records stay (they hold counts). One transaction; returns rows deleted per table.
 */
export async function deleteShopData(db: Db, shopDomain: string, keepWebhookId: string | null): Promise<Record<string, number>> {
  return db.transaction(async (tx) => {
    const counts: Record<string, number> = {};
    const [shop] = await rowsOf<{ id: string }>(tx, sql`SELECT id FROM shops WHERE domain = ${shopDomain} FOR UPDATE`);
    if (shop) {
      const id = Number(shop.id);
      // Counted one by one before the cascade, so the record says what went.
      for (const table of ['message_skips', 'messages', 'checkouts', 'consent_changes', 'contacts', 'automations', 'report_rollups']) {
        counts[table] = await count(tx, sql`DELETE FROM ${sql.raw(table)} WHERE shop_id = ${id}`);
      }
      counts.shops = await count(tx, sql`DELETE FROM shops WHERE id = ${id}`);
      shopChanged({ shopId: id });
    } else {
      counts.shops = 0;
    }
    counts.events = await count(
      tx,
      keepWebhookId
        ? sql`DELETE FROM events WHERE shop_domain = ${shopDomain} AND webhook_id <> ${keepWebhookId}`
        : sql`DELETE FROM events WHERE shop_domain = ${shopDomain}`,
    );
    counts.dead_letters = await count(tx, sql`DELETE FROM dead_letters WHERE shop_id = ${shopDomain}`);
    counts.exports = await count(tx, sql`UPDATE privacy_requests SET export = NULL WHERE shop_domain = ${shopDomain} AND export IS NOT NULL`);
    return counts;
  });
}

/**
 * An uninstalled shop's queued messages will not be sent: cancelled as `shop_uninstalled`, each with its skip record.
 * Returns how many.
 */
export async function cancelQueuedMessagesOfShop(db: Db, shopId: number, reason: string, requestId: string | null): Promise<number> {
  const [row] = await rowsOf<{ n: number }>(
    db,
    sql`WITH cancelled AS (
          UPDATE messages SET status = 'cancelled', error_code = ${reason}, updated_at = now()
          WHERE shop_id = ${shopId} AND status = 'queued'
          RETURNING id, shop_id, contact_id, automation_id, campaign_id, trigger),
        skipped AS (
          INSERT INTO message_skips (shop_id, contact_id, automation_id, campaign_id, message_id, trigger, reason, detail, request_id)
          SELECT shop_id, contact_id, automation_id, campaign_id, id, trigger, ${reason}, 'cancelled when the app was uninstalled', ${requestId}
          FROM cancelled
          RETURNING 1)
        SELECT count(*)::int AS n FROM skipped`,
  );
  return Number(row?.n ?? 0);
}
