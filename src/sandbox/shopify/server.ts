/**
 * A local Shopify Admin API for development, tests and benchmarks. For any shop domain `X` it serves, under
 * `{base}/X/admin/...`, what SMS Blossom calls on Shopify: the token endpoint (token exchange of a session token,
 * expiring offline tokens and their refresh), and the GraphQL Admin API 2025-07 (`shop`, `customers`,
 * `bulkOperationRunQuery`, `currentBulkOperation`, `node`, `bulkOperationCancel`) with Shopify's cost-based throttling.
 * Bulk operations run CREATED → RUNNING → COMPLETED over a short simulated time, optionally announce themselves
 * with a signed `bulk_operations/finish` webhook, and their JSONL result is generated while it is downloaded.
 *
 * The shop has `customers` customers generated from their number (see `customers.ts`), so N = 1,000,000 costs no
 * memory and `GET /__sandbox/stats` knows the counts without generating any.
 *
 * Control endpoints (no authentication): `GET|POST|DELETE /__sandbox/faults`, `GET /__sandbox/stats`.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import { execute, GraphQLError, parse, validate, type DocumentNode, type ExecutionResult } from 'graphql';
import { z } from 'zod';
import { loadConfig } from '../../config.js';
import { AppError, describeIssues } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { bulkResultStream, planBulkQuery, type BulkPlan } from './bulk.js';
import { countCustomers, countMatching, customerAt, type CustomerCounts, matches, parseCustomerSearch } from './customers.js';
import { ADMIN_API_VERSION, adminSchema, requestedQueryCost } from './schema.js';
import { createTokenStore } from './tokens.js';

export { validateAgainstAdminSchema, deprecatedUsage, ADMIN_API_VERSION } from './schema.js';

export interface ShopifySandboxOptions {
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** How many customers every shop has. */
  customers: number;
  /** The app's API secret: signs session tokens, authenticates the token endpoint, signs webhooks. Default: the service's development secret. */
  secret?: string;
  /** The app's API key (`client_id`, the session token's `aud`). Default: the service's development key. */
  apiKey?: string;
  /** The shop's `ianaTimezone`. Default America/New_York. */
  timezone?: string;
  /** The shop's currency. Default USD. */
  currencyCode?: 'AUD' | 'CAD' | 'EUR' | 'GBP' | 'USD';
  /** Where `bulk_operations/finish` webhooks are posted; none when unset. */
  webhookUrl?: string;
  /** Time from a bulk operation's creation to its completion (half of it CREATED, half RUNNING). Default 200 ms. */
  bulkDelayMs?: number;
  /** Scopes granted to tokens. Default `read_customers`. */
  scope?: string;
  /** `expires_in` of expiring offline tokens. Default 3600, as Shopify. */
  accessTokenTtlSeconds?: number;
  /** `refresh_token_expires_in`. Default 7,776,000 (90 days). */
  refreshTokenTtlSeconds?: number;
  /** The leaky bucket of each shop. Default 2000 points, restoring 100 a second (Shopify's Advanced plan rates). */
  throttle?: { maximumAvailable: number; restoreRate: number };
  logger?: Logger;
}

/** Failures to inject; each count goes down by one as a request takes it. */
export interface ShopifyFaults {
  /** The next N token requests are answered `serverErrorStatus`. */
  tokenErrors: number;
  /** The next N GraphQL requests are answered `serverErrorStatus`. */
  graphqlErrors: number;
  /** The next N GraphQL requests are answered THROTTLED whatever the bucket holds. */
  graphqlThrottled: number;
  /** The next N bulk operations end FAILED with `bulkErrorCode`, a partial result at `partialDataUrl`. */
  bulkFailures: number;
  bulkErrorCode: 'ACCESS_DENIED' | 'INTERNAL_SERVER_ERROR' | 'TIMEOUT';
  /** The next N result downloads are cut off after half their lines. */
  downloadFailures: number;
  /** Status of injected server errors. Default 503. */
  serverErrorStatus: 500 | 502 | 503 | 504;
}

export interface ShopifySandboxStats extends CustomerCounts {
  ianaTimezone: string;
  tokenRequests: number;
  tokensIssued: number;
  graphqlRequests: number;
  unauthorized: number;
  throttled: number;
  serverErrors: number;
  bulkOperations: number;
  downloads: number;
  webhooks: { sent: number; failed: number };
}

