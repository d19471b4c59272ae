/**
 * Merchant authentication (Shopify session tokens), shop isolation, operator-only endpoints, rate limits shared
 * through Redis, and the OpenAPI document — through `app.inject()` on real Redis and PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAutomations, ensureDefaultAutomations } from '../../src/db/automations.js';
import { upsertContact } from '../../src/db/contacts.js';
import { reserveMessage } from '../../src/db/messages.js';
import { upsertShop } from '../../src/db/shops.js';
import { buildApp } from '../../src/http/app.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { ADMIN_TOKEN, startTestSystem, type TestSystem } from '../helpers/system.js';

const SHOP_A = 'alpha-blooms.myshopify.com';
const SHOP_B = 'bravo-blooms.myshopify.com';
const ENV = { SHOPIFY_API_KEY };

describe('merchant auth and shop isolation', () => {
  let sys: TestSystem;
  let a: Record<string, string>;
  let b: Record<string, string>;
  /** Shop B's rows, which shop A's token must never reach. */
  const bRows = { contactId: 0, automationId: 0, messageId: 0, segmentId: 0, campaignId: 0 };

  beforeAll(async () => {
    sys = await startTestSystem('postgres', { env: ENV });
    a = await merchantHeaders(SHOP_A);
    b = await merchantHeaders(SHOP_B);
    const db = sys.db.db;
    const { shop } = await upsertShop(db, SHOP_B);
    await ensureDefaultAutomations(db, shop.id);
    bRows.automationId = (await listAutomations(db, shop.id))[0]!.id;
    const c = await upsertContact(db, shop.id, {
      shopifyCustomerId: '9001',
      phone: '+14155550100',
      firstName: 'Bea',
      lastName: null,
      email: 'bea@example.com',
      tags: null,
      countryCode: 'US',
      provinceCode: null,
      consent: { state: 'subscribed', optInLevel: 'single_opt_in', updatedAt: null, source: 'test', origin: 'shopify' },
    });
    bRows.contactId = c!.contact.id;
    const m = await reserveMessage(
      db,
      {
        shopId: shop.id,
        contactId: bRows.contactId,
        automationId: bRows.automationId,
        kind: 'transactional',
        trigger: 'order_paid',
        idempotencyKey: 'b-1',
        toPhone: '+14155550100',
        sender: 'Bravo',
        body: 'hello',
        encoding: 'GSM-7',
        segments: 1,
        costEstimate: 0.03,
        renderWarnings: [],
        scheduledFor: null,
        requestId: 'req-b',
      },
      null,
      new Date(),
    );
    if (m.outcome === 'capped') throw new Error('no cap was given');
    bRows.messageId = m.message.id;
    // B's segment and campaign, made the way B's embedded app makes them: with B's session token.
    const segment = await sys.app!.inject({ method: 'POST', url: '/api/segments', headers: b, payload: { name: 'Bravo VIPs', filter: { tags: { any: ['vip'] } } } });
    expect(segment.statusCode, segment.body).toBe(201);
    bRows.segmentId = segment.json().id;
    const campaign = await sys.app!.inject({ method: 'POST', url: '/api/campaigns', headers: b, payload: { name: 'Bravo sale', body: 'Sale!', segmentId: bRows.segmentId } });
    expect(campaign.statusCode, campaign.body).toBe(201);
    bRows.campaignId = campaign.json().id;
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  const get = (url: string, headers: Record<string, string>) => sys.app!.inject({ method: 'GET', url, headers });

  it('answers a valid session token with that shop, and only that shop', async () => {
    const res = await get('/api/settings', a);
    expect(res.statusCode).toBe(200);
    expect(res.json().shop).toBe(SHOP_A);
    expect((await get('/api/settings', b)).json().shop).toBe(SHOP_B);
  });

  it("accepts a token from an admin whose clock is 8 s off either way (Shopify's 10 s leeway)", async () => {
    for (const skew of [{ notBeforeIn: 8 }, { expiresIn: -8 }]) {
      const res = await get('/api/campaigns', await merchantHeaders(SHOP_A, skew));
      expect(res.statusCode, JSON.stringify(skew)).toBe(200);
    }
    for (const skew of [{ notBeforeIn: 12 }, { expiresIn: -12 }]) {
      expect((await get('/api/campaigns', await merchantHeaders(SHOP_A, skew))).statusCode, JSON.stringify(skew)).toBe(401);
    }
  });

  it.each([
    ['no token', async () => ({})],
    ['an expired token', () => merchantHeaders(SHOP_A, { expiresIn: -60 })],
    ['a token signed with another secret', () => merchantHeaders(SHOP_A, { secret: 'not-the-app-secret' })],
    ['a token for another app (aud)', () => merchantHeaders(SHOP_A, { aud: 'some-other-app' })],
    ['a token not valid yet (nbf)', () => merchantHeaders(SHOP_A, { notBeforeIn: 120 })],
    ['a token signed with HS512', () => merchantHeaders(SHOP_A, { alg: 'HS512' })],
    ['a token whose iss names another shop', () => merchantHeaders(SHOP_A, { iss: `https://${SHOP_B}/admin` })],
    ['a token that is not a JWT', async () => ({ authorization: 'Bearer not.a.jwt' })],
    ['the operator token (merchant routes take session tokens only)', async () => ({ authorization: `Bearer ${ADMIN_TOKEN}` })],
  ])('refuses %s with 401, on every merchant route family', async (_name, headers) => {
    const h = await headers();
    for (const url of ['/api/automations', '/api/segments', `/api/segments/${bRows.segmentId}`, '/api/campaigns', `/api/campaigns/${bRows.campaignId}/progress`, '/api/reports?from=2026-01-01&to=2026-01-31']) {
      const res = await get(url, h);
      expect(res.statusCode, url).toBe(401);
      expect(res.json().error.code, url).toBe('UNAUTHORIZED');
    }
    for (const [url, payload] of [
      ['/api/segments', { name: 'sneaky', filter: { hasPhone: true } }],
      ['/api/campaigns', { name: 'sneaky', body: 'Hi' }],
      [`/api/campaigns/${bRows.campaignId}/send`, undefined],
    ] as const) {
      const res = await sys.app!.inject({ method: 'POST', url, headers: h, payload });
      expect(res.statusCode, url).toBe(401);
      expect(res.json().error.code, url).toBe('UNAUTHORIZED');
    }
    expect((await get('/api/campaigns', b)).json().items).toHaveLength(1);
    expect((await get(`/api/campaigns/${bRows.campaignId}`, b)).json().status).toBe('draft');
  });

  it("keeps segments and campaigns to the token's shop: another shop's are 404, never 403, and are not changed", async () => {
    const { segmentId, campaignId } = bRows;
    const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object) => sys.app!.inject({ method, url, headers: a, payload });
    const attempts: Array<[ 'GET' | 'POST' | 'PATCH' | 'DELETE', string, object?]> = [
      ['GET', `/api/segments/${segmentId}`],
      ['GET', `/api/segments/${segmentId}/preview`],
      ['PATCH', `/api/segments/${segmentId}`, { name: 'taken over' }],
      ['POST', '/api/segments/preview', { segmentId }],
      ['POST', '/api/segments/estimate', { segmentId, body: 'Hi' }],
      ['DELETE', `/api/segments/${segmentId}`],
      ['GET', `/api/campaigns/${campaignId}`],
      ['PATCH', `/api/campaigns/${campaignId}`, { name: 'taken over' }],
      ['GET', `/api/campaigns/${campaignId}/estimate`],
      ['GET', `/api/campaigns/${campaignId}/progress`],
      ['POST', `/api/campaigns/${campaignId}/test`, { phone: '+41 79 000 00 01' }],
      ['POST', `/api/campaigns/${campaignId}/schedule`, { at: '2030-01-01T09:00' }],
      ['POST', `/api/campaigns/${campaignId}/send`],
      ['POST', `/api/campaigns/${campaignId}/pause`],
      ['POST', `/api/campaigns/${campaignId}/resume`],
      ['POST', `/api/campaigns/${campaignId}/cancel`],
    ];
    for (const [method, url, payload] of attempts) {
      const res = await call(method, url, payload);
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(404);
      expect(res.json().error.code, `${method} ${url}`).toBe('NOT_FOUND');
    }
    // A's campaign cannot take B's segment as its audience either.
    const borrowed = await call('POST', '/api/campaigns', { name: 'borrowed', body: 'Hi', segmentId });
    expect(borrowed.statusCode, borrowed.body).toBe(404);
    const own = await call('POST', '/api/campaigns', { name: 'own', body: 'Hi' });
    expect(own.statusCode, own.body).toBe(201);
    const repointed = await call('PATCH', `/api/campaigns/${own.json().id}`, { segmentId });
    expect(repointed.statusCode, repointed.body).toBe(404);
    // A's lists hold none of B's.
    expect((await get('/api/segments', a)).json().items).toEqual([]);
    expect((await get('/api/campaigns', a)).json().items.map((c: { id: number }) => c.id)).toEqual([own.json().id]);
    // B's are as B left them.
    expect((await get(`/api/segments/${segmentId}`, b)).json()).toMatchObject({ id: segmentId, name: 'Bravo VIPs' });
    expect((await get(`/api/campaigns/${campaignId}`, b)).json()).toMatchObject({ id: campaignId, name: 'Bravo sale', status: 'draft' });
  });

  it("gives a merchant the reports of the token's shop; the operator any shop's", async () => {
    const mine = await get('/api/reports?from=2026-01-01&to=2026-01-02', a);
    expect(mine.statusCode, mine.body).toBe(200);
    expect(mine.json().shop).toBe(SHOP_A);
    // The merchant route takes no shop: a `shop` asking for another is not how it chooses.
    expect((await get(`/api/reports?from=2026-01-01&to=2026-01-02&shop=${SHOP_B}`, a)).json().shop).toBe(SHOP_A);
    const operator = await get(`/admin/reports?shop=${SHOP_B}&from=2026-01-01&to=2026-01-02`, { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(operator.statusCode).toBe(200);
    expect(operator.json().shop).toBe(SHOP_B);
    expect((await get(`/admin/reports?shop=${SHOP_B}&from=2026-01-01&to=2026-01-02`, a)).statusCode).toBe(401);
  });

  it("answers 404, never 403, for another shop's rows, and changes nothing", async () => {
    const { contactId, automationId, messageId } = bRows;
    for (const url of [`/api/contacts/${contactId}`, `/api/automations/${automationId}`, `/api/messages/${messageId}`]) {
      const res = await get(url, a);
      expect(res.statusCode, url).toBe(404);
      expect(res.json().error.code).toBe('NOT_FOUND');
      expect((await get(url, b)).statusCode, url).toBe(200);
    }
    const patch = await sys.app!.inject({ method: 'PATCH', url: `/api/automations/${automationId}`, headers: a, payload: { enabled: false } });
    expect(patch.statusCode).toBe(404);
    const consent = await sys.app!.inject({ method: 'POST', url: `/api/contacts/${contactId}/consent`, headers: a, payload: { state: 'unsubscribed' } });
    expect(consent.statusCode).toBe(404);
    const preview = await sys.app!.inject({ method: 'POST', url: `/api/automations/${automationId}/preview`, headers: a, payload: {} });
    expect(preview.statusCode).toBe(404);

    const seenByB = (await get(`/api/contacts/${contactId}`, b)).json();
    expect(seenByB.contact.smsConsent).toBe('subscribed');
    expect(seenByB.consentHistory).toHaveLength(1);
    expect((await get(`/api/automations/${automationId}`, b)).json().enabled).toBe(true);

    // Lists and searches of shop A do not include shop B's rows.
    expect((await get('/api/contacts?q=Bea', a)).json().items).toEqual([]);
    expect((await get('/api/contacts?q=Bea', b)).json().items.map((c: { id: number }) => c.id)).toEqual([contactId]);
    expect((await get(`/api/messages?contactId=${contactId}`, a)).json().items).toEqual([]);
    const automationsOfA = (await get('/api/automations', a)).json().items as Array<{ id: number }>;
    expect(automationsOfA.map((x) => x.id)).not.toContain(automationId);
  });

  it('keeps operator endpoints to the admin token: a merchant token is not enough', async () => {
    expect((await get('/admin/dlq', a)).statusCode).toBe(401);
    expect((await get('/admin/dlq', {})).statusCode).toBe(401);
    expect((await get('/admin/dlq', { authorization: `Bearer ${ADMIN_TOKEN}` })).statusCode).toBe(200);
    const board = await get('/admin/queues', { accept: 'application/json' });
    expect(board.statusCode).toBe(401);
    const browser = await get('/admin/queues', { accept: 'text/html' });
    expect(browser.statusCode).toBe(303);
    expect(browser.headers.location).toBe('/admin/login?next=%2Fadmin%2Fqueues');
  });

  it('serves a valid OpenAPI document listing the admin routes, and the docs UI', async () => {
    const res = await get('/docs/json', {});
    expect(res.statusCode).toBe(200);
    const doc = res.json() as {
      openapi: string;
      info: { title: string };
      paths: Record<string, Record<string, { parameters?: Array<{ in: string; name: string; required?: boolean }>; responses: object; security?: unknown }>>;
      components: { securitySchemes: Record<string, unknown> };
    };
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(doc.info.title).toBe('SMS Blossom API');
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['adminToken', 'callbackToken', 'metricsToken', 'operatorSession', 'sessionToken', 'shopifyHmac']);
    const expected: Array<[string, string]> = [
      ['/api/settings', 'get'],
      ['/api/settings', 'patch'],
      ['/api/automations', 'get'],
      ['/api/automations/{id}', 'get'],
      ['/api/automations/{id}', 'patch'],
      ['/api/automations/{id}/preview', 'post'],
      ['/api/automations/simulate', 'post'],
      ['/api/contacts', 'get'],
      ['/api/contacts/{id}', 'get'],
      ['/api/contacts/{id}/consent', 'post'],
      ['/api/contacts/import', 'post'],
      ['/api/messages', 'get'],
      ['/api/segments', 'post'],
      ['/api/segments/{id}', 'delete'],
      ['/api/campaigns', 'post'],
      ['/api/campaigns/{id}/send', 'post'],
      ['/api/reports', 'get'],
    ];
    for (const [path, method] of expected) {
      const op = doc.paths[path]?.[method];
      expect(op, `${method.toUpperCase()} ${path}`).toBeDefined();
      expect(op!.security).toEqual([{ sessionToken: [] }]);
      expect(op!.responses).toBeTypeOf('object');
    }
    // Structural validity: every templated path declares each of its parameters, in path, required.
    for (const [path, ops] of Object.entries(doc.paths)) {
      const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(ops)) {
        expect(['get', 'put', 'post', 'delete', 'patch', 'head', 'options']).toContain(method);
        for (const name of names) {
          expect(op.parameters?.find((p) => p.in === 'path' && p.name === name)?.required, `${method} ${path} {${name}}`).toBe(true);
        }
      }
    }
    const ui = await get('/docs', {});
    expect([200, 302]).toContain(ui.statusCode);
    const page = ui.statusCode === 302 ? await get(String(ui.headers.location).replace(/^\.\//, '/docs/'), {}) : ui;
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
  });

  it('refuses an invalid request body naming the field', async () => {
    const res = await sys.app!.inject({ method: 'PATCH', url: '/api/settings', headers: a, payload: { quietHours: { start: '25:00' } } });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('VALIDATION_FAILED');
    expect(res.json().error.message).toContain('quietHours.start');
  });
});

describe('rate limits', () => {
  let sys: TestSystem;
  const ENV_LIMITS = { ...ENV, RATE_LIMIT_SHOP_MAX: '3', RATE_LIMIT_IP_MAX: '4', RATE_LIMIT_WINDOW_MS: '60000' };
  beforeAll(async () => {
    sys = await startTestSystem('postgres', { env: ENV_LIMITS });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  it('limits /api per shop, across API processes (Redis store), with 429 and Retry-After', async () => {
    // A second API process on the same Redis and database: the limit is shared, not per process.
    const other = await buildApp({ config: sys.config, logger: sys.logger, db: sys.db, queues: sys.queues, deadLetters: sys.deadLetters });
    await other.ready();
    try {
      const a = await merchantHeaders('limit-a.myshopify.com');
      const codes: number[] = [];
      for (const app of [sys.app!, other, sys.app!, other]) codes.push((await app.inject({ method: 'GET', url: '/api/settings', headers: a })).statusCode);
      expect(codes).toEqual([200, 200, 200, 429]);
      const limited = await other.inject({ method: 'GET', url: '/api/automations', headers: a });
      expect(limited.statusCode).toBe(429);
      expect(limited.json().error.code).toBe('RATE_LIMITED');
      const retryAfter = Number(limited.headers['retry-after']);
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
      // Another shop has a budget of its own.
      const b = await merchantHeaders('limit-b.myshopify.com');
      expect((await sys.app!.inject({ method: 'GET', url: '/api/settings', headers: b })).statusCode).toBe(200);
    } finally {
      await other.close();
    }
  });

  it('limits other routes per IP, and never webhooks or health probes', async () => {
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const ip = '203.0.113.7';
    const codes: number[] = [];
    for (let i = 0; i < 5; i++) codes.push((await sys.app!.inject({ method: 'GET', url: '/admin/dlq', headers: admin, remoteAddress: ip })).statusCode);
    expect(codes).toEqual([200, 200, 200, 200, 429]);
    // Another client is not affected.
    expect((await sys.app!.inject({ method: 'GET', url: '/admin/dlq', headers: admin, remoteAddress: '203.0.113.8' })).statusCode).toBe(200);
    for (let i = 0; i < 8; i++) {
      expect((await sys.app!.inject({ method: 'GET', url: '/health/live', remoteAddress: ip })).statusCode).toBe(200);
      expect((await sys.app!.inject({ method: 'GET', url: '/queue/health', remoteAddress: ip })).statusCode).toBe(200);
      // Unsigned, so refused by intake, but by the signature check (401), never by the limiter (429).
      const hook = await sys.app!.inject({ method: 'POST', url: '/webhooks/shopify', remoteAddress: ip, headers: { 'content-type': 'application/json' }, payload: '{}' });
      expect(hook.statusCode).not.toBe(429);
    }
  });
});
