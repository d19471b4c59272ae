/**
 * Issue 12, "Hardening": each numbered finding, tried the way an attacker or a careless client would, against the
 * real HTTP server on real Redis and PostgreSQL. Every test here failed before the fix it covers.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { and, eq } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getEvent } from '../../src/db/events.js';
import { deadLetters, events, shops } from '../../src/db/schema.js';
import { upsertShop } from '../../src/db/shops.js';
import { signWebhook } from '../../src/shopify/hmac.js';
import { jobIdFrom } from '../../src/queue/queues.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { uniqueShop } from '../helpers/messages.js';
import { run } from '../helpers/spawn.js';
import { ADMIN_TOKEN, SHOPIFY_SECRET, startTestSystem, TEST_DATABASE_URL, TEST_REDIS_URL, type TestSystem } from '../helpers/system.js';
import { fixture, postWebhook, webhookRequest } from '../helpers/webhooks.js';

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

function errorOf(res: LightMyRequestResponse): { code?: string; message?: string } {
  return (res.json() as { error?: { code?: string; message?: string } }).error ?? {};
}

describe('webhook intake', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem('postgres');
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  const eventsOf = (shop: string) => sys.db.db.select().from(events).where(eq(events.shopDomain, shop));

  it('4: shop/redact whose signed body names another shop than the header is refused with 401; the header shop keeps its data', async () => {
    const victim = uniqueShop('victim');
    const attacker = uniqueShop('attacker');
    await upsertShop(sys.db.db, victim);
    for (const [topic, name] of [
      ['shop/redact', 'shop-redact'],
      ['customers/redact', 'customers-redact'],
      ['customers/data_request', 'customers-data_request'],
    ] as const) {
      const res = await postWebhook(sys.app!, { topic, shop: victim, body: { ...fixture(name), shop_domain: attacker } });
      expect(res.statusCode, `${topic}: ${res.body}`).toBe(401);
      expect(errorOf(res)).toMatchObject({ code: 'SHOP_DOMAIN_MISMATCH', message: expect.stringContaining('X-Shopify-Shop-Domain') });
      // A privacy body that names no shop at all is refused too.
      const { shop_domain: _omitted, ...unnamed } = fixture(name);
      expect((await postWebhook(sys.app!, { topic, shop: victim, body: unnamed })).statusCode).toBe(401);
    }
    expect(await eventsOf(victim)).toHaveLength(0);
    expect(await sys.db.db.select().from(shops).where(eq(shops.domain, victim))).toHaveLength(1);
    // Any topic whose body names a shop: the same rule.
    const order = await postWebhook(sys.app!, { topic: 'orders/paid', shop: victim, body: { ...fixture('orders-paid'), shop_domain: attacker } });
    expect(order.statusCode).toBe(401);
    // The genuine request still goes through.
    const genuine = await postWebhook(sys.app!, { topic: 'shop/redact', shop: victim, body: { ...fixture('shop-redact'), shop_domain: victim.toUpperCase() } });
    expect(genuine.statusCode, genuine.body).toBe(200);
  });

  it.each(['evil.com', '127.0.0.1', 'x.myshopify.com.evil.com', 'myshopify.com', '-x.myshopify.com', 'a.b.myshopify.com'])(
    '5: shop domain %s is not a shop: 400 naming the header, nothing stored',
    async (domain) => {
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', shop: domain, body: fixture('orders-paid') });
      expect(res.statusCode, res.body).toBe(400);
      expect(errorOf(res)).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('X-Shopify-Shop-Domain') });
      expect(await eventsOf(domain)).toHaveLength(0);
      expect(await sys.db.db.select().from(shops).where(eq(shops.domain, domain))).toHaveLength(0);
    },
  );

  it('10: a signed body nested 200,000 arrays deep is a permanent 400, recorded as rejected, never queued', async () => {
    const shop = uniqueShop('deep');
    const webhookId = randomUUID();
    const body = `{"id":1,"x":${'['.repeat(200_000)}${']'.repeat(200_000)}}`;
    for (let attempt = 0; attempt < 2; attempt++) {
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', shop, body, webhookId });
      expect(res.statusCode, res.body).toBe(400);
      expect(errorOf(res)).toMatchObject({ code: 'INVALID_PAYLOAD', message: expect.stringContaining('nested deeper') });
    }
    // Stored once (Shopify's retry finds the row), without the payload, and no job was added.
    expect(await getEvent(sys.db.db, shop, webhookId)).toMatchObject({ status: 'failed', outcome: 'rejected', payload: null, error: expect.stringContaining('INVALID_PAYLOAD') });
    expect(await eventsOf(shop)).toHaveLength(1);
    expect(await sys.queues.get('events').getJob(jobIdFrom('wh', shop, webhookId))).toBeUndefined();
    // Not JSON at all: the same.
    const notJsonId = randomUUID();
    expect((await postWebhook(sys.app!, { topic: 'orders/paid', shop, body: '{"id": 1,', webhookId: notJsonId })).statusCode).toBe(400);
    expect(await getEvent(sys.db.db, shop, notJsonId)).toMatchObject({ status: 'failed', outcome: 'rejected' });
    // Counted among the rejected deliveries.
    const metrics = await sys.app!.inject({ method: 'GET', url: '/metrics', headers: admin });
    expect(metrics.body).toMatch(/smsblossom_webhooks_total\{[^}]*outcome="rejected"[^}]*\} [1-9]/);
  });

  it('3: migration 0006 removes failed-query text kept before this version from dead letters and event errors', async () => {
    const shop = uniqueShop('legacy');
    const leaked = 'Failed query: insert into "contacts" ("phone", "email") values ($1, $2)\nparams: +41791234567,zoe@example.com';
    const [dl] = await sys.db.db
      .insert(deadLetters)
      .values({ queue: 'events', jobName: 'customers/update', jobId: `legacy-${randomUUID()}`, jobCreatedAt: new Date(), data: { shopId: shop }, errorCode: 'DrizzleQueryError', errorMessage: leaked, stack: `Error: ${leaked}\n    at x`, attemptsMade: 5, maxAttempts: 5, shopId: shop })
      .returning();
    const webhookId = randomUUID();
    await sys.db.db.insert(events).values({ shopDomain: shop, topic: 'customers/update', webhookId, status: 'failed', outcome: 'error', error: leaked, payload: null });
    const sqlText = fs.readFileSync(new URL('../../src/db/migrations/0006_scrub_query_text.sql', import.meta.url), 'utf8');
    await sys.db.exec(`SET search_path TO ${sys.config.database.schema}, public;\n${sqlText}`);
    const [after] = await sys.db.db.select().from(deadLetters).where(eq(deadLetters.id, dl!.id));
    const event = await getEvent(sys.db.db, shop, webhookId);
    for (const text of [after!.errorMessage, after!.stack, event!.error]) {
      expect(text ?? '').not.toContain('+41791234567');
      expect(text ?? '').not.toContain('zoe@example.com');
    }
    expect(after!.errorMessage).toContain('database query failed');
  });

  it('13: the signature is decoded strictly: junk characters, base64url and a missing pad are refused', async () => {
    const good = webhookRequest({ topic: 'orders/paid', body: fixture('orders-paid'), shop: uniqueShop('sig') });
    const sig = good.headers['x-shopify-hmac-sha256']!;
    // A body whose signature has '+' or '/', so its base64url spelling differs.
    let payload = Buffer.from('{}');
    let tricky = sig;
    for (let i = 0; i < 200 && !/[+/]/.test(tricky); i++) {
      payload = Buffer.from(JSON.stringify({ ...fixture('orders-paid'), id: 1000 + i }));
      tricky = signWebhook(payload, SHOPIFY_SECRET);
    }
    expect(tricky).toMatch(/[+/]/);
    const variants: Array<[string, Buffer]> = [
      [`${sig.slice(0, 10)}!!${sig.slice(10)}`, good.payload],
      [`${sig}$`, good.payload],
      [`${sig.slice(0, 20)}.${sig.slice(20)}`, good.payload],
      [sig.replace(/=$/, ''), good.payload],
      [tricky.replace(/\+/g, '-').replace(/\//g, '_'), payload],
    ];
    for (const [header, body] of variants) {
      const res = await sys.app!.inject({ ...good, payload: body, headers: { ...good.headers, 'x-shopify-webhook-id': randomUUID(), 'x-shopify-hmac-sha256': header } });
      expect(res.statusCode, header).toBe(401);
      expect(errorOf(res).code).toBe('INVALID_SIGNATURE');
    }
    expect((await sys.app!.inject(good)).statusCode).toBe(200);
    const rows = await sys.db.db.select().from(events).where(and(eq(events.topic, 'orders/paid'), eq(events.shopDomain, good.headers['x-shopify-shop-domain']!)));
    expect(rows).toHaveLength(1);
  });
});

describe('operator and merchant API', () => {
  let sys: TestSystem;
  let proxied: TestSystem;
  const shop = uniqueShop('api');
  let merchant: Record<string, string>;
  beforeAll(async () => {
    [sys, proxied] = await Promise.all([startTestSystem('postgres', { env: { SHOPIFY_API_KEY } }), startTestSystem('postgres', { env: { TRUST_PROXY: '127.0.0.1/8' } })]);
    await upsertShop(sys.db.db, shop);
    merchant = await merchantHeaders(shop, { expiresIn: 600 });
  });
  afterAll(async () => {
    await Promise.all([sys?.teardown(), proxied?.teardown()]);
  });

  const login = (s: TestSystem, token: string, extra: { remoteAddress?: string; url?: string; headers?: Record<string, string> } = {}) =>
    s.app!.inject({
      method: 'POST',
      url: extra.url ?? '/admin/login',
      remoteAddress: extra.remoteAddress,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...extra.headers },
      payload: new URLSearchParams({ token, next: '/admin/queues' }).toString(),
    });

  it('8: the login limit holds for an encoded path, and wrong bearer tokens on any operator route lock the address out', async () => {
    const guesser = '10.9.8.7';
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push((await login(sys, `guess-${i}-0123456789abcdef`, { url: '/admin/%6Cogin', remoteAddress: guesser })).statusCode);
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses[10]).toBe(429);

    // Bearer guesses on other operator routes count as failed authentications of their address, at the same limit.
    const other = '10.9.8.8';
    const guess = (token: string, url: string) => sys.app!.inject({ method: 'GET', url, remoteAddress: other, headers: { authorization: `Bearer ${token}` } });
    const routes = ['/admin/dlq', '/admin/reports', '/admin/privacy/requests', '/admin/dlq/1', '/admin/queues'];
    for (let i = 0; i < 10; i++) expect((await guess(`guess-${i}-0123456789abcdef`, routes[i % routes.length]!)).statusCode).toBe(401);
    const locked = await guess(ADMIN_TOKEN, '/admin/dlq');
    expect(locked.statusCode, locked.body).toBe(429);
    expect(errorOf(locked)).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringContaining('failed operator authentications') });
    // The right token from an address that did not guess still works.
    expect((await sys.app!.inject({ method: 'GET', url: '/admin/dlq', remoteAddress: '10.9.8.9', headers: admin })).statusCode).toBe(200);
  });

  it('9: segment filters nested 5,000 deep or with numbers past their column are 400s naming the problem', async () => {
    // Written out as text: JSON.stringify itself overflows on such an object.
    const deep = `{"name":"deep","body":"Hi","filter":${'{"not":'.repeat(5000)}{"hasPhone":true}${'}'.repeat(5000)}}`;
    const post = (url: string, payload: object | string) =>
      sys.app!.inject({ method: 'POST', url, headers: { ...merchant, 'content-type': 'application/json' }, payload });
    for (const url of ['/api/segments/preview', '/api/segments', '/api/segments/estimate']) {
      const res = await post(url, deep);
      expect(res.statusCode, `${url}: ${res.body}`).toBe(400);
      expect(errorOf(res)).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('nested deeper') });
    }
    // Deeper than a filter may be, yet within the body limit: the segment validator says so before parsing it.
    let twenty: unknown = { hasPhone: true };
    for (let i = 0; i < 20; i++) twenty = { not: twenty };
    const res20 = await post('/api/segments/preview', { filter: twenty });
    expect(res20.statusCode).toBe(400);
    expect(errorOf(res20)).toMatchObject({ code: 'SEGMENT_INVALID', message: expect.stringContaining('nested deeper than 8') });
    for (const [filter, field] of [
      [{ ordersCount: { gte: 1e20 } }, 'ordersCount.gte'],
      [{ and: [{ totalSpent: { lt: -1e300 } }] }, 'and.0.totalSpent.lt'],
    ] as const) {
      const res = await post('/api/segments/preview', { filter });
      expect(res.statusCode, res.body).toBe(400);
      expect(errorOf(res)).toMatchObject({ code: 'SEGMENT_INVALID', message: expect.stringContaining(field) });
    }
    // The largest count the column holds still works.
    expect((await post('/api/segments/preview', { filter: { ordersCount: { gte: 2_147_483_647 } } })).statusCode).toBe(200);
  });

  it('12: a campaign link must be https (or http outside production); javascript: and data: are refused', async () => {
    const create = (linkUrl: string) =>
      sys.app!.inject({ method: 'POST', url: '/api/campaigns', headers: merchant, payload: { name: `c-${randomUUID()}`, body: 'Sale {{ link }}', linkUrl } });
    for (const bad of ['javascript:alert(1)', 'data:text/html,<script>alert(1)</script>', 'ftp://example.com/x', 'file:///etc/passwd']) {
      const res = await create(bad);
      expect(res.statusCode, `${bad}: ${res.body}`).toBe(400);
      expect(errorOf(res)).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('linkUrl') });
    }
    const ok = await create('https://blossom.example/sale');
    expect(ok.statusCode, ok.body).toBe(201);
    expect((await create('http://localhost:8080/sale')).statusCode).toBe(201);
    const patch = await sys.app!.inject({ method: 'PATCH', url: `/api/campaigns/${ok.json().id}`, headers: merchant, payload: { linkUrl: 'javascript:alert(1)' } });
    expect(patch.statusCode).toBe(400);
    expect(errorOf(patch).message).toContain('linkUrl');
  });

  it('15: behind a trusted TLS-terminating proxy the operator cookie is Secure; an untrusted X-Forwarded-Proto changes nothing', async () => {
    const viaProxy = await login(proxied, ADMIN_TOKEN, { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.9' } });
    expect(viaProxy.statusCode, viaProxy.body).toBe(303);
    expect(String(viaProxy.headers['set-cookie'])).toMatch(/; Secure/);
    const plain = await login(proxied, ADMIN_TOKEN);
    expect(String(plain.headers['set-cookie'])).not.toMatch(/Secure/);
    // Without TRUST_PROXY the header is anyone's to send: ignored.
    const spoofed = await login(sys, ADMIN_TOKEN, { headers: { 'x-forwarded-proto': 'https' } });
    expect(spoofed.statusCode).toBe(303);
    expect(String(spoofed.headers['set-cookie'])).not.toMatch(/Secure/);
  });
});

describe('production start-up', () => {
  const production = {
    NODE_ENV: 'production',
    SHOPIFY_API_SECRET: SHOPIFY_SECRET,
    REDIS_URL: TEST_REDIS_URL,
    DATABASE_URL: TEST_DATABASE_URL,
    PORT: '0',
    HOST: '127.0.0.1',
  };
  const start = (env: Record<string, string>) => run(process.execPath, ['bin/smsblossom.js', 'start'], env, 60_000);

  it('14: production refuses to start without a real SMS provider or without PUBLIC_URL, naming the variable', async () => {
    const [noProvider, noPublicUrl, sandboxNoUrl] = await Promise.all([
      start({ ...production, PUBLIC_URL: 'https://sms.blossom.example' }),
      start({ ...production, MITTO_API_KEY: 'mitto-key-0123456789' }),
      start({ ...production, SMS_PROVIDER: 'sandbox' }),
    ]);
    expect(noProvider.code, noProvider.stderr).toBe(2);
    expect(noProvider.stderr).toMatch(/^smsblossom: invalid configuration: MITTO_API_KEY: is required when NODE_ENV=production/m);
    expect(noPublicUrl.code, noPublicUrl.stderr).toBe(2);
    expect(noPublicUrl.stderr).toMatch(/^smsblossom: invalid configuration: PUBLIC_URL: is required when NODE_ENV=production/m);
    // Choosing the sandbox explicitly is allowed; the callback address is still required.
    expect(sandboxNoUrl.code).toBe(2);
    expect(sandboxNoUrl.stderr).toContain('PUBLIC_URL');
  });
});

describe('slow clients', () => {
  let sys: TestSystem;
  const REQUEST_TIMEOUT_MS = 1000;
  const PER_IP = 20;
  beforeAll(async () => {
    sys = await startTestSystem('postgres', {
      listen: true,
      env: { HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), HTTP_HEADERS_TIMEOUT_MS: '500', HTTP_MAX_CONNECTIONS_PER_IP: String(PER_IP) },
    });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  /** A connection from `localAddress` (any of 127/8 reaches 127.0.0.1), resolved once connected. */
  function connect(localAddress = '127.0.0.1'): Promise<net.Socket> {
    const { port } = new URL(sys.url!);
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: Number(port), localAddress }, () => resolve(socket));
      socket.once('error', reject);
    });
  }

  /** Resolves with what the server sent and how long after `since` it closed the socket; rejects past `limitMs`. */
  function closed(socket: net.Socket, since: number, limitMs: number): Promise<{ ms: number; data: string }> {
    let data = '';
    socket.on('data', (c: Buffer) => (data += c.toString()));
    socket.on('error', () => undefined);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`socket still open after ${limitMs} ms`)), limitMs);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve({ ms: Date.now() - since, data });
      });
    });
  }

  it('7: bodies trickling in are cut off at the request timeout, headers at theirs, and one address cannot hold every connection', async () => {
    const started = Date.now();
    const slow = await Promise.all(Array.from({ length: PER_IP }, () => connect()));
    const outcomes = slow.map((s, i) => {
      const done = closed(s, started, 5 * REQUEST_TIMEOUT_MS);
      if (i % 2) s.write('POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{');
      else s.write('GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: '); // headers that never end
      return done;
    });

    // Over the per-address cap: closed on arrival, nothing answered.
    const extra = await connect();
    const refused = await closed(extra, Date.now(), REQUEST_TIMEOUT_MS);
    expect(refused.data).toBe('');
    // Another address is not affected while the slow ones hold theirs.
    const { port } = new URL(sys.url!);
    const other = await new Promise<number>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: Number(port), path: '/health/live', localAddress: '127.0.0.2', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.once('error', reject);
    });
    expect(other).toBe(200);

    const results = await Promise.all(outcomes);
    for (const [i, r] of results.entries()) {
      // Node answers 408 to a request that ran out of time, then closes; within the deadline plus one check interval.
      expect(r.data, `socket ${i}`).toMatch(/^HTTP\/1\.1 408/);
      expect(r.ms, `socket ${i}`).toBeLessThan(REQUEST_TIMEOUT_MS + 1000);
    }
    // Their slots are free again.
    const again = await connect();
    const answer = closed(again, Date.now(), 2000);
    again.end('GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect((await answer).data).toMatch(/^HTTP\/1\.1 200/);
  });
});