export interface ShopifySandbox {
  /** Base URL, e.g. `http://127.0.0.1:4321`; the service's SHOPIFY_ADMIN_BASE_URL. */
  url: string;
  app: FastifyInstance;
  stats(): ShopifySandboxStats;
  faults(): ShopifyFaults;
  /** Merges `patch` into the current faults and returns them. */
  setFaults(patch: Partial<ShopifyFaults>): ShopifyFaults;
  /** Where `bulk_operations/finish` webhooks go from now on (undefined: nowhere), for a service started after the sandbox. */
  setWebhookUrl(url: string | undefined): void;
  /** Invalidates every token issued for `shop`, as an uninstall does. */
  revokeTokens(shop: string): void;
  /** Idempotent: cancels pending bulk transitions and webhooks, closes the server. */
  close(): Promise<void>;
}

const DEFAULT_FAULTS: ShopifyFaults = {
  tokenErrors: 0,
  graphqlErrors: 0,
  graphqlThrottled: 0,
  bulkFailures: 0,
  bulkErrorCode: 'INTERNAL_SERVER_ERROR',
  downloadFailures: 0,
  serverErrorStatus: 503,
};

const count = z.number().int().min(0);
const FaultsInput = z
  .object({
    tokenErrors: count,
    graphqlErrors: count,
    graphqlThrottled: count,
    bulkFailures: count,
    bulkErrorCode: z.enum(['ACCESS_DENIED', 'INTERNAL_SERVER_ERROR', 'TIMEOUT']),
    downloadFailures: count,
    serverErrorStatus: z.union([z.literal(500), z.literal(502), z.literal(503), z.literal(504)]),
  })
  .partial()
  .strict();

/** Shopify refuses a single query above this cost, whatever the bucket holds. */
const SINGLE_QUERY_MAX_COST = 1000;
const THROTTLE_DOCS = 'https://shopify.dev/api/usage/rate-limits';
const INVALID_TOKEN = '[API] Invalid API key or access token (unrecognized login or wrong password)';
const WEBHOOK_ATTEMPTS = 3;
const WEBHOOK_TIMEOUT_MS = 5_000;

type BulkStatus = 'CREATED' | 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCELING' | 'CANCELED';

interface BulkOperation {
  id: string;
  shop: string;
  query: string;
  plan: BulkPlan;
  status: BulkStatus;
  errorCode: ShopifyFaults['bulkErrorCode'] | null;
  createdAt: Date;
  completedAt: Date | null;
  objectCount: number;
  /** Capability key of the result file, set when it exists. */
  resultKey: string | null;
  partialKey: string | null;
  /** The base URL the operation was created through, so its file URLs point where the client can reach. */
  base: string;
}

interface Bucket {
  available: number;
  at: number;
}

/** Shop domains as they appear in the path: a hostname, lower case. */
const SHOP = /^[a-z0-9][a-z0-9.-]{0,253}$/;

