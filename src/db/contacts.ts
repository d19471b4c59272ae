/** Named database operations on `contacts` and `consent_changes`. */
import { and, desc, eq, ilike, lt, or, sql } from 'drizzle-orm';
import { sqlStateOf, type Db } from './client.js';
import { param, perHandle } from './prepared.js';
import { rowsOf } from './rows.js';
import { decideConsent, optedOutAtAfter, type ConsentDecision, type ConsentOrigin, type ConsentRefusal } from './consentLedger.js';
import { consentChanges, contacts, type ConsentState, type Contact } from './schema.js';

export interface ConsentInput {
  state: ConsentState;
  optInLevel: string | null;
  /** When the customer gave or withdrew consent, by the source's own clock; null means "now". */
  updatedAt: Date | null;
  /** Where the consent came from, e.g. `shopify:customers_marketing_consent/update`, `sms:inbound`, `import:csv`. */
  source: string;
  /** Who speaks, which decides what the change may override (see `decideConsent`). */
  origin: ConsentOrigin;
}

export interface ContactInput {
  shopifyCustomerId: string | null;
  /** E.164, already normalised; null when unknown or invalid. */
  phone: string | null;
  firstName: string | null;
  lastName: string | null;
  email: string | null;
  /** null leaves the stored tags alone. */
  tags: string[] | null;
  countryCode: string | null;
  provinceCode: string | null;
  consent: ConsentInput | null;
}

export interface ContactUpsertResult {
  contact: Contact;
  created: boolean;
  consentChange: { from: ConsentState; to: ConsentState } | null;
  /** The phone was not stored because another contact of the shop already has it. */
  phoneConflict: boolean;
  /** The consent of the input was refused (an opt-out stands); the other fields were stored. */
  consentRefused: ConsentRefusal | null;
}

/** The consent columns a decision writes: all of them when applied, the time (and opt-out time) when confirmed. */
function consentColumns(existing: Contact | null, consent: ConsentInput | null, decision: ConsentDecision | null): Partial<typeof contacts.$inferInsert> {
  if (decision?.action === 'apply') {
    return {
      smsConsent: consent!.state,
      smsConsentOptInLevel: consent!.optInLevel,
      smsConsentSource: consent!.source,
      smsConsentUpdatedAt: decision.at,
      optedOutAt: optedOutAtAfter(existing, consent!.state, decision.at),
    };
  }
  if (decision?.action === 'confirm') return { smsConsentUpdatedAt: decision.at, ...(consent!.state === 'unsubscribed' ? { optedOutAt: decision.at } : {}) };
  return {};
}

function newContactValues(shopId: number, input: ContactInput, consentFields: Partial<typeof contacts.$inferInsert>): typeof contacts.$inferInsert {
  return {
    shopId,
    shopifyCustomerId: input.shopifyCustomerId,
    phone: input.phone,
    firstName: input.firstName,
    lastName: input.lastName,
    email: input.email,
    tags: input.tags ?? [],
    countryCode: input.countryCode,
    provinceCode: input.provinceCode,
    ...consentFields,
  };
}

type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

/**
 * Finds the shop's contact by Shopify customer id, else by phone, and merges the input into it (creating it when
 * neither matches). Known values are never erased by missing ones. Consent follows the ledger's precedence
 * (`decideConsent` in consentLedger.ts): an opt-out is sticky, a Shopify record older than the stored consent is
 * ignored, and a refused change is reported in `consentRefused` while the rest of the input is stored.
 */
export async function upsertContact(
  db: Db,
  shopId: number,
  input: ContactInput,
  meta: { requestId?: string | null; now?: Date } = {},
): Promise<ContactUpsertResult | null> {
  if (!input.shopifyCustomerId && !input.phone) return null;
  // A first sighting that records no consent change (no consent in the input, or "not subscribed": the state a new
  // contact has anyway) is one INSERT: the unique indexes on (shop, customer id) and (shop, phone) make it do nothing
  // exactly when the merge below would find a row to merge into.
  const consent = input.consent;
  const decision = consent ? decideConsent(null, { state: consent.state, origin: consent.origin, at: consent.updatedAt }, meta.now ?? new Date()) : null;
  if (!consent || consent.state === 'not_subscribed' || decision?.action !== 'apply') {
    const values = newContactValues(shopId, input, consentColumns(null, consent, decision));
    const [row] = await db.insert(contacts).values(values).onConflictDoNothing().returning();
    if (row) {
      const consentRefused = decision?.action === 'refuse' ? decision.reason : null;
      return { contact: row, created: true, consentChange: null, phoneConflict: false, consentRefused };
    }
  }
  for (let attempt = 0; ; attempt++) {
    try {
      return await db.transaction((tx) => upsertInTx(tx, shopId, input, meta));
    } catch (err) {
      // Two first sightings of one customer raced on the unique index: the loser retries and finds the winner's row.
      if (attempt < 2 && sqlStateOf(err) === '23505') continue;
      throw err;
    }
  }
}

