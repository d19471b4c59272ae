/**
 * Issue 15 item 6, the silent surprises a new user met, each answered in words now: the queue dashboard without
 * ADMIN_TOKEN, unknown fields in a campaign body, and the default order confirmation for a customer without a name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_AUTOMATIONS } from '../../src/automations/defaults.js';
import { upsertShop } from '../../src/db/shops.js';
import { createRenderer } from '../../src/messages/render.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { ADMIN_TOKEN, startTestSystem, type TestSystem } from '../helpers/system.js';

const SHOP = 'surprises.myshopify.com';

describe('the queue dashboard without ADMIN_TOKEN', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem('pglite', { env: { ADMIN_TOKEN: '' } });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  it('answers 403 OPERATOR_DISABLED in the service envelope, saying to set ADMIN_TOKEN, not Bull Board\'s internal error', async () => {
    for (const url of ['/admin/queues', '/admin/queues/api/queues']) {
      const res = await sys.app!.inject({ method: 'GET', url, headers: { accept: 'application/json' } });
      expect(res.statusCode, url).toBe(403);
      expect(res.json().error, url).toEqual({ code: 'OPERATOR_DISABLED', message: expect.stringContaining('set ADMIN_TOKEN') });
    }
  });
});

describe('the queue dashboard with ADMIN_TOKEN', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem('pglite');
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  it('refuses a wrong token as 401 UNAUTHORIZED in the service envelope', async () => {
    const res = await sys.app!.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { authorization: 'Bearer wrong-token-0123456789' } });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('UNAUTHORIZED');
  });
});

describe('unknown fields in a campaign body', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem('pglite', { env: { SHOPIFY_API_KEY } });
    await upsertShop(sys.db.db, SHOP);
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  /** Merchant auth (session token) where the campaign routes take it, else the operator token naming the shop. */
  const post = async (url: string, payload: Record<string, unknown>) => {
    const asMerchant = await sys.app!.inject({ method: 'POST', url, headers: await merchantHeaders(SHOP), payload });
    if (asMerchant.statusCode !== 401 && asMerchant.statusCode !== 403) return asMerchant;
    return sys.app!.inject({ method: 'POST', url, headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, payload: { shop: SHOP, ...payload } });
  };

  it('refuses a top-level quietHours (it belongs under settings) with a 400 naming it', async () => {
    const res = await post('/api/campaigns', { name: 'Night owl', body: 'Hi', filter: { hasPhone: true }, quietHours: { enabled: false } });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().error.message).toContain('quietHours');
    const ok = await post('/api/campaigns', { name: 'Night owl', body: 'Hi', filter: { hasPhone: true }, settings: { quietHours: { enabled: true } } });
    expect(ok.statusCode, ok.body).toBe(201);
  });
});

describe('the default order confirmation', () => {
  it('reads naturally with and without the customer\'s first name', async () => {
    const template = DEFAULT_AUTOMATIONS.find((a) => a.trigger === 'order_paid')!.template;
    const vars = (firstName: string | null) => ({ shop: { name: 'Blossom' }, order: { name: '#1001', totalPrice: '19.00', currency: 'EUR' }, customer: { firstName } });
    const renderer = createRenderer();
    expect((await renderer.render(template, vars(null))).text).toMatch(/^Blossom: Thanks for your order #1001! Total /);
    expect((await renderer.render(template, vars('Ada'))).text).toMatch(/^Blossom: Thanks for your order #1001, Ada! Total /);
  });
});