function shopName(domain: string): string {
  return domain
    .replace(/\.myshopify\.com$/, '')
    .split(/[-.]/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join(' ');
}

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

export async function startShopifySandbox(options: ShopifySandboxOptions): Promise<ShopifySandbox> {
  const { customers: total, logger } = options;
  if (!Number.isInteger(total) || total < 0) throw new AppError('CONFIG_INVALID', `shopify sandbox customers must be a non-negative integer, got ${total}`);
  const dev = loadConfig({ NODE_ENV: 'development' }).shopify;
  const secret = options.secret ?? dev.apiSecret;
  const apiKey = options.apiKey ?? dev.apiKey!;
  const timezone = options.timezone ?? 'America/New_York';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
  } catch {
    throw new AppError('CONFIG_INVALID', `shopify sandbox timezone: "${timezone}" is not an IANA time zone`);
  }
  const currencyCode = options.currencyCode ?? 'USD';
  const bulkDelayMs = options.bulkDelayMs ?? 200;
  if (!Number.isInteger(bulkDelayMs) || bulkDelayMs < 0) throw new AppError('CONFIG_INVALID', `shopify sandbox bulkDelayMs must be a non-negative integer, got ${bulkDelayMs}`);
  const throttle = options.throttle ?? { maximumAvailable: 2000, restoreRate: 100 };
  const schema = adminSchema();
  const tokens = createTokenStore({
    apiKey,
    secret,
    scope: options.scope ?? 'read_customers',
    accessTokenTtlSeconds: options.accessTokenTtlSeconds ?? 3600,
    refreshTokenTtlSeconds: options.refreshTokenTtlSeconds ?? 7_776_000,
  });
  const counts = countCustomers(total);

  let faults: ShopifyFaults = { ...DEFAULT_FAULTS };
  let webhookUrl = options.webhookUrl;
  const stats = {
    tokenRequests: 0,
    graphqlRequests: 0,
    unauthorized: 0,
    throttled: 0,
    serverErrors: 0,
    bulkOperations: 0,
    downloads: 0,
    webhooks: { sent: 0, failed: 0 },
  };
  const buckets = new Map<string, Bucket>();
  const operations = new Map<string, BulkOperation>();
  const currentByShop = new Map<string, BulkOperation>();
  const files = new Map<string, { op: BulkOperation; lines: number }>();
  const timers = new Set<NodeJS.Timeout>();
  const shutdown = new AbortController();
  let nextOperation = 1;
  let closing: Promise<void> | undefined;

  /** Takes one of the injected failures of `name`, if any is left. */
  function take(name: 'tokenErrors' | 'graphqlErrors' | 'graphqlThrottled' | 'bulkFailures' | 'downloadFailures'): boolean {
    if (faults[name] <= 0) return false;
    faults[name]--;
    return true;
  }

  function later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  }

  function serverError(reply: FastifyReply): FastifyReply {
    stats.serverErrors++;
    return reply.status(faults.serverErrorStatus).send({ errors: 'Internal error. Looks like something went wrong on our end.' });
  }

  // ── throttling ────────────────────────────────────────────────────────────────────────────────────────────────
  function bucketOf(shop: string, now: number): Bucket {
    const bucket = buckets.get(shop) ?? { available: throttle.maximumAvailable, at: now };
    bucket.available = Math.min(throttle.maximumAvailable, bucket.available + ((now - bucket.at) / 1000) * throttle.restoreRate);
    bucket.at = now;
    buckets.set(shop, bucket);
    return bucket;
  }

  const throttleStatus = (bucket: Bucket) => ({
    maximumAvailable: throttle.maximumAvailable,
    currentlyAvailable: Math.floor(bucket.available),
    restoreRate: throttle.restoreRate,
  });

  // ── bulk operations ───────────────────────────────────────────────────────────────────────────────────────────
  function bulkView(op: BulkOperation) {
    return {
      __typename: 'BulkOperation',
      id: op.id,
      status: op.status,
      errorCode: op.errorCode,
      createdAt: op.createdAt,
      completedAt: op.completedAt,
      objectCount: op.objectCount,
      rootObjectCount: op.objectCount,
      fileSize: null,
      query: op.query,
      type: 'QUERY',
      url: op.resultKey === null ? null : `${op.base}/__sandbox/bulk/${op.resultKey}.jsonl`,
      partialDataUrl: op.partialKey === null ? null : `${op.base}/__sandbox/bulk/${op.partialKey}.jsonl`,
    };
  }

  function finish(op: BulkOperation, status: 'COMPLETED' | 'FAILED' | 'CANCELED'): void {
    op.status = status;
    op.completedAt = status === 'COMPLETED' ? new Date() : null;
    const selected = countMatching(total, op.plan.search);
    if (status === 'COMPLETED') {
      op.objectCount = selected;
      op.resultKey = randomBytes(16).toString('hex');
      files.set(op.resultKey, { op, lines: selected });
    } else if (status === 'FAILED') {
      op.errorCode = faults.bulkErrorCode;
      op.objectCount = Math.floor(selected / 2);
      if (op.objectCount > 0) {
        op.partialKey = randomBytes(16).toString('hex');
        files.set(op.partialKey, { op, lines: op.objectCount });
      }
    }
    void sendFinishWebhook(op);
  }

  function startBulk(shop: string, query: string, base: string) {
    const payload = (userErrors: { field: string[]; message: string; code: string }[]) => ({ bulkOperation: null, userErrors });
    const running = currentByShop.get(shop);
    if (running !== undefined && (running.status === 'CREATED' || running.status === 'RUNNING' || running.status === 'CANCELING')) {
      return payload([{ field: ['query'], message: `A bulk query operation for this app and shop is already in progress: ${running.id}.`, code: 'OPERATION_IN_PROGRESS' }]);
    }
    let document: DocumentNode;
    try {
      document = parse(query);
    } catch (err) {
      return payload([{ field: ['query'], message: `Invalid bulk query: ${(err as Error).message}`, code: 'INVALID' }]);
    }
    const errors = validate(schema, document);
    if (errors.length > 0) return payload([{ field: ['query'], message: `Invalid bulk query: ${errors[0]!.message}`, code: 'INVALID' }]);
    const plan = planBulkQuery(document);
    if (typeof plan === 'string') return payload([{ field: ['query'], message: plan, code: 'INVALID' }]);
    const op: BulkOperation = {
      id: `gid://shopify/BulkOperation/${nextOperation++}`,
      shop,
      query,
      plan,
      status: 'CREATED',
      errorCode: null,
      createdAt: new Date(),
      completedAt: null,
      objectCount: 0,
      resultKey: null,
      partialKey: null,
      base,
    };
    operations.set(op.id, op);
    currentByShop.set(shop, op);
    stats.bulkOperations++;
    const fail = take('bulkFailures');
    later(Math.floor(bulkDelayMs / 2), () => {
      if (op.status !== 'CREATED') return;
      op.status = 'RUNNING';
      op.objectCount = Math.floor(countMatching(total, op.plan.search) / 2);
      later(bulkDelayMs - Math.floor(bulkDelayMs / 2), () => {
        if (op.status === 'RUNNING') finish(op, fail ? 'FAILED' : 'COMPLETED');
      });
    });
    return { bulkOperation: bulkView(op), userErrors: [] };
  }

  function cancelBulk(shop: string, id: string) {
    const op = operations.get(id);
    if (op === undefined || op.shop !== shop) return { bulkOperation: null, userErrors: [{ field: ['id'], message: 'Bulk operation does not exist' }] };
    if (op.status !== 'CREATED' && op.status !== 'RUNNING') {
      return { bulkOperation: bulkView(op), userErrors: [{ field: null, message: `A bulk operation cannot be canceled when it is ${op.status.toLowerCase()}` }] };
    }
    op.status = 'CANCELING';
    later(Math.max(1, Math.floor(bulkDelayMs / 4)), () => finish(op, 'CANCELED'));
    return { bulkOperation: bulkView(op), userErrors: [] };
  }

  /** Posts `bulk_operations/finish` as Shopify does; never throws. */
  async function sendFinishWebhook(op: BulkOperation): Promise<void> {
    const url = webhookUrl;
    if (url === undefined) return;
    const body = JSON.stringify({
      admin_graphql_api_id: op.id,
      completed_at: op.completedAt === null ? null : iso(op.completedAt),
      created_at: iso(op.createdAt),
      error_code: op.errorCode === null ? null : op.errorCode.toLowerCase(),
      status: op.status.toLowerCase(),
      type: 'query',
    });
    const headers = {
      'content-type': 'application/json',
      'x-shopify-topic': 'bulk_operations/finish',
      'x-shopify-hmac-sha256': createHmac('sha256', secret).update(body).digest('base64'),
      'x-shopify-shop-domain': op.shop,
      'x-shopify-api-version': ADMIN_API_VERSION,
      'x-shopify-webhook-id': randomUUID(),
      'x-shopify-event-id': randomUUID(),
      'x-shopify-triggered-at': new Date().toISOString(),
    };
    for (let attempt = 1; attempt <= WEBHOOK_ATTEMPTS && !shutdown.signal.aborted; attempt++) {
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.any([shutdown.signal, AbortSignal.timeout(WEBHOOK_TIMEOUT_MS)]),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          stats.webhooks.sent++;
          return;
        }
      } catch {
        // Down, slow or closing: retried below like any non-2xx answer.
      }
      if (attempt < WEBHOOK_ATTEMPTS) {
        // Rejects when the sandbox closes, which ends the retries.
        const waited = await sleep(200 * 5 ** (attempt - 1), true, { signal: shutdown.signal }).catch(() => false);
        if (!waited) return;
      }
    }
    stats.webhooks.failed++;
  }

  // ── GraphQL root ──────────────────────────────────────────────────────────────────────────────────────────────
  function nodeById(shop: string, id: string): Record<string, unknown> | null {
    const op = operations.get(id);
    if (op !== undefined) return op.shop === shop ? bulkView(op) : null;
    const customer = /^gid:\/\/shopify\/Customer\/(\d+)$/.exec(id);
    if (customer !== null) {
      const n = Number(customer[1]);
      return n >= 1 && n <= total ? { ...customerAt(n, currencyCode), __typename: 'Customer' } : null;
    }
    return null;
  }

  /** `customers(first:, after:, query:)`, forward pages only (what the sync would use). */
  function customersPage(args: { first?: number | null; after?: string | null; last?: number | null; query?: string | null }) {
    if ((args.first ?? null) === null && (args.last ?? null) === null) {
      throw new GraphQLError('you must provide one of first or last', { extensions: { code: 'BAD_REQUEST' } });
    }
    if (args.first === undefined || args.first === null) throw new GraphQLError('the sandbox pages customers forward only: use first (and after)');
    const search = parseCustomerSearch(args.query);
    if (search === null) throw new GraphQLError(`the sandbox supports only "phone:*" as a customers search query, not "${args.query}"`);
    const size = Math.min(250, Math.max(0, args.first));
    const after = args.after ? Number(Buffer.from(args.after, 'base64url').toString()) || 0 : 0;
    const cursor = (n: number) => Buffer.from(String(n)).toString('base64url');
    const edges = [];
    let n = after + 1;
    for (; n <= total && edges.length < size; n++) {
      if (matches(n, search)) edges.push({ cursor: cursor(n), node: { ...customerAt(n, currencyCode), __typename: 'Customer' } });
    }
    while (n <= total && !matches(n, search)) n++;
    return {
      edges,
      nodes: edges.map((e) => e.node),
      pageInfo: {
        hasNextPage: n <= total,
        hasPreviousPage: after > 0,
        startCursor: edges[0]?.cursor ?? null,
        endCursor: edges.at(-1)?.cursor ?? null,
      },
    };
  }

  function rootFor(shop: string, base: string) {
    return {
      shop: () => ({
        __typename: 'Shop',
        id: 'gid://shopify/Shop/1',
        name: shopName(shop),
        email: `owner@${shop}`,
        myshopifyDomain: shop,
        ianaTimezone: timezone,
        timezoneAbbreviation: new Intl.DateTimeFormat('en-US', { timeZone: timezone, timeZoneName: 'short' })
          .formatToParts(new Date())
          .find((p) => p.type === 'timeZoneName')!.value,
        currencyCode,
        plan: { displayName: 'Advanced', publicDisplayName: 'Advanced', partnerDevelopment: false, shopifyPlus: false },
      }),
      customers: customersPage,
      node: ({ id }: { id: string }) => nodeById(shop, id),
      currentBulkOperation: ({ type }: { type: string }) => {
        const op = currentByShop.get(shop);
        return type === 'QUERY' && op !== undefined ? bulkView(op) : null;
      },
      bulkOperationRunQuery: ({ query }: { query: string }) => startBulk(shop, query, base),
      bulkOperationCancel: ({ id }: { id: string }) => cancelBulk(shop, id),
    };
  }

  // ── HTTP ──────────────────────────────────────────────────────────────────────────────────────────────────────
  const app = Fastify({
    ...(logger ? { loggerInstance: logger as FastifyBaseLogger } : { logger: false }),
    return503OnClosing: true,
    forceCloseConnections: true,
    bodyLimit: 1024 * 1024,
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    if (err instanceof AppError) return reply.status(err.statusCode).send(err.toJSON());
    const status = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500;
    return reply.status(status).send({ errors: err.message });
  });

  const baseOf = (host: string | undefined) => `http://${host ?? '127.0.0.1'}`;

  app.post<{ Params: { shop: string } }>('/:shop/admin/oauth/access_token', async (req, reply) => {
    stats.tokenRequests++;
    const shop = req.params.shop.toLowerCase();
    if (!SHOP.test(shop)) return reply.status(404).send({ errors: 'Not Found' });
    if (take('tokenErrors')) return serverError(reply);
    const raw = (req.body ?? {}) as Record<string, unknown>;
    const params: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(raw)) if (typeof v === 'string' || typeof v === 'number') params[k] = String(v);
    const answer = await tokens.handle(shop, params);
    return reply.status(answer.status).send(answer.body);
  });

  app.post<{ Params: { shop: string; version: string } }>('/:shop/admin/api/:version/graphql.json', async (req, reply) => {
    stats.graphqlRequests++;
    const shop = req.params.shop.toLowerCase();
    if (!SHOP.test(shop) || req.params.version !== ADMIN_API_VERSION) return reply.status(404).send({ errors: 'Not Found' });
    const header = req.headers['x-shopify-access-token'];
    const token = Array.isArray(header) ? header[0] : header;
    if (token === undefined || tokens.authenticate(shop, token) === null) {
      stats.unauthorized++;
      return reply.status(401).send({ errors: INVALID_TOKEN });
    }
    if (take('graphqlErrors')) return serverError(reply);
    const body = (req.body ?? {}) as { query?: unknown; variables?: unknown; operationName?: unknown };
    if (typeof body.query !== 'string' || body.query.trim() === '') {
      return reply.status(400).send({ errors: { query: 'Required parameter missing or invalid' } });
    }
    const variables = body.variables !== null && typeof body.variables === 'object' ? (body.variables as Record<string, unknown>) : {};
    let document: DocumentNode;
    try {
      document = parse(body.query);
    } catch (err) {
      return reply.send({ errors: [{ message: (err as GraphQLError).message, locations: (err as GraphQLError).locations }] });
    }
    const invalid = validate(schema, document);
    if (invalid.length > 0) return reply.send({ errors: invalid.map((e) => e.toJSON()) });

    const now = Date.now();
    const bucket = bucketOf(shop, now);
    const requested = requestedQueryCost(schema, document, variables);
    if (requested > SINGLE_QUERY_MAX_COST) {
      return reply.send({
        errors: [{ message: `Query cost is ${requested}, which exceeds the single query max cost limit (${SINGLE_QUERY_MAX_COST}).`, extensions: { code: 'MAX_COST_EXCEEDED', cost: requested, maxCost: SINGLE_QUERY_MAX_COST, documentation: THROTTLE_DOCS } }],
        extensions: { cost: { requestedQueryCost: requested, actualQueryCost: null, throttleStatus: throttleStatus(bucket) } },
      });
    }
    if (take('graphqlThrottled') || requested > bucket.available) {
      stats.throttled++;
      return reply.send({
        errors: [{ message: 'Throttled', extensions: { code: 'THROTTLED', documentation: THROTTLE_DOCS } }],
        extensions: { cost: { requestedQueryCost: requested, actualQueryCost: null, throttleStatus: throttleStatus(bucket) } },
      });
    }
    bucket.available -= requested;
    const result: ExecutionResult = await execute({
      schema,
      document,
      rootValue: rootFor(shop, baseOf(req.headers.host)),
      variableValues: variables,
      operationName: typeof body.operationName === 'string' ? body.operationName : null,
    });
    return reply.send({
      ...(result.errors ? { errors: result.errors.map((e) => e.toJSON()) } : {}),
      ...(result.data !== undefined ? { data: result.data } : {}),
      extensions: { cost: { requestedQueryCost: requested, actualQueryCost: requested, throttleStatus: throttleStatus(bucket) } },
    });
  });

  app.get<{ Params: { file: string } }>('/__sandbox/bulk/:file', async (req, reply) => {
    const file = files.get(req.params.file.replace(/\.jsonl$/, ''));
    if (file === undefined) return reply.status(404).send({ errors: 'Not Found' });
    stats.downloads++;
    const cut = take('downloadFailures');
    const stream = bulkResultStream({
      schema,
      plan: file.op.plan,
      total,
      limit: file.lines,
      currencyCode,
      ...(cut ? { failAfter: Math.floor(file.lines / 2) } : {}),
    });
    return reply.type('application/jsonl').send(stream);
  });

  app.get('/__sandbox/faults', async () => ({ ...faults }));
  app.post('/__sandbox/faults', async (req) => setFaults((req.body ?? {}) as Partial<ShopifyFaults>));
  app.delete('/__sandbox/faults', async () => {
    faults = { ...DEFAULT_FAULTS };
    return { ...faults };
  });
  app.get('/__sandbox/stats', async () => statsNow());

  function setFaults(patch: Partial<ShopifyFaults>): ShopifyFaults {
    const parsed = FaultsInput.safeParse(patch);
    if (!parsed.success) throw new AppError('VALIDATION_FAILED', `faults: ${describeIssues(parsed.error.issues)}`);
    faults = { ...faults, ...parsed.data };
    return { ...faults };
  }

  function statsNow(): ShopifySandboxStats {
    return { ...counts, ianaTimezone: timezone, ...stats, webhooks: { ...stats.webhooks }, tokensIssued: tokens.issued() };
  }

  await app.listen({ port: options.port ?? 0, host: options.host ?? '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new AppError('INTERNAL', 'shopify sandbox is not listening on a TCP port');
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;

  return {
    url,
    app,
    stats: statsNow,
    faults: () => ({ ...faults }),
    setFaults,
    setWebhookUrl: (next) => {
      webhookUrl = next;
    },
    revokeTokens: (shop) => tokens.revoke(shop.toLowerCase()),
    close() {
      closing ??= (async () => {
        shutdown.abort();
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        await app.close();
      })();
      return closing;
    },
  };
}
