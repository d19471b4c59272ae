/**
 * The OpenAPI document (`/docs/json`) and the interactive docs (`/docs`), and the one way admin routes declare their
 * input: a zod schema per request part. The same zod schema validates the request (with messages naming the field,
 * as AppError VALIDATION_FAILED) and, converted to JSON Schema, documents it; they cannot drift apart.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema, FastifySchemaCompiler } from 'fastify';
import { z } from 'zod';
import { AppError, describeIssues } from '../../errors.js';
import type { AppDeps } from '../app.js';

const zodOf = new WeakMap<object, z.ZodType>();

function jsonSchemaOf(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _drop, ...json } = z.toJSONSchema(schema, { target: 'draft-7', io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  zodOf.set(json, schema);
  return json;
}

export interface RouteDoc {
  summary: string;
  tags: string[];
  /** `merchant` (Shopify session token), `operator` (ADMIN_TOKEN), or none. */
  auth?: 'merchant' | 'operator';
  params?: z.ZodType;
  querystring?: z.ZodType;
  body?: z.ZodType;
  /** Documented request body content types other than JSON (the body is then not validated by a schema). */
  consumes?: string[];
  description?: string;
}

/** Route options for a documented, validated route. Pair with {@link useZodValidation} on the route's scope. */
export function routeSchema(doc: RouteDoc): { schema: FastifySchema } {
  const schema: FastifySchema & Record<string, unknown> = { summary: doc.summary, tags: doc.tags };
  if (doc.description) schema.description = doc.description;
  if (doc.auth) schema.security = [{ [doc.auth === 'merchant' ? 'sessionToken' : 'adminToken']: [] }];
  if (doc.params) schema.params = jsonSchemaOf(doc.params);
  if (doc.querystring) schema.querystring = jsonSchemaOf(doc.querystring);
  if (doc.body) schema.body = jsonSchemaOf(doc.body);
  if (doc.consumes) schema.consumes = doc.consumes;
  return { schema };
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

/**
 * Registers the OpenAPI generator and the UI. Must run on the root instance before any route is added: the generator
 * collects routes as they are registered.
 */
export async function registerDocs(app: FastifyInstance, _deps: AppDeps): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'SMS Blossom API',
        version: '1',
        description:
          'Merchant endpoints (`/api/*`) take a Shopify session token: `Authorization: Bearer <App Bridge session token>`; ' +
          'they only ever see the token\'s shop. Operator endpoints (`/admin/*`) take `Authorization: Bearer <ADMIN_TOKEN>`. ' +
          'Errors are `{"error": {"code", "message"}, "requestId"}`; over the rate limit the answer is 429 with `Retry-After`.',
      },
      tags: [
        { name: 'settings', description: 'Shop settings' },
        { name: 'automations', description: 'Automations, template preview, simulation' },
        { name: 'contacts', description: 'Contacts, consent, CSV import' },
        { name: 'messages', description: 'Messages' },
        { name: 'operator', description: 'Operator endpoints (ADMIN_TOKEN)' },
      ],
      components: {
        securitySchemes: {
          sessionToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Shopify session token' },
          adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' },
        },
      },
    },
    // The dashboard's own asset and API routes are Bull Board's, not ours to document.
    hideUntagged: true,
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
}
