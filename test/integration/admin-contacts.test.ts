/**
 * Contacts and messages through the merchant API on real Redis and a real database (PostgreSQL and PGlite): CSV import
 * with good and bad rows, search, consent changes with their history, and messages by status and by contact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseContactsCsv } from '../../src/contacts/import.js';
import { markFailed } from '../../src/db/messages.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { seedMessage } from '../helpers/messages.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';

const CSV = [
  'phone,first_name,last_name,email,tags,country,consent',
  '+14155550101,Ada,Lovelace,ada@example.com,vip;newsletter,,subscribed', // 2 good
  '415-555-0102,Grace,Hopper,,,US,', // 3 good (national number, country given)
  'not a phone,Bad,Phone,,,,', // 4 bad phone
  '+14155550104,Bad,Email,not-an-email,,,', // 5 bad email
  '+14155550105,Bad,Consent,,,,maybe', // 6 bad consent
  ',No,Phone,,,,', // 7 missing phone
  '+1 415 555 0101,Dup,Licate,,,,', // 8 same number as line 2
  '+14155550109,Bad,Country,,,USA,', // 9 bad country
  '"+14155550110","Quoted, Name",Jones,,,,unsubscribed', // 10 good (quoted comma)
].join('\n');

describe.each(DB_KINDS)('contacts and messages on %s', (kind) => {
  let sys: TestSystem;
  let h: Record<string, string>;
  const shop = `contacts-${kind}.myshopify.com`;

  beforeAll(async () => {
    sys = await startTestSystem(kind, { env: { SHOPIFY_API_KEY } });
    h = await merchantHeaders(shop);
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  const importCsv = (body: string, headers = h) =>
    sys.app!.inject({ method: 'POST', url: '/api/contacts/import', headers: { ...headers, 'content-type': 'text/csv' }, payload: body });

  it('a NUL character in a CSV field refuses that row, naming the field, never showing SQL; the other rows are kept', async () => {
    // A shop of its own, so the contacts kept here do not appear in the other tests' lists.
    const res = await importCsv('phone,first_name\n+14155550911,Nul\u0000Name\n+14155550912,Fine\n', await merchantHeaders(`nul-${shop}`));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ imported: 1, created: 1, errors: [{ line: 2, reason: 'first_name: contains a NUL character' }] });
    expect(res.body).not.toMatch(/insert into|Failed query|params/i);
  });

  it('imports the good rows of a CSV and reports each bad one with its line and reason', async () => {
    const res = await importCsv(CSV);
    expect(res.statusCode).toBe(200);
    const body = res.json() as { rows: number; imported: number; created: number; updated: number; errors: Array<{ line: number; reason: string }> };
    expect(body).toMatchObject({ rows: 9, imported: 3, created: 3, updated: 0 });
    expect(body.errors.map((e) => e.line)).toEqual([4, 5, 6, 7, 8, 9]);
    expect(body.errors.find((e) => e.line === 4)!.reason).toMatch(/^phone:/);
    expect(body.errors.find((e) => e.line === 5)!.reason).toMatch(/^email:/);
    expect(body.errors.find((e) => e.line === 6)!.reason).toMatch(/^consent:/);
    expect(body.errors.find((e) => e.line === 7)!.reason).toBe('phone: missing');
    expect(body.errors.find((e) => e.line === 8)!.reason).toBe('phone: the same number as line 2');
    expect(body.errors.find((e) => e.line === 9)!.reason).toMatch(/^country:/);

    const list = (await sys.app!.inject({ method: 'GET', url: '/api/contacts', headers: h })).json().items as Array<Record<string, unknown>>;
    expect(list.map((c) => c.phone).sort()).toEqual(['+14155550101', '+14155550102', '+14155550110']);
    const ada = list.find((c) => c.phone === '+14155550101')!;
    expect(ada).toMatchObject({ firstName: 'Ada', email: 'ada@example.com', tags: ['vip', 'newsletter'], smsConsent: 'subscribed', smsConsentSource: 'import:csv' });
    expect(list.find((c) => c.phone === '+14155550110')).toMatchObject({ firstName: 'Quoted, Name', smsConsent: 'unsubscribed' });

    // Importing again updates instead of duplicating.
    const again = (await importCsv('phone,first_name\n+14155550101,Augusta\n')).json();
    expect(again).toMatchObject({ rows: 1, imported: 1, created: 0, updated: 1, errors: [] });
  });

  it('refuses a file it cannot read at all, naming why', async () => {
    for (const [csv, what] of [
      ['first_name,email\nAda,ada@example.com\n', '"phone"'],
      ['phone,favourite_colour\n+14155550101,pink\n', 'favourite_colour'],
      ['', 'no rows'],
    ] as const) {
      const res = await importCsv(csv);
      expect(res.statusCode, csv).toBe(400);
      expect(res.json().error.code).toBe('CSV_INVALID');
      expect(res.json().error.message).toContain(what);
    }
    const json = await sys.app!.inject({ method: 'POST', url: '/api/contacts/import', headers: h, payload: { phone: '+1' } });
    expect(json.statusCode).toBe(400);
  });

  it('a CSV past the import limit is a 413 naming that limit (5 MiB), not the webhooks\' 1 MiB (issue 15)', async () => {
    const res = await importCsv(`phone,first_name\n${'+14155550199,Ada\n'.repeat(Math.ceil((6.8 * 1024 * 1024) / 17))}`);
    expect(res.statusCode).toBe(413);
    expect(res.json().error).toEqual({ code: 'PAYLOAD_TOO_LARGE', message: 'request body is larger than 5242880 bytes (5 MiB), the limit of POST /api/contacts/import' });
  });

  it('searches contacts and filters by consent', async () => {
    const search = (q: string) => sys.app!.inject({ method: 'GET', url: `/api/contacts?${q}`, headers: h }).then((r) => r.json().items as Array<{ firstName: string }>);
    expect((await search('q=hopper')).map((c) => c.firstName)).toEqual(['Grace']);
    expect((await search('q=41555501')).length).toBe(3);
    expect((await search('q=%25')).length).toBe(0); // a literal "%", not a wildcard
    expect((await search('consent=unsubscribed')).map((c) => c.firstName)).toEqual(['Quoted, Name']);
    const page = await sys.app!.inject({ method: 'GET', url: '/api/contacts?limit=2', headers: h });
    expect(page.json().items).toHaveLength(2);
    const next = await sys.app!.inject({ method: 'GET', url: `/api/contacts?limit=2&beforeId=${page.json().nextBeforeId}`, headers: h });
    expect(next.json().items).toHaveLength(1);
    expect((await sys.app!.inject({ method: 'GET', url: '/api/contacts?limit=0', headers: h })).json().error.message).toContain('limit');
  });

  it('changes consent by hand, recorded in the consent history; the same state twice records nothing', async () => {
    const [grace] = (await sys.app!.inject({ method: 'GET', url: '/api/contacts?q=Grace', headers: h })).json().items as Array<{ id: number }>;
    const url = `/api/contacts/${grace!.id}/consent`;
    const first = await sys.app!.inject({ method: 'POST', url, headers: h, payload: { state: 'subscribed', note: 'signed up in store' } });
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ changed: true, contact: { smsConsent: 'subscribed' } });
    expect((await sys.app!.inject({ method: 'POST', url, headers: h, payload: { state: 'subscribed' } })).json().changed).toBe(false);
    await sys.app!.inject({ method: 'POST', url, headers: h, payload: { state: 'unsubscribed' } });
    const detail = (await sys.app!.inject({ method: 'GET', url: `/api/contacts/${grace!.id}`, headers: h })).json();
    expect(detail.contact.smsConsent).toBe('unsubscribed');
    expect(detail.contact.optedOutAt).not.toBeNull();
    expect(detail.consentHistory.map((c: { previousState: string; newState: string; source: string }) => [c.previousState, c.newState, c.source])).toEqual([
      ['not_subscribed', 'subscribed', 'admin:api (signed up in store)'],
      ['subscribed', 'unsubscribed', 'admin:api'],
    ]);
    const bad = await sys.app!.inject({ method: 'POST', url, headers: h, payload: { state: 'redacted' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toContain('state');
  });

  it('lists messages by status and by contact, and shows them on the contact', async () => {
    const seeded = await seedMessage(sys.db.db, { shop });
    const second = await seedMessage(sys.db.db, { shop });
    await markFailed(sys.db.db, second.message.id, { code: 'MITTO_INVALID_RECEIVER', text: 'invalid receiver' });
    const list = (q: string) => sys.app!.inject({ method: 'GET', url: `/api/messages?${q}`, headers: h }).then((r) => r.json().items as Array<{ id: number; status: string }>);
    expect((await list('status=failed')).map((m) => m.id)).toEqual([second.message.id]);
    expect((await list('status=queued')).map((m) => m.id)).toEqual([seeded.message.id]);
    expect((await list(`contactId=${seeded.contact.id}`)).map((m) => m.id)).toEqual([seeded.message.id]);
    expect((await list('')).map((m) => m.id)).toEqual([second.message.id, seeded.message.id]);
    const detail = (await sys.app!.inject({ method: 'GET', url: `/api/contacts/${seeded.contact.id}`, headers: h })).json();
    expect(detail.messages.map((m: { id: number }) => m.id)).toEqual([seeded.message.id]);
    expect((await sys.app!.inject({ method: 'GET', url: '/api/messages?status=lost', headers: h })).statusCode).toBe(400);
  });
});

describe('CSV parsing', () => {
  it('counts lines as the file has them, across quoted line breaks and blank lines', () => {
    const { rows, errors } = parseContactsCsv('phone,first_name\n"+14155550101","Multi\nLine"\n\n+1,short\n+14155550103,Ok\n', { countryCode: null });
    expect(rows.map((r) => r.line)).toEqual([3, 6]);
    expect(errors).toEqual([{ line: 5, reason: 'phone: not a valid phone number (give it in international format, or a country column)' }]);
  });

  it('an unclosed quote costs only its own line: the rows after it are kept (issue 15)', () => {
    const unclosed = 'unreadable row: a quote (") is opened and not closed on this line';
    // Never closed: the parser would read to the end of the file and lose every row after line 2.
    const atEnd = parseContactsCsv('phone,first_name\n+14155550201,"Ada\n+14155550202,Grace\n+14155550203,Hedy\n', { countryCode: null });
    expect(atEnd.errors).toEqual([{ line: 2, reason: unclosed }]);
    expect(atEnd.rows.map((r) => [r.line, r.input.firstName])).toEqual([[3, 'Grace'], [4, 'Hedy']]);
    // Closed by a later row's quote: the rows in between would be lost.
    const later = parseContactsCsv('phone,first_name\n+14155550201,"Ada\n+14155550202,Grace\n+14155550203,"Hedy"\n+14155550204,Bo\n', { countryCode: null });
    expect(later.errors).toEqual([{ line: 2, reason: unclosed }]);
    expect(later.rows.map((r) => r.input.firstName)).toEqual(['Grace', 'Hedy', 'Bo']);
  });

  it('names the 50,000-row limit when a file has more rows', () => {
    const csv = `phone\n${Array.from({ length: 50_001 }, (_, i) => `+1415${String(5_000_000 + i)}`).join('\n')}\n`;
    expect(() => parseContactsCsv(csv, { countryCode: null })).toThrow(/the file has 50,001 rows; at most 50,000 per import/);
  });
});
