/** Named database operations on `contacts` and `consent_changes`. */
import { and, desc, eq, ilike, lt, or, sql } from 'drizzle-orm';
import type { Db } from './client.js';
import { consentChanges, contacts, type ConsentState, type Contact } from './schema.js';

export interface ConsentInput {
  state: ConsentState;
  optInLevel: string | null;
  /** When the customer gave or withdrew consent; null means "now". */
  updatedAt: Date | null;
  /** Where the consent came from, e.g. `shopify:customers/update`, `shopify:checkout`, `sms:inbound`. */
  source: string;
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
}

/** The SQLSTATE of a database error; Drizzle wraps the driver's error in `DrizzleQueryError`, so look at causes too. */
function sqlStateOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

/**
 * Finds the shop's contact by Shopify customer id, else by phone, and merges the input into it (creating it when
 * neither matches). Known values are never erased by missing ones. Consent only moves forward in time: an update older
 * than the stored one (say, an order payload carrying stale consent after the customer replied STOP) is ignored.
 */
export async function upsertContact(
  db: Db,
  shopId: number,
  input: ContactInput,
  meta: { requestId?: string | null; now?: Date } = {},
): Promise<ContactUpsertResult | null> {
  if (!input.shopifyCustomerId && !input.phone) return null;
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
  const consentAt = consent ? (consent.updatedAt ?? now) : now;
  const consentIsNewer =
    consent !== null && (!existing || existing.smsConsentUpdatedAt === null || consentAt >= existing.smsConsentUpdatedAt);
  const consentApplies = consentIsNewer && (!existing || consent!.state !== existing.smsConsent);
  // The same state, confirmed later: no transition, but the stored time must move forward, or an update older than
  // this one (delivered out of order) would later look newer than what we hold and flip the state back.
  const consentConfirmed =
    consentIsNewer &&
    !consentApplies &&
    existing !== undefined &&
    consent!.updatedAt !== null &&
    (existing.smsConsentUpdatedAt === null || consent!.updatedAt > existing.smsConsentUpdatedAt);

  const consentFields = consentApplies
    ? {
        smsConsent: consent!.state,
        smsConsentOptInLevel: consent!.optInLevel,
        smsConsentSource: consent!.source,
        smsConsentUpdatedAt: consentAt,
        optedOutAt: consent!.state === 'unsubscribed' ? consentAt : null,
      }
    : consentConfirmed
      ? { smsConsentUpdatedAt: consent!.updatedAt! }
      : {};

  let contact: Contact;
  let created = false;
  if (!existing) {
    const [row] = await tx
      .insert(contacts)
      .values({
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
      })
      .returning();
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
  if (consentApplies && contact.smsConsent !== from) {
    consentChange = { from, to: contact.smsConsent };
    await tx.insert(consentChanges).values({
      shopId,
      contactId: contact.id,
      previousState: existing ? from : null,
      newState: contact.smsConsent,
      source: consent!.source,
      occurredAt: consentAt,
      requestId: meta.requestId ?? null,
    });
  }
  return { contact, created, consentChange, phoneConflict };
}

export async function getContact(db: Db, shopId: number, id: number): Promise<Contact | undefined> {
  const [row] = await db
    .select()
    .from(contacts)
    .where(and(eq(contacts.shopId, shopId), eq(contacts.id, id)));
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
 * Sets a contact's consent by hand (merchant action), recording the change in `consent_changes`. The row is locked so
 * a concurrent STOP is not overwritten unseen. Returns undefined when the shop has no such contact.
 */
export async function setContactConsent(
  db: Db,
  shopId: number,
  contactId: number,
  change: { state: ConsentState; source: string; requestId?: string | null; now?: Date },
): Promise<{ contact: Contact; changed: boolean } | undefined> {
  const now = change.now ?? new Date();
  return db.transaction(async (tx) => {
    const [existing] = await tx
      .select()
      .from(contacts)
      .where(and(eq(contacts.shopId, shopId), eq(contacts.id, contactId)))
      .for('update');
    if (!existing) return undefined;
    if (existing.smsConsent === change.state) return { contact: existing, changed: false };
    const [contact] = await tx
      .update(contacts)
      .set({
        smsConsent: change.state,
        smsConsentOptInLevel: change.state === 'subscribed' ? 'single_opt_in' : existing.smsConsentOptInLevel,
        smsConsentSource: change.source,
        smsConsentUpdatedAt: now,
        optedOutAt: change.state === 'unsubscribed' ? now : null,
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
      occurredAt: now,
      requestId: change.requestId ?? null,
    });
    return { contact: contact!, changed: true };
  });
}
