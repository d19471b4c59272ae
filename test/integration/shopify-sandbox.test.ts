/**
 * The Shopify Admin sandbox on a real socket, driven where it can be by Shopify's own library (`@shopify/shopify-api`:
 * token exchange, refresh, GraphQL client, webhook validation) with its fetch pointed at the sandbox, so the sandbox
 * answers what that library expects from Shopify. Bulk operations are awaited through their signed
 * `bulk_operations/finish` webhook, never by sleeping; results are read as a stream, line by line.
 */
import '@shopify/shopify-api/adapters/node';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { ApiVersion, LogSeverity, RequestedTokenType, shopifyApi, type Session } from '@shopify/shopify-api';
import { abstractFetch, setAbstractFetchFunc } from '@shopify/shopify-api/runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deprecatedUsage, startShopifySandbox, validateAgainstAdminSchema, type ShopifySandbox } from '../../src/sandbox/shopify/server.js';
import { SHOPIFY_API_KEY, sessionToken } from '../helpers/merchant.js';
import { SHOPIFY_SECRET } from '../helpers/system.js';

const SHOP = 'blossom-sync.myshopify.com';
const CUSTOMERS = 20_000;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const OFFLINE = 'urn:shopify:params:oauth:token-type:offline-access-token';

/** The customer fields the sync reads, as it will ask for them in its bulk query. */
const SYNC_FIELDS = `id firstName lastName email phone tags numberOfOrders amountSpent { amount currencyCode }
  defaultAddress { countryCodeV2 provinceCode }
  smsMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt consentCollectedFrom }`;
const BULK_QUERY = `{ customers { edges { node { ${SYNC_FIELDS} } } } }`;

interface Delivery {
  headers: IncomingMessage['headers'];
  body: string;
}

/** Receives webhooks; `next()` resolves with the next delivery (or one that already came and was not taken). */
class Inbox {
  private readonly queue: Delivery[] = [];
  private waiters: ((d: Delivery) => void)[] = [];
  readonly server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.end('ok');
      const delivery = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      const waiter = this.waiters.shift();
      if (waiter) waiter(delivery);
      else this.queue.push(delivery);
    });
  });
  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/webhooks`;
  }
  next(): Promise<Delivery> {
    const ready = this.queue.shift();
    return ready ? Promise.resolve(ready) : new Promise((resolve) => this.waiters.push(resolve));
  }
  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

let sandbox: ShopifySandbox;
let inbox: Inbox;
const shopify = shopifyApi({
  apiKey: SHOPIFY_API_KEY,
  apiSecretKey: SHOPIFY_SECRET,
  hostName: 'localhost',
  apiVersion: ApiVersion.July25,
  isEmbeddedApp: true,
  logger: { level: LogSeverity.Error, log: async () => {} },
});

beforeAll(async () => {
  inbox = new Inbox();
  const webhookUrl = await inbox.listen();
  sandbox = await startShopifySandbox({ customers: CUSTOMERS, secret: SHOPIFY_SECRET, apiKey: SHOPIFY_API_KEY, webhookUrl, bulkDelayMs: 100 });
  // The library calls https://{shop}/admin/...; the service does the same with SHOPIFY_ADMIN_BASE_URL set.
  const realFetch = abstractFetch;
  setAbstractFetchFunc((input, init) => realFetch(String(input).replace(/^https:\/\/([^/]+)\//, `${sandbox.url}/$1/`), init));
});

afterAll(async () => {
  await sandbox?.close();
  await inbox?.close();
});

async function tokenRequest(body: Record<string, string>, shop = SHOP, form = false): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${sandbox.url}/${shop}/admin/oauth/access_token`, {
    method: 'POST',
    headers: { 'content-type': form ? 'application/x-www-form-urlencoded' : 'application/json' },
    body: form ? new URLSearchParams(body).toString() : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function exchangeBody(subject: string, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  return {
    client_id: SHOPIFY_API_KEY,
    client_secret: SHOPIFY_SECRET,
    grant_type: TOKEN_EXCHANGE,
    subject_token: subject,
    subject_token_type: ID_TOKEN,
    requested_token_type: OFFLINE,
    ...extra,
  };
}

async function offlineToken(shop = SHOP): Promise<string> {
  const { json } = await tokenRequest(await exchangeBody(await sessionToken(shop)), shop);
  return json.access_token as string;
}

interface GraphqlAnswer {
  status: number;
  json: { data?: Record<string, any>; errors?: any; extensions?: { cost: Record<string, any> } };
}

async function graphql(query: string, token: string | undefined, shop = SHOP, base = sandbox.url): Promise<GraphqlAnswer> {
  const res = await fetch(`${base}/${shop}/admin/api/2025-07/graphql.json`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { 'x-shopify-access-token': token } : {}) },
    body: JSON.stringify({ query }),
  });
  return { status: res.status, json: (await res.json()) as GraphqlAnswer['json'] };
}

