/**
 * The OpenAPI document (`/docs/json`) and the interactive docs (`/docs`), and the one way routes declare their input
 * and their documentation: {@link routeSchema}. The same zod schema validates the request (with messages naming the
 * field, as AppError VALIDATION_FAILED) and, converted to OpenAPI 3.0 schema, documents it; they cannot drift apart.
 *
 * Every route is in the document, each with an operationId, tags, its security and its error answers (the envelope of
 * src/errors.ts), except `/docs` itself and the dashboard's static files (`/admin/queues/static/*`). Bull Board's own
 * routes under `/admin/queues` are documented from their path (they are its UI's, not a stable interface).
 * test/integration/openapi.test.ts validates the document and compares it with the route table.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema, FastifySchemaCompiler, RouteOptions } from 'fastify';
import { z } from 'zod';
import { AppError, describeIssues } from '../../errors.js';
import { OPERATOR_COOKIE } from '../auth.js';

/** Who may call a route, as the document says (the route's own hook enforces it). */
export type RouteAuth =
  /** A Shopify session token (`Authorization: Bearer <App Bridge token>`); the shop is the token's. */
  | 'merchant'
  /** `Authorization: Bearer <ADMIN_TOKEN>`; the dashboard's session cookie too, on GET. */
  | 'operator'
  /** The queue dashboard: ADMIN_TOKEN or the session cookie, on every method. */
  | 'dashboard'
  /** Shopify's `X-Shopify-Hmac-Sha256` over the raw body. */
  | 'shopifyWebhook'
  /** The SMS provider's callbacks: `?token=<DLR_TOKEN>`, and `X-Signature` when DLR_HMAC_SECRET is set. */
  | 'providerCallback'
  /** METRICS_TOKEN (or ADMIN_TOKEN) when METRICS_TOKEN is set; open otherwise. */
  | 'metrics'
  /** Anyone (health probes, the login form). */
  | 'public';

export const TAGS = [
  { name: 'settings', description: 'Shop settings (session token)' },
  { name: 'automations', description: 'Automations, template preview, simulation (session token)' },
  { name: 'contacts', description: 'Contacts, consent, CSV import (session token)' },
  { name: 'messages', description: 'Messages (session token)' },
  { name: 'segments', description: 'Segments: saved audience filters, previews, estimates (session token)' },
  { name: 'campaigns', description: 'Campaigns: create, estimate, test-send, send, schedule, pause, resume, cancel (session token)' },
  { name: 'reports', description: 'Daily report rollups' },
  { name: 'webhooks', description: "Shopify's webhooks and the SMS provider's callbacks" },
  { name: 'health', description: 'Health probes and queue health' },
  { name: 'operator', description: 'Operator endpoints (ADMIN_TOKEN)' },
  { name: 'dashboard', description: "The queue dashboard (Bull Board) and its login; Bull Board's routes are its UI's, not a stable interface" },
] as const;
export type Tag = (typeof TAGS)[number]['name'];

/** What a route's documentation says beyond its input. */
interface OperationDoc {
  auth: RouteAuth;
  /** Answers other than errors, by status: a description, and the content type when it is not JSON. */
  answers: Record<number, string | { description: string; contentType: string }>;
  /** Error statuses beyond those its auth and rate limit give (e.g. 404, 409, 422). */
  errors: number[];
  rawBody?: RouteDoc['rawBody'];
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Set by {@link routeSchema}; read when the OpenAPI document is built. */
    openapi?: OperationDoc;
  }
}

const zodOf = new WeakMap<object, z.ZodType>();

function jsonSchemaOf(schema: z.ZodType): Record<string, unknown> {
  // OpenAPI 3.0's dialect: `nullable`, boolean `exclusiveMinimum`, no `propertyNames` (draft-7's are invalid in 3.0.3).
  const json = z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  zodOf.set(json, schema);
  return json;
}