describe('merchant templates', () => {
  let sys: TestSystem;
  const PREVIEWS = 12;
  const RENDER_TIMEOUT_MS = 300;
  beforeAll(async () => {
    sys = await startTestSystem('postgres', {
      env: { SHOPIFY_API_KEY, RENDER_TIMEOUT_MS: String(RENDER_TIMEOUT_MS), RENDER_POOL_SIZE: '1', PREVIEW_RATE_LIMIT_MAX: String(PREVIEWS) },
    });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  it('6: twelve concurrent runaway previews neither hold another shop\'s webhook nor /health/live; a thirteenth is refused', async () => {
    const merchant = uniqueShop('previewer');
    const headers = await merchantHeaders(merchant);
    const list = await sys.app!.inject({ method: 'GET', url: '/api/automations', headers });
    expect(list.statusCode, list.body).toBe(200);
    const automationId = (list.json() as { items: Array<{ id: number }> }).items[0]!.id;
    const template = '{% for a in (1..1000) %}{% for b in (1..1000) %}{% for c in (1..1000) %}x{% endfor %}{% endfor %}{% endfor %}';
    const preview = () => sys.app!.inject({ method: 'POST', url: `/api/automations/${automationId}/preview`, headers, payload: { template } });

    const started = Date.now();
    const previews = Promise.all(Array.from({ length: PREVIEWS }, preview));
    // While they render: another shop's signed webhooks and the liveness probe, timed one after another.
    const other = uniqueShop('bystander');
    const webhookMs: number[] = [];
    const liveMs: number[] = [];
    let settled = false;
    void previews.finally(() => (settled = true));
    for (let i = 0; i < 200 && !settled; i++) {
      let t = Date.now();
      const res = await postWebhook(sys.app!, { topic: 'orders/paid', shop: other, body: { ...fixture('orders-paid'), id: 9000 + i } });
      webhookMs.push(Date.now() - t);
      expect(res.statusCode, res.body).toBe(200);
      t = Date.now();
      expect((await sys.app!.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
      liveMs.push(Date.now() - t);
    }
    const results = await previews;
    const elapsed = Date.now() - started;
    // Each preview ran out of time on the render thread and said so.
    for (const r of results) {
      expect(r.statusCode, r.body).toBe(422);
      expect(errorOf(r)).toMatchObject({ code: 'TEMPLATE_RENDER_FAILED' });
    }
    // They ran one after another on the one render thread, while the event loop kept answering.
    expect(elapsed).toBeGreaterThan(PREVIEWS * RENDER_TIMEOUT_MS * 0.5);
    expect(webhookMs.length).toBeGreaterThan(5);
    // Before the render threads each of these previews held the event loop for the whole 1 s render limit, one after
    // another: a webhook waited up to 12 s. The bounds leave room for a loaded test machine and still catch that.
    expect(Math.max(...webhookMs), `webhook latencies ${webhookMs.join(',')}`).toBeLessThan(1000);
    expect(Math.max(...liveMs), `liveness latencies ${liveMs.join(',')}`).toBeLessThan(250);

    const over = await preview();
    expect(over.statusCode).toBe(429);
    expect(errorOf(over)).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringContaining('previews') });
    // An ordinary preview of another shop still renders.
    const second = uniqueShop('previewer');
    const h2 = await merchantHeaders(second);
    const id2 = ((await sys.app!.inject({ method: 'GET', url: '/api/automations', headers: h2 })).json() as { items: Array<{ id: number }> }).items[0]!.id;
    const ok = await sys.app!.inject({ method: 'POST', url: `/api/automations/${id2}/preview`, headers: h2, payload: { template: 'Hi {{ customer.firstName }}' } });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json().text).toContain('Hi Ada');
  });
});