/** Starts a bulk query and resolves with the operation once its finish webhook came (and was validly signed). */
async function runBulk(token: string, query = BULK_QUERY): Promise<{ op: Record<string, any>; webhook: Record<string, unknown> }> {
  const started = await graphql(
    `mutation { bulkOperationRunQuery(query: ${JSON.stringify(query)}) { bulkOperation { id status } userErrors { field message code } } }`,
    token,
  );
  expect(started.json.data!.bulkOperationRunQuery.userErrors).toEqual([]);
  const { id, status } = started.json.data!.bulkOperationRunQuery.bulkOperation;
  expect(status).toBe('CREATED');
  const delivery = await inbox.next();
  const check = await shopify.webhooks.validate({
    rawBody: delivery.body,
    rawRequest: { method: 'POST', url: '/webhooks', headers: delivery.headers } as unknown as IncomingMessage,
  });
  expect(check.valid).toBe(true);
  expect(delivery.headers['x-shopify-topic']).toBe('bulk_operations/finish');
  expect(delivery.headers['x-shopify-shop-domain']).toBe(SHOP);
  expect(delivery.headers['x-shopify-api-version']).toBe('2025-07');
  const webhook = JSON.parse(delivery.body) as Record<string, unknown>;
  expect(webhook.admin_graphql_api_id).toBe(id);
  const node = await graphql(
    `{ node(id: "${id}") { ... on BulkOperation { id status errorCode objectCount url partialDataUrl createdAt completedAt } } }`,
    token,
  );
  return { op: node.json.data!.node, webhook };
}

async function* jsonLines(url: string): AsyncGenerator<Record<string, any>> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  const lines = createInterface({ input: Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), crlfDelay: Infinity });
  for await (const line of lines) yield JSON.parse(line) as Record<string, any>;
}

