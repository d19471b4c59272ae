/**
 * Errors go through the catalog (src/errors.ts): every error body the HTTP app writes carries a code defined there,
 * including Fastify's own refusals; a permanent failure is recognised in one place whatever raised it.
 */
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError, ErrorCodes, isPermanentFailure } from '../../src/errors.js';
import { ProviderError } from '../../src/messages/providers/types.js';
import { ADMIN_TOKEN, startTestSystem, type TestSystem } from '../helpers/system.js';

describe('error bodies come from the catalog', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem('pglite');
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const cases: Array<{ what: string; req: InjectOptions; status: number; code: string }> = [
    {
      what: 'a body of a media type no route takes',
      req: { method: 'POST', url: '/admin/dlq/purge', headers: { ...admin, 'content-type': 'application/xml' }, payload: '<all/>' },
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      what: 'malformed JSON',
      req: { method: 'POST', url: '/admin/dlq/purge', headers: { ...admin, 'content-type': 'application/json' }, payload: '{"all": tru' },
      status: 400,
      code: 'INVALID_JSON',
    },
    {
      what: 'an empty JSON body',
      req: { method: 'POST', url: '/admin/dlq/purge', headers: { ...admin, 'content-type': 'application/json' }, payload: '' },
      status: 400,
      code: 'INVALID_JSON',
    },
    { what: 'an unknown route', req: { method: 'GET', url: '/no/such/route?x=1', headers: admin }, status: 404, code: 'NOT_FOUND' },
  ];

  for (const c of cases) {
    it(`${c.what}: ${c.status} ${c.code}, a code of the catalog, with the request id`, async () => {
      const res = await sys.app!.inject(c.req);
      expect(res.statusCode, res.body).toBe(c.status);
      const body = res.json() as { error: { code: string; message: string }; requestId: string };
      expect(body.error.code).toBe(c.code);
      expect(Object.keys(ErrorCodes)).toContain(body.error.code);
      expect(ErrorCodes[body.error.code as keyof typeof ErrorCodes].status).toBe(c.status);
      expect(body.error.message).not.toBe('');
      expect(body.requestId).toBe(res.headers['x-request-id']);
    });
  }
});

describe('isPermanentFailure: the one test of "retrying cannot help"', () => {
  it('is true for a permanent catalog error, a provider refusal and a value the database refused', () => {
    expect(isPermanentFailure(new AppError('VALIDATION_FAILED', 'campaignId: expected number'))).toBe(true);
    expect(isPermanentFailure(new ProviderError('permanent', 'MITTO_INVALID_RECEIVER', 'invalid receiver', { providerCode: 8 }))).toBe(true);
    expect(isPermanentFailure(Object.assign(new Error('value out of range'), { code: '22003', severity: 'ERROR' }))).toBe(true);
  });

  it('is false for what may pass: a transient catalog error, any other provider failure, a lost connection', () => {
    expect(isPermanentFailure(new AppError('DATABASE_UNAVAILABLE', 'connection refused'))).toBe(false);
    for (const kind of ['transient', 'rate_limited', 'ambiguous'] as const) {
      expect(isPermanentFailure(new ProviderError(kind, 'HTTP_503', 'unavailable'))).toBe(false);
    }
    expect(isPermanentFailure(Object.assign(new Error('terminating connection'), { code: '57P01', severity: 'FATAL' }))).toBe(false);
    expect(isPermanentFailure(new Error('ECONNRESET'))).toBe(false);
  });
});