export interface RouteDoc {
  /** Unique across the document: what a generated client names the call. */
  operationId: string;
  summary: string;
  tags: Tag[];
  auth: RouteAuth;
  params?: z.ZodType;
  querystring?: z.ZodType;
  body?: z.ZodType;
  /** A body the route reads itself (not validated by a schema here): its content types and what it is. */
  rawBody?: { contentTypes: string[]; description: string };
  description?: string;
  /** Answers other than errors, by status; default `{ 200: 'OK' }`. */
  answers?: OperationDoc['answers'];
  /** Error statuses beyond 400, those of its auth, and 429 where rate limited: e.g. 404, 409, 422. */
  errors?: number[];
}

/**
 * Route options for a documented route: its schema (validated by zod; pair with {@link useZodValidation} on the
 * route's scope when it has params, querystring or body) and its documentation.
 */
export function routeSchema(doc: RouteDoc): { schema: FastifySchema; config: { openapi: OperationDoc } } {
  const schema: FastifySchema & Record<string, unknown> = { operationId: doc.operationId, summary: doc.summary, tags: doc.tags };
  if (doc.description) schema.description = doc.description;
  if (doc.params) schema.params = jsonSchemaOf(doc.params);
  if (doc.querystring) schema.querystring = jsonSchemaOf(doc.querystring);
  if (doc.body) schema.body = jsonSchemaOf(doc.body);
  return { schema, config: { openapi: { auth: doc.auth, answers: doc.answers ?? { 200: 'OK' }, errors: doc.errors ?? [], rawBody: doc.rawBody } } };
}

/** Validates with the zod schema a JSON schema was made from; its output (coerced, defaulted) replaces the input. */
const zodValidatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) => {
  const zod = zodOf.get(schema as object);
  if (!zod) throw new Error(`route schema for ${httpPart ?? 'a request part'} was not made by routeSchema()`);
  return (data: unknown) => {
    const r = zod.safeParse(data ?? (httpPart === 'body' ? undefined : {}));
    if (r.success) return { value: r.data };
    return { error: new AppError('VALIDATION_FAILED', `${httpPart ?? 'request'}: ${describeIssues(r.error.issues)}`) };
  };
};

export function useZodValidation(scope: FastifyInstance): void {
  scope.setValidatorCompiler(zodValidatorCompiler);
}

const ERROR_SCHEMA = '#/components/schemas/Error';

type Requirement = Record<string, string[]>;
const scheme = (name: string): Requirement => ({ [name]: [] });

const SECURITY: Record<RouteAuth, (method: string) => Requirement[]> = {
  merchant: () => [scheme('sessionToken')],
  // The cookie is accepted on GET only, except on the dashboard (see ../auth.ts).
  operator: (method) => (method === 'GET' ? [scheme('adminToken'), scheme('operatorSession')] : [scheme('adminToken')]),
  dashboard: () => [scheme('adminToken'), scheme('operatorSession')],
  shopifyWebhook: () => [scheme('shopifyHmac')],
  providerCallback: () => [scheme('callbackToken')],
  // `{}`: open when METRICS_TOKEN is unset.
  metrics: () => [scheme('metricsToken'), scheme('adminToken'), {}],
  public: () => [],
};

/** Error answers by auth: the statuses its check can give, with what they mean. */
const AUTH_ERRORS: Record<RouteAuth, Record<number, string>> = {
  merchant: {
    401: 'UNAUTHORIZED: no session token, or one that does not verify (signature, aud, exp/nbf with 10 s of leeway, dest)',
    403: 'MERCHANT_API_DISABLED: SHOPIFY_API_KEY is not set',
  },
  operator: {
    401: 'UNAUTHORIZED: no operator token, or a wrong one',
    403: 'OPERATOR_DISABLED: ADMIN_TOKEN is not set',
  },
  dashboard: {
    401: 'UNAUTHORIZED: no operator token or session (a browser asking for HTML is sent to /admin/login instead)',
    403: 'OPERATOR_DISABLED: ADMIN_TOKEN is not set',
  },
  shopifyWebhook: {
    401: 'INVALID_SIGNATURE: X-Shopify-Hmac-Sha256 does not match the body; SHOP_DOMAIN_MISMATCH: the body names another shop',
    413: 'PAYLOAD_TOO_LARGE',
  },
  providerCallback: {
    401: 'UNAUTHORIZED: token missing or wrong; INVALID_SIGNATURE: X-Signature does not match the body',
    413: 'PAYLOAD_TOO_LARGE',
  },
  metrics: { 401: 'UNAUTHORIZED: METRICS_TOKEN is set and the request does not carry it (or ADMIN_TOKEN)' },
  public: {},
};