describe('token endpoint', () => {
  it("exchanges a session token for an offline access token through Shopify's library, which then reads the shop", async () => {
    const { session } = await shopify.auth.tokenExchange({
      shop: SHOP,
      sessionToken: await sessionToken(SHOP),
      requestedTokenType: RequestedTokenType.OfflineAccessToken,
    });
    expect(session.accessToken).toMatch(/^shpat_/);
    expect(session.isOnline).toBe(false);
    expect(session.expires).toBeUndefined();

    const client = new shopify.clients.Graphql({ session });
    const answer = await client.request<{ shop: Record<string, any> }>('{ shop { name ianaTimezone currencyCode plan { displayName } } }');
    expect(answer.data?.shop).toEqual({ name: 'Blossom Sync', ianaTimezone: 'America/New_York', currencyCode: 'USD', plan: { displayName: 'Advanced' } });
    const cost = answer.extensions?.cost as Record<string, any>;
    expect(cost).toMatchObject({ requestedQueryCost: 2, actualQueryCost: 2, throttleStatus: { maximumAvailable: 2000, restoreRate: 100 } });
    expect(cost.throttleStatus.currentlyAvailable).toBeLessThanOrEqual(1998);
  });

  it('issues expiring offline tokens with a refresh token, and the refresh grant rotates them', async () => {
    const { session } = await shopify.auth.tokenExchange({
      shop: SHOP,
      sessionToken: await sessionToken(SHOP),
      requestedTokenType: RequestedTokenType.OfflineAccessToken,
      expiring: true,
    });
    expect(session.expires!.getTime() - Date.now()).toBeGreaterThan(3_500_000);
    expect(session.refreshToken).toMatch(/^shprt_/);

    const refreshed: Session = (await shopify.auth.refreshToken({ shop: SHOP, refreshToken: session.refreshToken! })).session;
    expect(refreshed.accessToken).not.toBe(session.accessToken);
    expect(refreshed.refreshToken).not.toBe(session.refreshToken);
    expect((await graphql('{ shop { name } }', refreshed.accessToken)).status).toBe(200);

    // Once the new access token is in use, the refresh token it replaced is spent.
    const again = await tokenRequest({ client_id: SHOPIFY_API_KEY, client_secret: SHOPIFY_SECRET, grant_type: 'refresh_token', refresh_token: session.refreshToken! });
    expect(again).toMatchObject({ status: 400, json: { error: 'invalid_grant' } });
    const raw = await tokenRequest({ client_id: SHOPIFY_API_KEY, client_secret: SHOPIFY_SECRET, grant_type: 'refresh_token', refresh_token: refreshed.refreshToken! });
    expect(raw.status).toBe(200);
    expect(Object.keys(raw.json).sort()).toEqual(['access_token', 'expires_in', 'refresh_token', 'refresh_token_expires_in', 'scope']);
  });

  it('refuses a session token signed with another secret, for another shop or app, or expired beyond the leeway', async () => {
    const refused = { status: 400, json: { error: 'invalid_subject_token' } };
    expect(await tokenRequest(await exchangeBody(await sessionToken(SHOP, { secret: 'not-the-app-secret' })))).toMatchObject(refused);
    expect(await tokenRequest(await exchangeBody(await sessionToken('other-shop.myshopify.com')))).toMatchObject(refused);
    expect(await tokenRequest(await exchangeBody(await sessionToken(SHOP, { aud: 'another-app' })))).toMatchObject(refused);
    expect(await tokenRequest(await exchangeBody(await sessionToken(SHOP, { expiresIn: -30 })))).toMatchObject(refused);
    expect(await tokenRequest(await exchangeBody(await sessionToken(SHOP, { alg: 'HS512' })))).toMatchObject(refused);
    expect(await tokenRequest(await exchangeBody('not.a.jwt'))).toMatchObject(refused);
    // Within Shopify's 10 s of clock skew a token is still good.
    expect((await tokenRequest(await exchangeBody(await sessionToken(SHOP, { expiresIn: -5 })))).status).toBe(200);
  });

  it('answers OAuth errors for bad client credentials, missing parameters and unknown grants; takes a form body too', async () => {
    const good = await exchangeBody(await sessionToken(SHOP));
    expect(await tokenRequest({ ...good, client_secret: 'wrong' })).toMatchObject({ status: 401, json: { error: 'invalid_client' } });
    const { subject_token: _dropped, ...missing } = good;
    expect(await tokenRequest(missing)).toMatchObject({ status: 400, json: { error: 'invalid_request', error_description: expect.stringContaining('subject_token') } });
    expect(await tokenRequest({ ...good, grant_type: 'authorization_code' })).toMatchObject({ status: 400, json: { error: 'unsupported_grant_type' } });
    const form = await tokenRequest(good, SHOP, true);
    expect(form.status).toBe(200);
    expect(Object.keys(form.json).sort()).toEqual(['access_token', 'scope']);
  });
});

