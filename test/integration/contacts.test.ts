/**
 * `upsertContact` on a real database (PostgreSQL and PGlite): phone normalisation, matching, merging, consent history
 * and a race of first sightings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { upsertContact, upsertContactsBatch, listConsentChanges, type ContactInput } from '../../src/db/contacts.js';
import { contacts } from '../../src/db/schema.js';
import { upsertShop } from '../../src/db/shops.js';
import { toE164 } from '../../src/shopify/phone.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';

let customerSeq = 9_000_000_000;
const nextCustomerId = () => String(++customerSeq);

function input(patch: Partial<ContactInput> = {}): ContactInput {
  return {
    shopifyCustomerId: null,
    phone: null,
    firstName: null,
    lastName: null,
    email: null,
    tags: null,
    countryCode: null,
    provinceCode: null,
    consent: null,
    ...patch,
  };
}

const consent = (state: 'subscribed' | 'unsubscribed' | 'not_subscribed' | 'pending', updatedAt: string | null, source = 'test') => ({
  state,
  optInLevel: 'single_opt_in',
  updatedAt: updatedAt === null ? null : new Date(updatedAt),
  source,
  // Timed by the given timestamps, as Shopify's records are.
  origin: 'shopify' as const,
});

describe.each(DB_KINDS)('upsertContact on %s', (kind) => {
  let sys: TestSystem;
  let shopId: number;
  let otherShopId: number;

  beforeAll(async () => {
    sys = await startTestSystem(kind);
    shopId = (await upsertShop(sys.db.db, 'contacts-test.myshopify.com')).shop.id;
    otherShopId = (await upsertShop(sys.db.db, 'contacts-other.myshopify.com')).shop.id;
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  const rowsFor = (id: number) => sys.db.db.select().from(contacts).where(eq(contacts.shopId, id));

  it.each([
    ['(201) 555-0101', 'US', '+12015550101'],
    ['  +1 201-555-0102 ', null, '+12015550102'],
    ['201.555.0103', 'us', '+12015550103'],
    ['06 12 34 56 01', 'FR', '+33612345601'],
    ['0044 20 7946 0104', 'DE', '+442079460104'],
    ['+49 (0)30 12345605', null, '+493012345605'],
  ])('stores %j (country %s) as %s', async (raw, country, expected) => {
    const phone = toE164(raw, country);
    expect(phone).toBe(expected);
    const customerId = nextCustomerId();
    const result = await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: customerId, phone }));
    expect(result?.created).toBe(true);
    const [row] = await sys.db.db.select().from(contacts).where(eq(contacts.id, result!.contact.id));
    expect(row!.phone).toBe(expected);
    expect(row!.shopifyCustomerId).toBe(customerId);
  });

  it('does not store a number the database would reject, and needs some identity', async () => {
    expect(toE164('12', 'US')).toBeNull();
    expect(await upsertContact(sys.db.db, shopId, input({ phone: null, email: 'nobody@example.com' }))).toBeNull();
  });

  it('matches by customer id first, then by phone, and treats differently written numbers as one', async () => {
    const customerId = nextCustomerId();
    const first = await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: customerId, phone: toE164('(415) 555-0111', 'US'), firstName: 'Ada' }));
    expect(first!.created).toBe(true);

    // Same customer, new last name, no phone in this payload: the phone is kept.
    const byCustomer = await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: customerId, lastName: 'Lovelace' }));
    expect(byCustomer!.created).toBe(false);
    expect(byCustomer!.contact.id).toBe(first!.contact.id);
    expect(byCustomer!.contact).toMatchObject({ firstName: 'Ada', lastName: 'Lovelace', phone: '+14155550111' });

    // No customer id (a checkout from a guest), same number written another way: found by phone.
    const byPhone = await upsertContact(sys.db.db, shopId, input({ phone: toE164('+1 415.555.0111'), email: 'ada@example.com' }));
    expect(byPhone!.created).toBe(false);
    expect(byPhone!.contact.id).toBe(first!.contact.id);
    expect(byPhone!.contact.email).toBe('ada@example.com');
    expect(byPhone!.contact.shopifyCustomerId).toBe(customerId);

    // The same number in another shop is another contact.
    const elsewhere = await upsertContact(sys.db.db, otherShopId, input({ phone: '+14155550111' }));
    expect(elsewhere!.created).toBe(true);
    expect(elsewhere!.contact.id).not.toBe(first!.contact.id);
  });

  it('merges a phone that arrives after the customer was first seen without one', async () => {
    const customerId = nextCustomerId();
    const phoneless = await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: customerId, email: 'late@example.com', tags: ['vip'] }));
    expect(phoneless!.contact.phone).toBeNull();

    const withPhone = await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: customerId, phone: toE164('415-555-0122', 'US') }));
    expect(withPhone!.created).toBe(false);
    expect(withPhone!.contact.id).toBe(phoneless!.contact.id);
    expect(withPhone!.contact).toMatchObject({ phone: '+14155550122', email: 'late@example.com', tags: ['vip'] });
    const mine = (await rowsFor(shopId)).filter((r) => r.shopifyCustomerId === customerId || r.phone === '+14155550122');
    expect(mine).toHaveLength(1);
  });

  it('does not move a phone held by another contact of the shop', async () => {
    const a = await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: nextCustomerId(), phone: '+14155550133' }));
    const bId = nextCustomerId();
    await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: bId }));
    const b = await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: bId, phone: '+14155550133' }));
    expect(b!.phoneConflict).toBe(true);
    expect(b!.contact.id).not.toBe(a!.contact.id);
    expect(b!.contact.phone).toBeNull();
  });

  it('records each consent transition with its previous state, and unsubscribe/resubscribe set and clear opted_out_at', async () => {
    const customerId = nextCustomerId();
    const phone = '+14155550144';
    const created = await upsertContact(
      sys.db.db,
      shopId,
      input({ shopifyCustomerId: customerId, phone, consent: consent('subscribed', '2024-05-01T10:00:00Z', 'shopify:orders/paid') }),
      { requestId: 'req_consent_1' },
    );
    expect(created!.consentChange).toEqual({ from: 'not_subscribed', to: 'subscribed' });
    expect(created!.contact.smsConsent).toBe('subscribed');
    expect(created!.contact.optedOutAt).toBeNull();

    const out = await upsertContact(
      sys.db.db,
      shopId,
      input({ shopifyCustomerId: customerId, consent: consent('unsubscribed', '2024-05-02T10:00:00Z', 'shopify:customers/update') }),
      { requestId: 'req_consent_2' },
    );
    expect(out!.consentChange).toEqual({ from: 'subscribed', to: 'unsubscribed' });
    expect(out!.contact.smsConsent).toBe('unsubscribed');
    expect(out!.contact.optedOutAt?.toISOString()).toBe('2024-05-02T10:00:00.000Z');

    const back = await upsertContact(
      sys.db.db,
      shopId,
      input({ shopifyCustomerId: customerId, consent: consent('subscribed', '2024-05-03T10:00:00Z', 'shopify:customers_marketing_consent/update') }),
      { requestId: 'req_consent_3' },
    );
    expect(back!.consentChange).toEqual({ from: 'unsubscribed', to: 'subscribed' });
    expect(back!.contact.optedOutAt).toBeNull();
    expect(back!.contact.smsConsentUpdatedAt?.toISOString()).toBe('2024-05-03T10:00:00.000Z');

    // The same state again is no transition.
    const same = await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: customerId, consent: consent('subscribed', '2024-05-03T10:00:00Z') }));
    expect(same!.consentChange).toBeNull();

    const history = await listConsentChanges(sys.db.db, created!.contact.id);
    expect(history.map((h) => [h.previousState, h.newState, h.source, h.requestId, h.occurredAt.toISOString()])).toEqual([
      [null, 'subscribed', 'shopify:orders/paid', 'req_consent_1', '2024-05-01T10:00:00.000Z'],
      ['subscribed', 'unsubscribed', 'shopify:customers/update', 'req_consent_2', '2024-05-02T10:00:00.000Z'],
      ['unsubscribed', 'subscribed', 'shopify:customers_marketing_consent/update', 'req_consent_3', '2024-05-03T10:00:00.000Z'],
    ]);
  });

  it('ignores a consent update older than the stored one', async () => {
    const customerId = nextCustomerId();
    const stop = await upsertContact(
      sys.db.db,
      shopId,
      input({ shopifyCustomerId: customerId, phone: '+14155550155', consent: consent('unsubscribed', '2024-06-10T12:00:00Z', 'sms:inbound') }),
    );
    expect(stop!.contact.smsConsent).toBe('unsubscribed');

    // An order paid earlier, delivered late, still carries the old "subscribed".
    const stale = await upsertContact(
      sys.db.db,
      shopId,
      input({ shopifyCustomerId: customerId, firstName: 'Late', consent: consent('subscribed', '2024-06-09T08:00:00Z', 'shopify:orders/paid') }),
    );
    expect(stale!.consentChange).toBeNull();
    expect(stale!.contact).toMatchObject({ smsConsent: 'unsubscribed', smsConsentSource: 'sms:inbound', firstName: 'Late' });
    expect(stale!.contact.smsConsentUpdatedAt?.toISOString()).toBe('2024-06-10T12:00:00.000Z');
    expect(stale!.contact.optedOutAt?.toISOString()).toBe('2024-06-10T12:00:00.000Z');
    expect(await listConsentChanges(sys.db.db, stop!.contact.id)).toHaveLength(1);
  });

  it('keeps the newest consent time when a repeated state arrives, so an older opposite update stays ignored', async () => {
    // Subscribed at T1, unsubscribed at T2, subscribed again at T3; delivered T1, T3, T2.
    const customerId = nextCustomerId();
    const c = (state: 'subscribed' | 'unsubscribed', at: string) => input({ shopifyCustomerId: customerId, consent: consent(state, at) });
    await upsertContact(sys.db.db, shopId, c('subscribed', '2024-07-01T00:00:00Z'));
    const t3 = await upsertContact(sys.db.db, shopId, c('subscribed', '2024-07-03T00:00:00Z'));
    expect(t3!.consentChange).toBeNull();
    expect(t3!.contact.smsConsentUpdatedAt?.toISOString()).toBe('2024-07-03T00:00:00.000Z');
    const t2 = await upsertContact(sys.db.db, shopId, c('unsubscribed', '2024-07-02T00:00:00Z'));
    expect(t2!.consentChange).toBeNull();
    expect(t2!.contact.smsConsent).toBe('subscribed');
    expect(t2!.contact.optedOutAt).toBeNull();
  });

  it('creates exactly one contact when 20 upserts of one new customer race', async () => {
    // Open every pooled connection first, so the racers start together instead of queueing behind connects: each
    // transaction holds its connection until all of them hold one (a barrier, not a sleep). PGlite has one connection.
    if (kind === 'postgres') {
      const n = sys.config.database.poolSize;
      let arrived = 0;
      let allIn!: () => void;
      const barrier = new Promise<void>((resolve) => (allIn = resolve));
      await Promise.all(
        Array.from({ length: n }, () =>
          sys.db.transaction(async (tx) => {
            await tx.query('SELECT 1');
            if (++arrived === n) allIn();
            await barrier;
          }),
        ),
      );
    }
    const customerId = nextCustomerId();
    const phone = '+14155550166';
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        upsertContact(
          sys.db.db,
          shopId,
          input({ shopifyCustomerId: customerId, phone, firstName: `Racer${i}`, consent: consent('subscribed', '2024-08-01T00:00:00Z') }),
        ),
      ),
    );
    const ids = new Set(results.map((r) => r!.contact.id));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r!.created)).toHaveLength(1);
    const rows = (await rowsFor(shopId)).filter((r) => r.shopifyCustomerId === customerId || r.phone === phone);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.smsConsent).toBe('subscribed');
    // One transition, recorded once, however many racers carried it.
    expect(await listConsentChanges(sys.db.db, rows[0]!.id)).toHaveLength(1);
  });

  it('upsertContactsBatch stores a page set-based under the same rules as one by one', async () => {
    const merchant = (state: 'subscribed' | 'unsubscribed') => ({ state, optInLevel: 'single_opt_in', updatedAt: null, source: 'import:csv', origin: 'merchant' as const });
    const [ann, bob, cid, dan] = [nextCustomerId(), nextCustomerId(), nextCustomerId(), nextCustomerId()];
    const a = await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: ann, phone: '+14155550301', consent: consent('subscribed', '2024-01-01T00:00:00Z') }));
    const b = await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: bob, phone: '+14155550302', consent: { ...consent('unsubscribed', null, 'sms:inbound'), origin: 'customer' } }));
    await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: cid, phone: '+14155550303' }));
    await upsertContact(sys.db.db, shopId, input({ shopifyCustomerId: dan, phone: '+14155550305' }));

    const results = await upsertContactsBatch(
      sys.db.db,
      shopId,
      [
        // Found by customer id: a new phone and name stored, consent confirmed (already subscribed).
        input({ shopifyCustomerId: ann, phone: '+14155550304', firstName: 'Ann', consent: merchant('subscribed') }),
        // Found by phone: opted out, so the merchant's "subscribed" is refused; the name is still stored.
        input({ phone: '+14155550302', firstName: 'Bob', consent: merchant('subscribed') }),
        // Customer id of one contact, phone of another: the phone stays where it is.
        input({ shopifyCustomerId: cid, phone: '+14155550305', lastName: 'Conflict' }),
        // New.
        input({ phone: '+14155550306', firstName: 'Eve', tags: ['vip'], consent: merchant('subscribed') }),
      ],
      { requestId: 'req_batch' },
    );
    expect(results).toEqual([
      { created: false, phoneConflict: false, consentRefused: null },
      { created: false, phoneConflict: false, consentRefused: 'opted_out' },
      { created: false, phoneConflict: true, consentRefused: null },
      { created: true, phoneConflict: false, consentRefused: null },
    ]);
    const rows = await rowsFor(shopId);
    expect(rows.find((r) => r.id === a!.contact.id)).toMatchObject({ phone: '+14155550304', firstName: 'Ann', smsConsent: 'subscribed' });
    expect(rows.find((r) => r.id === b!.contact.id)).toMatchObject({ firstName: 'Bob', smsConsent: 'unsubscribed', smsConsentSource: 'sms:inbound' });
    expect(rows.find((r) => r.shopifyCustomerId === cid)).toMatchObject({ phone: '+14155550303', lastName: 'Conflict' });
    const eve = rows.find((r) => r.phone === '+14155550306')!;
    expect(eve).toMatchObject({ firstName: 'Eve', tags: ['vip'], smsConsent: 'subscribed', smsConsentSource: 'import:csv', optedOutAt: null });
    expect((await listConsentChanges(sys.db.db, eve.id)).map((c) => [c.previousState, c.newState, c.source, c.requestId])).toEqual([[null, 'subscribed', 'import:csv', 'req_batch']]);
    expect(await listConsentChanges(sys.db.db, b!.contact.id)).toHaveLength(1);

    // The same page again changes nothing and creates nothing.
    const again = await upsertContactsBatch(sys.db.db, shopId, [input({ phone: '+14155550306', firstName: 'Eve', consent: merchant('subscribed') })]);
    expect(again).toEqual([{ created: false, phoneConflict: false, consentRefused: null }]);
    expect((await rowsFor(shopId)).filter((r) => r.phone === '+14155550306')).toHaveLength(1);
    expect(await listConsentChanges(sys.db.db, eve.id)).toHaveLength(1);
  });
});