const ERROR_MEANINGS: Record<number, string> = {
  400: 'Bad input; the message names the field (VALIDATION_FAILED, or a more specific code such as SEGMENT_INVALID)',
  404: 'NOT_FOUND: no such row (for a merchant: none in the token\'s shop; another shop\'s row is not found either)',
  409: 'A conflict with the current state (CAMPAIGN_STATE_CONFLICT, CONSENT_LOCKED, SENDER_TAKEN)',
  413: 'PAYLOAD_TOO_LARGE',
  422: 'TEMPLATE_RENDER_FAILED: the template parsed but could not be rendered within its limits',
  429: 'RATE_LIMITED; Retry-After says when to try again',
  503: 'Unavailable (REDIS_UNAVAILABLE, DATABASE_UNAVAILABLE, SHUTTING_DOWN); retry',
};

function errorAnswer(description: string) {
  return { description, content: { 'application/json': { schema: { $ref: ERROR_SCHEMA } } } };
}

/** A name for an operation from its method and path: `GET /admin/queues/api/queues/:queueName` → `getApiQueuesByQueueName`. */
function operationIdFromPath(method: string, path: string): string {
  const words = path
    .split('/')
    .filter(Boolean)
    .flatMap((seg) => seg.split(/[-_.]/))
    .map((w) => (w.startsWith(':') ? `By${w.slice(1, 2).toUpperCase()}${w.slice(2)}` : `${w.slice(0, 1).toUpperCase()}${w.slice(1)}`));
  return `${method.toLowerCase()}${words.join('')}`;
}

export interface DocsOptions {
  /** The path the queue dashboard is mounted at: its routes (Bull Board's) are documented from their paths. */
  dashboardPath: string;
  /** Whether the general rate limit applies to a route (it adds a 429 answer). */
  rateLimited: (url: string) => boolean;
}

/** The route table, in registration order, as `{ method, url }` (HEAD included): what the document must cover. */
const routeTables = new WeakMap<FastifyInstance, Array<{ method: string; url: string }>>();

export function registeredRoutes(app: FastifyInstance): ReadonlyArray<{ method: string; url: string }> {
  return routeTables.get(app) ?? [];
}

/**
 * Registers the OpenAPI generator and the UI. Must run on the root instance before any route is added: the generator
 * collects routes as they are registered.
 */