async function findForUpdate(tx: Tx, shopId: number, column: 'customer' | 'phone', value: string): Promise<Contact | undefined> {
  const where =
    column === 'customer'
      ? and(eq(contacts.shopId, shopId), eq(contacts.shopifyCustomerId, value))
      : and(eq(contacts.shopId, shopId), eq(contacts.phone, value));
  const [row] = await tx.select().from(contacts).where(where).for('update');
  return row;
}

async function upsertInTx(
  tx: Tx,
  shopId: number,
  input: ContactInput,
  meta: { requestId?: string | null; now?: Date },
): Promise<ContactUpsertResult> {
  const now = meta.now ?? new Date();
  const byCustomer = input.shopifyCustomerId ? await findForUpdate(tx, shopId, 'customer', input.shopifyCustomerId) : undefined;
  const byPhone = input.phone ? await findForUpdate(tx, shopId, 'phone', input.phone) : undefined;
  const existing = byCustomer ?? byPhone;
  const phoneConflict = Boolean(byCustomer && byPhone && byCustomer.id !== byPhone.id);

  const consent = input.consent;
  const decision = consent ? decideConsent(existing ?? null, { state: consent.state, origin: consent.origin, at: consent.updatedAt }, now) : null;
  const consentFields = consentColumns(existing ?? null, consent, decision);

  let contact: Contact;
  let created = false;
  if (!existing) {
    const [row] = await tx.insert(contacts).values(newContactValues(shopId, input, consentFields)).returning();
    contact = row!;
    created = true;
  } else {
    const patch = {
      ...(input.shopifyCustomerId && !existing.shopifyCustomerId ? { shopifyCustomerId: input.shopifyCustomerId } : {}),
      ...(input.phone && !phoneConflict ? { phone: input.phone } : {}),
      ...(input.firstName ? { firstName: input.firstName } : {}),
      ...(input.lastName ? { lastName: input.lastName } : {}),
      ...(input.email ? { email: input.email } : {}),
      ...(input.tags ? { tags: input.tags } : {}),
      ...(input.countryCode ? { countryCode: input.countryCode } : {}),
      ...(input.provinceCode ? { provinceCode: input.provinceCode } : {}),
      ...consentFields,
    };
    const [row] = await tx
      .update(contacts)
      .set({ ...patch, updatedAt: sql`now()` })
      .where(eq(contacts.id, existing.id))
      .returning();
    contact = row!;
  }

  const from: ConsentState = existing?.smsConsent ?? 'not_subscribed';
  let consentChange: ContactUpsertResult['consentChange'] = null;
  if (decision?.action === 'apply' && contact.smsConsent !== from) {
    consentChange = { from, to: contact.smsConsent };
    await tx.insert(consentChanges).values({
      shopId,
      contactId: contact.id,
      previousState: existing ? from : null,
      newState: contact.smsConsent,
      source: consent!.source,
      occurredAt: decision.at,
      requestId: meta.requestId ?? null,
    });
  }
  return { contact, created, consentChange, phoneConflict, consentRefused: decision?.action === 'refuse' ? decision.reason : null };
}

const contactById = perHandle((db) =>
  db
    .select()
    .from(contacts)
    .where(and(eq(contacts.shopId, param('shopId')), eq(contacts.id, param('id'))))
    .prepare('contact_by_id'),
);

export async function getContact(db: Db, shopId: number, id: number): Promise<Contact | undefined> {
  const [row] = await contactById(db).execute({ shopId, id });
  return row;
}

/** The shop's contact with this E.164 phone number (a number belongs to at most one contact of a shop). */
export async function findContactByPhone(db: Db, shopId: number, phone: string): Promise<Contact | undefined> {
  const [row] = await db
    .select()
    .from(contacts)
    .where(and(eq(contacts.shopId, shopId), eq(contacts.phone, phone)))
    .limit(1);
  return row;
}

export async function findContactByCustomerId(db: Db, shopId: number, customerId: string): Promise<Contact | undefined> {
  const [row] = await db
    .select()
    .from(contacts)
    .where(and(eq(contacts.shopId, shopId), eq(contacts.shopifyCustomerId, customerId)));
  return row;
}

export async function listConsentChanges(db: Db, contactId: number) {
  return db.select().from(consentChanges).where(eq(consentChanges.contactId, contactId)).orderBy(consentChanges.id);
}

