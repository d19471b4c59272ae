/**
 * The OpenAPI document (`/docs/json`): valid by swagger-cli's validator (schema and spec), and complete — every route
 * Fastify registered is in it, with an operationId, tags, its security and an error answer in the envelope of
 * src/errors.ts. Left out on purpose, and only these: HEAD routes (Fastify's automatic twins of GET), `/docs` itself
 * and the dashboard's static files.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registeredRoutes } from '../../src/http/routes/docs.js';
import { SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { startTestSystem, type TestSystem } from '../helpers/system.js';

/** swagger-cli's programmatic API (the same check as `swagger-cli validate <file>`). */
const swaggerCli = createRequire(import.meta.url)('@apidevtools/swagger-cli') as {
  validate(file: string, options: { schema: boolean; spec: boolean }): Promise<unknown>;
};

interface Operation {
  operationId?: string;
  tags?: string[];
  security?: Array<Record<string, string[]>>;
  responses: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { securitySchemes: Record<string, unknown>; schemas: Record<string, unknown> };
}

const EXCLUDED = [
  { why: 'the docs themselves', test: (url: string) => url === '/docs' || url.startsWith('/docs/') },
  { why: "the dashboard's static files", test: (url: string) => url.startsWith('/admin/queues/static/') },
];

/** Fastify's `/a/:id` as OpenAPI's `/a/{id}`. */
const openapiPath = (url: string) => url.replace(/:(\w+)/g, '{$1}');

describe('OpenAPI document', () => {
  let sys: TestSystem;
  let doc: Document;
  let file: string;

  beforeAll(async () => {
    sys = await startTestSystem('pglite', { env: { SHOPIFY_API_KEY } });
    const res = await sys.app!.inject({ method: 'GET', url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    doc = res.json();
    file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'openapi-')), 'openapi.json');
    fs.writeFileSync(file, res.body);
  });
  afterAll(async () => {
    await sys?.teardown();
    if (file) fs.rmSync(path.dirname(file), { recursive: true, force: true });
  });

  it('is valid OpenAPI 3.0 by swagger-cli (schema and spec)', async () => {
    expect(doc.openapi).toBe('3.0.3');
    await expect(swaggerCli.validate(file, { schema: true, spec: true })).resolves.toBeTruthy();
  });

  it('has every registered route, except HEAD twins, /docs and static files', () => {
    const routes = registeredRoutes(sys.app!);
    expect(routes.length).toBeGreaterThan(50);
    const missing = routes
      .filter((r) => r.method !== 'HEAD' && !EXCLUDED.some((e) => e.test(r.url)))
      .filter((r) => !doc.paths[openapiPath(r.url)]?.[r.method.toLowerCase()])
      .map((r) => `${r.method} ${r.url}`);
    expect(missing).toEqual([]);
    // Nothing is documented that is not served.
    const served = new Set(routes.map((r) => `${r.method.toLowerCase()} ${openapiPath(r.url)}`));
    const extra = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`)).filter((op) => !served.has(op));
    expect(extra).toEqual([]);
    // Among them, the merchant API in full, and the operator, webhook and health routes.
    for (const [method, p] of [
      ['get', '/api/segments'],
      ['post', '/api/segments/estimate'],
      ['post', '/api/campaigns/{id}/send'],
      ['get', '/api/reports'],
      ['get', '/admin/reports'],
      ['post', '/admin/dlq/purge'],
      ['post', '/webhooks/shopify/{resource}/{event}'],
      ['post', '/webhooks/mitto/dlr'],
      ['get', '/health/ready'],
      ['get', '/metrics'],
    ]) {
      expect(doc.paths[p!]?.[method!], `${method} ${p}`).toBeDefined();
    }
  });

  it('gives every operation a unique operationId, tags, security and 4xx answers in the error envelope', () => {
    const ids = new Map<string, string>();
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method.toUpperCase()} ${p}`;
        expect(op.operationId, where).toMatch(/^[a-z][A-Za-z]+$/);
        expect(ids.get(op.operationId!), `${where}: operationId ${op.operationId} is used twice`).toBeUndefined();
        ids.set(op.operationId!, where);
        expect(op.tags?.length, where).toBeGreaterThan(0);
        expect(op.security, where).toBeDefined();
        const errors = Object.entries(op.responses).filter(([status]) => /^4\d\d$/.test(status));
        expect(errors.length, where).toBeGreaterThan(0);
        expect(op.responses['400']?.content?.['application/json']?.schema?.$ref, where).toBe('#/components/schemas/Error');
      }
    }
    expect(doc.components.schemas).toHaveProperty('Error');
  });

  it('names the security of each kind of route', () => {
    const security = (method: string, p: string) => doc.paths[p]![method]!.security!.flatMap((s) => Object.keys(s));
    expect(security('post', '/api/campaigns')).toEqual(['sessionToken']);
    expect(security('get', '/api/segments/{id}')).toEqual(['sessionToken']);
    expect(security('get', '/api/reports')).toEqual(['sessionToken']);
    expect(security('post', '/admin/dlq/{id}/replay')).toEqual(['adminToken']);
    expect(security('get', '/admin/reports')).toEqual(['adminToken', 'operatorSession']);
    expect(security('post', '/webhooks/shopify')).toEqual(['shopifyHmac']);
    expect(security('post', '/webhooks/mitto/inbound')).toEqual(['callbackToken']);
    expect(security('get', '/health')).toEqual([]);
    expect(doc.components.securitySchemes).toMatchObject({
      sessionToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
      adminToken: { type: 'http', scheme: 'bearer' },
      shopifyHmac: { type: 'apiKey', in: 'header', name: 'X-Shopify-Hmac-Sha256' },
    });
  });
});