describe('GraphQL Admin API', () => {
  it('answers 401 without a token, with an unknown one, or with a token of another shop', async () => {
    const invalid = { status: 401, json: { errors: '[API] Invalid API key or access token (unrecognized login or wrong password)' } };
    expect(await graphql('{ shop { name } }', undefined)).toEqual(invalid);
    expect(await graphql('{ shop { name } }', 'shpat_made_up')).toEqual(invalid);
    const otherShops = await offlineToken('other-shop.myshopify.com');
    expect(await graphql('{ shop { name } }', otherShops)).toEqual(invalid);
  });

  it('answers a query Shopify would reject with GraphQL errors, not data', async () => {
    const answer = await graphql('{ shop { nmae } }', await offlineToken());
    expect(answer.status).toBe(200);
    expect(answer.json.data).toBeUndefined();
    expect(answer.json.errors[0].message).toContain('Cannot query field "nmae" on type "Shop"');
  });

  it('runs a bulk operation to completion, announced by a signed webhook, whose JSONL streams every customer', async () => {
    const token = await offlineToken();
    const { op, webhook } = await runBulk(token);
    expect(op).toMatchObject({ status: 'COMPLETED', errorCode: null, objectCount: String(CUSTOMERS), partialDataUrl: null });
    expect(op.completedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(webhook).toEqual({ admin_graphql_api_id: op.id, completed_at: op.completedAt, created_at: op.createdAt, error_code: null, status: 'completed', type: 'query' });
    const current = await graphql('{ currentBulkOperation { id status url } }', token);
    expect(current.json.data!.currentBulkOperation).toEqual({ id: op.id, status: 'COMPLETED', url: op.url });

    let lines = 0;
    let withPhone = 0;
    let subscribed = 0;
    const states = new Set<string>();
    for await (const customer of jsonLines(op.url)) {
      lines++;
      expect(customer.id).toBe(`gid://shopify/Customer/${lines}`);
      if (customer.phone !== null) {
        withPhone++;
        expect(customer.phone).toMatch(/^\+1\d{10}$/);
        states.add(customer.smsMarketingConsent.marketingState);
        if (customer.smsMarketingConsent.marketingState === 'SUBSCRIBED') subscribed++;
      } else {
        expect(customer.smsMarketingConsent).toBeNull();
      }
    }
    const stats = (await (await fetch(`${sandbox.url}/__sandbox/stats`)).json()) as Record<string, unknown>;
    expect(stats).toMatchObject({ customers: CUSTOMERS, withPhone, subscribed, ianaTimezone: 'America/New_York' });
    expect(lines).toBe(CUSTOMERS);
    expect(withPhone).toBeLessThan(CUSTOMERS);
    expect(subscribed).toBeGreaterThan(0);
    expect([...states].sort()).toEqual(['NOT_SUBSCRIBED', 'PENDING', 'SUBSCRIBED', 'UNSUBSCRIBED']);
  });

  it('selects only the customers with a phone for customers(query: "phone:*"), as the sync asks', async () => {
    const token = await offlineToken();
    const { op } = await runBulk(token, `{ customers(query: "phone:*") { edges { node { id phone smsMarketingConsent { marketingState } } } } }`);
    const stats = sandbox.stats();
    expect(op.objectCount).toBe(String(stats.withPhone));
    let lines = 0;
    let subscribed = 0;
    for await (const customer of jsonLines(op.url)) {
      lines++;
      expect(customer.phone).not.toBeNull();
      if (customer.smsMarketingConsent.marketingState === 'SUBSCRIBED') subscribed++;
    }
    expect({ lines, subscribed }).toEqual({ lines: stats.withPhone, subscribed: stats.subscribed });

    const page = await graphql('{ customers(first: 12, query: "phone:*") { nodes { id } pageInfo { hasNextPage endCursor } } }', token);
    const ids = (page.json.data!.customers.nodes as { id: string }[]).map((c) => Number(c.id.split('/').pop()));
    expect(ids).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]);
    expect(page.json.data!.customers.pageInfo.hasNextPage).toBe(true);
  });

  it("writes each JSONL line exactly as graphql-js executes the same selection (aliases, fragments, @skip, __typename)", async () => {
    const token = await offlineToken();
    const selection = `__typename key: id ...Names phone spent: amountSpent { amount } tags @skip(if: true)
      smsMarketingConsent { ... on CustomerSmsMarketingConsentState { marketingState consentUpdatedAt } } defaultAddress { provinceCode }`;
    const fragment = 'fragment Names on Customer { firstName lastName numberOfOrders }';
    const { op } = await runBulk(token, `{ customers { nodes { ${selection} } } } ${fragment}`);
    const page = await graphql(`{ customers(first: 60) { nodes { ${selection} } } } ${fragment}`, token);
    const expected = page.json.data!.customers.nodes as Record<string, unknown>[];
    const lines: Record<string, unknown>[] = [];
    for await (const line of jsonLines(op.url)) if (lines.push(line) === expected.length) break;
    expect(lines).toEqual(expected);
    expect(Object.keys(lines[0]!)).toEqual(Object.keys(expected[0]!));
  });

  it('refuses a second bulk query while one runs, and an invalid one, with userErrors', async () => {
    const token = await offlineToken();
    const run = (q: string) => graphql(`mutation { bulkOperationRunQuery(query: ${JSON.stringify(q)}) { bulkOperation { id } userErrors { field message code } } }`, token);
    const invalid = await run('{ customers { edges { node { id phoneNumber } } } }');
    expect(invalid.json.data!.bulkOperationRunQuery).toMatchObject({ bulkOperation: null, userErrors: [{ field: ['query'], code: 'INVALID' }] });
    const unsupported = await run('{ customers(query: "orders_count:>2") { edges { node { id } } } }');
    expect(unsupported.json.data!.bulkOperationRunQuery.userErrors[0]).toMatchObject({ code: 'INVALID', message: expect.stringContaining('phone:*') });
    const first = await run(BULK_QUERY);
    const second = await run(BULK_QUERY);
    expect(second.json.data!.bulkOperationRunQuery.userErrors[0].code).toBe('OPERATION_IN_PROGRESS');
    const webhook = JSON.parse((await inbox.next()).body) as Record<string, unknown>;
    expect(webhook.admin_graphql_api_id).toBe(first.json.data!.bulkOperationRunQuery.bulkOperation.id);
  });

  it('throttles like Shopify: HTTP 200, a THROTTLED error and the bucket in extensions.cost', async () => {
    const small = await startShopifySandbox({ customers: 10, secret: SHOPIFY_SECRET, apiKey: SHOPIFY_API_KEY, throttle: { maximumAvailable: 50, restoreRate: 1 } });
    try {
      const exchanged = await fetch(`${small.url}/${SHOP}/admin/oauth/access_token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(await exchangeBody(await sessionToken(SHOP))),
      });
      const token = ((await exchanged.json()) as { access_token: string }).access_token;
      const query = '{ customers(first: 20) { edges { node { id } } } }';
      const first = await graphql(query, token, SHOP, small.url);
      expect(first.json.extensions!.cost).toMatchObject({ requestedQueryCost: 22, actualQueryCost: 22, throttleStatus: { maximumAvailable: 50, restoreRate: 1 } });
      expect(first.json.data!.customers.edges).toHaveLength(10);
      await graphql(query, token, SHOP, small.url);
      const throttled = await graphql(query, token, SHOP, small.url);
      expect(throttled.status).toBe(200);
      expect(throttled.json.data).toBeUndefined();
      expect(throttled.json.errors).toEqual([{ message: 'Throttled', extensions: { code: 'THROTTLED', documentation: 'https://shopify.dev/api/usage/rate-limits' } }]);
      expect(throttled.json.extensions!.cost.requestedQueryCost).toBe(22);
      expect(throttled.json.extensions!.cost.actualQueryCost).toBeNull();
      expect(throttled.json.extensions!.cost.throttleStatus.currentlyAvailable).toBeLessThan(22);
      expect(small.stats().throttled).toBe(1);
      const tooBig = await graphql('{ customers(first: 250) { edges { node { id amountSpent { amount } defaultAddress { provinceCode } smsMarketingConsent { marketingState } } } } }', token, SHOP, small.url);
      expect(tooBig.json.errors[0].extensions.code).toBe('MAX_COST_EXCEEDED');
    } finally {
      await small.close();
    }
  });
});

describe('injected faults', () => {
  it('fails the next token exchanges and GraphQL calls with 5xx or THROTTLED, then recovers', async () => {
    const token = await offlineToken();
    const set = await fetch(`${sandbox.url}/__sandbox/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tokenErrors: 1, graphqlErrors: 1, graphqlThrottled: 1, serverErrorStatus: 502 }),
    });
    expect(await set.json()).toMatchObject({ tokenErrors: 1, graphqlErrors: 1, graphqlThrottled: 1, serverErrorStatus: 502 });
    expect((await tokenRequest(await exchangeBody(await sessionToken(SHOP)))).status).toBe(502);
    expect((await tokenRequest(await exchangeBody(await sessionToken(SHOP)))).status).toBe(200);
    expect((await graphql('{ shop { name } }', token)).status).toBe(502);
    expect((await graphql('{ shop { name } }', token)).json.errors[0].extensions.code).toBe('THROTTLED');
    expect((await graphql('{ shop { name } }', token)).json.data!.shop.name).toBe('Blossom Sync');
    expect(sandbox.faults()).toMatchObject({ tokenErrors: 0, graphqlErrors: 0, graphqlThrottled: 0 });
    sandbox.setFaults({ serverErrorStatus: 503 });
  });

  it('refuses a fault it does not know, naming it', async () => {
    const res = await fetch(`${sandbox.url}/__sandbox/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tokenErorrs: 1 }) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('tokenErorrs') });
  });

  it('ends a bulk operation FAILED with INTERNAL_SERVER_ERROR and a partial result', async () => {
    const token = await offlineToken();
    sandbox.setFaults({ bulkFailures: 1, bulkErrorCode: 'INTERNAL_SERVER_ERROR' });
    const { op, webhook } = await runBulk(token);
    expect(op).toMatchObject({ status: 'FAILED', errorCode: 'INTERNAL_SERVER_ERROR', url: null, completedAt: null, objectCount: String(CUSTOMERS / 2) });
    expect(webhook).toMatchObject({ status: 'failed', error_code: 'internal_server_error' });
    let lines = 0;
    for await (const _line of jsonLines(op.partialDataUrl)) lines++;
    expect(lines).toBe(CUSTOMERS / 2);
  });

  it('cuts a result download off mid-way, and the next download is whole', async () => {
    const token = await offlineToken();
    const { op } = await runBulk(token);
    sandbox.setFaults({ downloadFailures: 1 });
    let lines = 0;
    const cut = async () => {
      for await (const _line of jsonLines(op.url)) lines++;
    };
    await expect(cut()).rejects.toThrow();
    expect(lines).toBeLessThan(CUSTOMERS);
    lines = 0;
    await cut();
    expect(lines).toBe(CUSTOMERS);
  });
});

describe('validateAgainstAdminSchema', () => {
  it("accepts the sync's queries and rejects a misspelt field, a wrong enum value and a field Shopify does not have", () => {
    expect(validateAgainstAdminSchema(BULK_QUERY)).toEqual([]);
    expect(validateAgainstAdminSchema('{ shop { name ianaTimezone currencyCode plan { displayName } } }')).toEqual([]);
    expect(validateAgainstAdminSchema('{ currentBulkOperation(type: QUERY) { id status errorCode objectCount url partialDataUrl createdAt completedAt } }')).toEqual([]);

    const misspelt = validateAgainstAdminSchema('{ customers(first: 1) { nodes { smsMarketingConsent { marketingStat } } } }');
    expect(misspelt).toHaveLength(1);
    expect(misspelt[0]!.message).toContain('Cannot query field "marketingStat" on type "CustomerSmsMarketingConsentState"');
    expect(validateAgainstAdminSchema('{ currentBulkOperation(type: QUERIES) { id } }')[0]!.message).toContain('QUERIES');
    expect(validateAgainstAdminSchema('{ customers(first: 1) { nodes { acceptsMarketing } } }')).toHaveLength(1);
    expect(validateAgainstAdminSchema('{ shop { name')[0]!.message).toContain('Syntax Error');
  });

  it('names the fields Shopify deprecates in 2025-07, which still answer', async () => {
    expect(deprecatedUsage(BULK_QUERY).map((e) => e.message)).toEqual([
      'The field Customer.email is deprecated. Use `defaultEmailAddress.emailAddress` instead.',
      'The field Customer.phone is deprecated. Use `defaultPhoneNumber.phoneNumber` instead.',
    ]);
    expect(deprecatedUsage('{ customers(first: 1) { nodes { defaultPhoneNumber { phoneNumber marketingState } } } }')).toEqual([]);
    const page = await graphql('{ customers(first: 1) { nodes { phone defaultPhoneNumber { phoneNumber marketingState marketingUpdatedAt } smsMarketingConsent { marketingState consentUpdatedAt } } } }', await offlineToken());
    const [customer] = page.json.data!.customers.nodes;
    expect(customer.defaultPhoneNumber).toEqual({
      phoneNumber: customer.phone,
      marketingState: customer.smsMarketingConsent.marketingState,
      marketingUpdatedAt: customer.smsMarketingConsent.consentUpdatedAt,
    });
  });
});