/**
 * The consent change a given request recorded for a contact from a given source, if any. Lets a retried job learn
 * that its first run already applied the change (and must still act on it).
 */
export async function findConsentChangeByRequest(db: Db, contactId: number, requestId: string, source: string) {
  const [row] = await db
    .select()
    .from(consentChanges)
    .where(and(eq(consentChanges.contactId, contactId), eq(consentChanges.requestId, requestId), eq(consentChanges.source, source)))
    .orderBy(desc(consentChanges.id))
    .limit(1);
  return row;
}

export interface ContactSearch {
  /** Matched against phone, email, first and last name (case-insensitive substring). */
  q?: string;
  consent?: ConsentState;
  limit: number;
  /** Keyset pagination: contacts with a smaller id than this (newest first). */
  beforeId?: number;
}

/** One page of a shop's contacts, newest first. */
export async function searchContacts(db: Db, shopId: number, search: ContactSearch): Promise<Contact[]> {
  const like = search.q ? `%${search.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : undefined;
  return db
    .select()
    .from(contacts)
    .where(
      and(
        eq(contacts.shopId, shopId),
        search.consent ? eq(contacts.smsConsent, search.consent) : undefined,
        search.beforeId ? lt(contacts.id, search.beforeId) : undefined,
        like
          ? or(ilike(contacts.phone, like), ilike(contacts.email, like), ilike(contacts.firstName, like), ilike(contacts.lastName, like))
          : undefined,
      ),
    )
    .orderBy(desc(contacts.id))
    .limit(search.limit);
}

/**
 * Sets a contact's consent by hand (a merchant's action), recording the change in `consent_changes`. The row is
 * locked so a concurrent STOP is not overwritten unseen. A merchant may withdraw consent, never undo an opt-out:
 * that answers `refused`. Returns undefined when the shop has no such contact.
 */
export async function setContactConsent(
  db: Db,
  shopId: number,
  contactId: number,
  change: { state: ConsentState; source: string; requestId?: string | null; now?: Date },
): Promise<{ contact: Contact; changed: boolean; refused: ConsentRefusal | null } | undefined> {
  const now = change.now ?? new Date();
  return db.transaction(async (tx) => {
    const [existing] = await tx
      .select()
      .from(contacts)
      .where(and(eq(contacts.shopId, shopId), eq(contacts.id, contactId)))
      .for('update');
    if (!existing) return undefined;
    const decision = decideConsent(existing, { state: change.state, origin: 'merchant', at: null }, now);
    if (decision.action === 'refuse') return { contact: existing, changed: false, refused: decision.reason };
    if (decision.action !== 'apply') return { contact: existing, changed: false, refused: null };
    const [contact] = await tx
      .update(contacts)
      .set({
        smsConsent: change.state,
        smsConsentOptInLevel: change.state === 'subscribed' ? 'single_opt_in' : existing.smsConsentOptInLevel,
        smsConsentSource: change.source,
        smsConsentUpdatedAt: decision.at,
        optedOutAt: optedOutAtAfter(existing, change.state, decision.at),
        updatedAt: sql`now()`,
      })
      .where(eq(contacts.id, contactId))
      .returning();
    await tx.insert(consentChanges).values({
      shopId,
      contactId,
      previousState: existing.smsConsent,
      newState: change.state,
      source: change.source,
      occurredAt: decision.at,
      requestId: change.requestId ?? null,
    });
    return { contact: contact!, changed: true, refused: null };
  });
}

export interface BatchUpsertResult {
  created: boolean;
  phoneConflict: boolean;
  consentRefused: ConsentRefusal | null;
}

/**
 * `upsertContact` for many inputs at once, set-based: one read of the contacts they match (locked), one multi-row
 * insert, one update from a JSON recordset, one insert of the consent transitions — a handful of statements for a
 * page of rows instead of several per row. The same rules hold: match by customer id, else phone; known values are
 * never erased by missing ones; consent follows `decideConsent`.
 *
 * Inputs must not share a phone or a customer id (the CSV parser refuses such rows). An input whose contact another
 * input of the page already touched, or whose insert lost a race, is handled one by one after the page, so the answer
 * is always one result per input, in order.
 */
export async function upsertContactsBatch(
  db: Db,
  shopId: number,
  inputs: readonly ContactInput[],
  meta: { requestId?: string | null; now?: Date } = {},
): Promise<BatchUpsertResult[]> {
  const now = meta.now ?? new Date();
  const results: Array<BatchUpsertResult | undefined> = new Array(inputs.length);
  const later: number[] = [];
  await db.transaction(async (tx) => {
    const phones = inputs.flatMap((i) => (i.phone ? [i.phone] : []));
    const customerIds = inputs.flatMap((i) => (i.shopifyCustomerId ? [i.shopifyCustomerId] : []));
    const found = phones.length || customerIds.length
      ? await tx
          .select()
          .from(contacts)
          .where(
            and(
              eq(contacts.shopId, shopId),
              or(
                phones.length ? sql`${contacts.phone} = ANY(${toTextArray(phones)})` : undefined,
                customerIds.length ? sql`${contacts.shopifyCustomerId} = ANY(${toTextArray(customerIds)})` : undefined,
              ),
            ),
          )
          .for('update')
      : [];
    const byPhone = new Map(found.filter((c) => c.phone).map((c) => [c.phone!, c]));
    const byCustomer = new Map(found.filter((c) => c.shopifyCustomerId).map((c) => [c.shopifyCustomerId!, c]));
    const touched = new Set<number>();

    const inserts: Array<{ index: number; values: typeof contacts.$inferInsert }> = [];
    const updates: Array<Record<string, unknown>> = [];
    const changes: Array<{ index: number; from: ConsentState | null; to: ConsentState; at: Date; source: string; contactId?: number }> = [];

    inputs.forEach((input, index) => {
      const c = input.shopifyCustomerId ? byCustomer.get(input.shopifyCustomerId) : undefined;
      const p = input.phone ? byPhone.get(input.phone) : undefined;
      const existing = c ?? p;
      if (existing && touched.has(existing.id)) {
        later.push(index);
        return;
      }
      const phoneConflict = Boolean(c && p && c.id !== p.id);
      const consent = input.consent;
      const decision = consent ? decideConsent(existing ?? null, { state: consent.state, origin: consent.origin, at: consent.updatedAt }, now) : null;
      const applied = decision?.action === 'apply';
      results[index] = { created: !existing, phoneConflict, consentRefused: decision?.action === 'refuse' ? decision.reason : null };
      if (!existing) {
        inserts.push({ index, values: newContactValues(shopId, input, consentColumns(null, consent, decision)) });
        if (applied && consent!.state !== 'not_subscribed') changes.push({ index, from: null, to: consent!.state, at: decision.at, source: consent!.source });
        return;
      }
      touched.add(existing.id);
      const confirmed = decision?.action === 'confirm';
      updates.push({
        id: existing.id,
        shopify_customer_id: input.shopifyCustomerId && !existing.shopifyCustomerId ? input.shopifyCustomerId : null,
        phone: input.phone && !phoneConflict ? input.phone : null,
        first_name: input.firstName,
        last_name: input.lastName,
        email: input.email,
        tags: input.tags,
        country_code: input.countryCode,
        province_code: input.provinceCode,
        apply: applied,
        sms_consent: applied ? consent!.state : null,
        opt_in_level: applied ? consent!.optInLevel : null,
        source: applied ? consent!.source : null,
        consent_at: applied || confirmed ? decision.at.toISOString() : null,
        set_opted_out: applied || (confirmed && consent!.state === 'unsubscribed'),
        opted_out_at: applied
          ? (optedOutAtAfter(existing, consent!.state, decision.at)?.toISOString() ?? null)
          : confirmed
            ? decision.at.toISOString()
            : null,
      });
      if (applied && consent!.state !== existing.smsConsent) {
        changes.push({ index, from: existing.smsConsent, to: consent!.state, at: decision.at, source: consent!.source, contactId: existing.id });
      }
    });

    const insertedIds = new Map<number, number>();
    if (inserts.length) {
      // One JSON parameter rather than a bind value per cell: a 500-row insert costs one parse, not 7,500 binds.
      const payload = inserts.map(({ values: v }) => ({
        shopify_customer_id: v.shopifyCustomerId,
        phone: v.phone,
        first_name: v.firstName,
        last_name: v.lastName,
        email: v.email,
        tags: v.tags,
        country_code: v.countryCode,
        province_code: v.provinceCode,
        sms_consent: v.smsConsent ?? 'not_subscribed',
        opt_in_level: v.smsConsentOptInLevel ?? null,
        source: v.smsConsentSource ?? null,
        consent_at: v.smsConsentUpdatedAt?.toISOString() ?? null,
        opted_out_at: v.optedOutAt?.toISOString() ?? null,
      }));
      const rows = await rowsOf<{ id: string | number; phone: string | null; shopify_customer_id: string | null }>(
        tx,
        sql`INSERT INTO contacts (shop_id, shopify_customer_id, phone, first_name, last_name, email, tags, country_code, province_code,
                                  sms_consent, sms_consent_opt_in_level, sms_consent_source, sms_consent_updated_at, opted_out_at)
            SELECT ${shopId}, v.shopify_customer_id, v.phone, v.first_name, v.last_name, v.email, v.tags, v.country_code, v.province_code,
                   v.sms_consent, v.opt_in_level, v.source, v.consent_at, v.opted_out_at
            FROM jsonb_to_recordset(${JSON.stringify(payload)}::jsonb) AS v(
              shopify_customer_id text, phone text, first_name text, last_name text, email text, tags text[], country_code text,
              province_code text, sms_consent text, opt_in_level text, source text, consent_at timestamptz, opted_out_at timestamptz)
            ON CONFLICT DO NOTHING
            RETURNING id, phone, shopify_customer_id`,
      );
      const key = (phone: string | null | undefined, customer: string | null | undefined) => `${phone ?? ''}|${customer ?? ''}`;
      const idByKey = new Map(rows.map((r) => [key(r.phone, r.shopify_customer_id), Number(r.id)]));
      for (const i of inserts) {
        const id = idByKey.get(key(i.values.phone, i.values.shopifyCustomerId));
        if (id === undefined) {
          // Another writer created it meanwhile: handled one by one after the page.
          results[i.index] = undefined;
          later.push(i.index);
        } else insertedIds.set(i.index, id);
      }
    }
    if (updates.length) {
      await tx.execute(sql`
        UPDATE contacts c SET
          shopify_customer_id = COALESCE(c.shopify_customer_id, v.shopify_customer_id),
          phone = COALESCE(v.phone, c.phone),
          first_name = COALESCE(v.first_name, c.first_name),
          last_name = COALESCE(v.last_name, c.last_name),
          email = COALESCE(v.email, c.email),
          tags = COALESCE(v.tags, c.tags),
          country_code = COALESCE(v.country_code, c.country_code),
          province_code = COALESCE(v.province_code, c.province_code),
          sms_consent = CASE WHEN v.apply THEN v.sms_consent ELSE c.sms_consent END,
          sms_consent_opt_in_level = CASE WHEN v.apply THEN v.opt_in_level ELSE c.sms_consent_opt_in_level END,
          sms_consent_source = CASE WHEN v.apply THEN v.source ELSE c.sms_consent_source END,
          sms_consent_updated_at = COALESCE(v.consent_at, c.sms_consent_updated_at),
          opted_out_at = CASE WHEN v.set_opted_out THEN v.opted_out_at ELSE c.opted_out_at END,
          updated_at = now()
        FROM jsonb_to_recordset(${JSON.stringify(updates)}::jsonb) AS v(
          id bigint, shopify_customer_id text, phone text, first_name text, last_name text, email text, tags text[],
          country_code text, province_code text, apply boolean, sms_consent text, opt_in_level text, source text,
          consent_at timestamptz, set_opted_out boolean, opted_out_at timestamptz)
        WHERE c.id = v.id AND c.shop_id = ${shopId}`);
    }
    const transitions = changes.flatMap((ch) => {
      const contactId = ch.contactId ?? insertedIds.get(ch.index);
      return contactId === undefined
        ? []
        : [{ shopId, contactId, previousState: ch.from, newState: ch.to, source: ch.source, occurredAt: ch.at, requestId: meta.requestId ?? null }];
    });
    if (transitions.length) {
      await tx.execute(sql`
        INSERT INTO consent_changes (shop_id, contact_id, previous_state, new_state, source, occurred_at, request_id)
        SELECT ${shopId}, v.contact_id, v.previous_state, v.new_state, v.source, v.occurred_at, v.request_id
        FROM jsonb_to_recordset(${JSON.stringify(
          transitions.map((t) => ({
            contact_id: t.contactId,
            previous_state: t.previousState,
            new_state: t.newState,
            source: t.source,
            occurred_at: t.occurredAt.toISOString(),
            request_id: t.requestId,
          })),
        )}::jsonb) AS v(contact_id bigint, previous_state text, new_state text, source text, occurred_at timestamptz, request_id text)`);
    }
  });
  for (const index of later) {
    const r = await upsertContact(db, shopId, inputs[index]!, meta);
    results[index] = { created: r?.created ?? false, phoneConflict: r?.phoneConflict ?? false, consentRefused: r?.consentRefused ?? null };
  }
  return results.map((r) => r!);
}

/** A text[] from one JSON parameter: the same on node-postgres and PGlite, and one bind value however long. */
function toTextArray(values: readonly string[]) {
  return sql`ARRAY(SELECT jsonb_array_elements_text(${JSON.stringify(values)}::jsonb))`;
}