export async function registerDocs(app: FastifyInstance, options: DocsOptions): Promise<void> {
  const table: Array<{ method: string; url: string }> = [];
  routeTables.set(app, table);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) table.push({ method, url: route.url });
  });

  const isDocs = (url: string) => url === '/docs' || url.startsWith('/docs/');
  const isDashboardAsset = (url: string) => url.startsWith(`${options.dashboardPath}/static/`);

  /** The document's view of one route: its security, answers and errors added; Bull Board's described from its path. */
  const transform = ({ schema, url: given, route }: { schema: FastifySchema; url: string; route: RouteOptions }) => {
    // A prefixed plugin's `/` is served as `/p` and `/p/`; Fastify announces `/p` and leaves the options it shares
    // with `/p/` at the latter. The document names the announced one.
    const url = given.length > 1 && given.endsWith('/') ? given.slice(0, -1) : given;
    // The document does not describe itself; static files are not an API.
    if (isDocs(url) || isDashboardAsset(url)) return { schema: { ...schema, hide: true }, url };
    const method = [route.method].flat()[0]!;
    let doc = route.config?.openapi;
    let out: FastifySchema & Record<string, unknown> = { ...schema };
    if (!doc && url.startsWith(options.dashboardPath)) {
      const sub = url.slice(options.dashboardPath.length);
      doc = { auth: 'dashboard', answers: { 200: sub.startsWith('/api/') ? 'OK' : { description: 'The dashboard page', contentType: 'text/html' } }, errors: [] };
      out = {
        operationId: sub ? `dashboard${operationIdFromPath(method, sub).replace(/^./, (c) => c.toUpperCase())}` : 'dashboard',
        summary: `Bull Board: ${method} ${sub || '/'}`,
        description: "Served by Bull Board for the dashboard's own UI; not a stable interface.",
        tags: ['dashboard'],
      };
    }
    if (!doc) return { schema, url: given };

    const responses: Record<string, unknown> = {};
    for (const [status, answer] of Object.entries(doc.answers)) {
      const { description, contentType } = typeof answer === 'string' ? { description: answer, contentType: 'application/json' } : answer;
      // No body: `type: 'null'` is how @fastify/swagger is told to document none.
      responses[status] = Number(status) === 204 || Number(status) === 303 ? { type: 'null', description } : { description, content: { [contentType]: { schema: {} } } };
    }
    const errors: Record<number, string> = { 400: ERROR_MEANINGS[400]!, ...AUTH_ERRORS[doc.auth] };
    for (const status of doc.errors) errors[status] ??= ERROR_MEANINGS[status] ?? 'Error';
    if (options.rateLimited(url)) errors[429] = ERROR_MEANINGS[429]!;
    // An answer the route documents itself (an HTML page for a refused login) stands.
    for (const [status, description] of Object.entries(errors)) responses[status] ??= errorAnswer(description);

    out.security = SECURITY[doc.auth](method);
    out.response = responses;
    if (doc.rawBody && !out.body) {
      out.body = { type: 'string', description: doc.rawBody.description };
      out.consumes = doc.rawBody.contentTypes;
    }
    return { schema: out, url };
  };

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'SMS Blossom API',
        version: '1',
        license: { name: 'Proprietary (UNLICENSED)' },
        description:
          'Merchant endpoints (`/api/*`) take a Shopify session token: `Authorization: Bearer <App Bridge session token>`; ' +
          "they only ever see the token's shop (another shop's row answers 404, like one that does not exist). " +
          'Operator endpoints (`/admin/*`) take `Authorization: Bearer <ADMIN_TOKEN>`. Shopify webhooks are verified by ' +
          '`X-Shopify-Hmac-Sha256`. Errors are `{"error": {"code", "message"}, "requestId"}`; over the rate limit the ' +
          'answer is 429 with `Retry-After`.',
      },
      // Relative: the document describes the service that serves it, wherever it is deployed.
      servers: [{ url: '/', description: 'This service' }],
      tags: TAGS.map((t) => ({ ...t })),
      components: {
        securitySchemes: {
          sessionToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Shopify session token (App Bridge `getSessionToken()`), HS256 with the app secret' },
          adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' },
          operatorSession: { type: 'apiKey', in: 'cookie', name: OPERATOR_COOKIE, description: 'The session cookie `POST /admin/login` sets' },
          shopifyHmac: {
            type: 'apiKey',
            in: 'header',
            name: 'X-Shopify-Hmac-Sha256',
            description: 'Base64 HMAC-SHA256 of the raw body, keyed with SHOPIFY_API_SECRET (Shopify signs every webhook so)',
          },
          callbackToken: {
            type: 'apiKey',
            in: 'query',
            name: 'token',
            description: 'DLR_TOKEN, in the callback URL the provider was given; with DLR_HMAC_SECRET set, also `X-Signature`: hex HMAC-SHA256 of the raw body',
          },
          metricsToken: { type: 'http', scheme: 'bearer', description: 'METRICS_TOKEN' },
        },
        schemas: {
          Error: {
            type: 'object',
            required: ['error', 'requestId'],
            properties: {
              error: {
                type: 'object',
                required: ['code', 'message'],
                properties: {
                  code: { type: 'string', description: 'A stable code (src/errors.ts), e.g. VALIDATION_FAILED, UNAUTHORIZED, NOT_FOUND, RATE_LIMITED' },
                  message: { type: 'string', description: 'What is wrong, naming the field' },
                  details: { type: 'object', additionalProperties: true },
                },
              },
              requestId: { type: 'string', description: 'The X-Request-Id of the request' },
            },
          },
        },
      },
    },
    transform,
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
}
