/**
 * Callbacks from the SMS provider: delivery reports (`GET|POST /webhooks/mitto/dlr`) and inbound messages
 * (`POST /webhooks/mitto/inbound`). Both require the secret token in the URL (`?token=`, from DLR_TOKEN), and an
 * HMAC-SHA256 of the raw body in `X-Signature` when DLR_HMAC_SECRET is set.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../../errors.js';
import { parseDeliveryReport } from '../../messages/dlr.js';
import { parseInbound } from '../../messages/inbound.js';
import { createReportBatcher } from '../../messages/reportBatcher.js';
import { handleInbound } from '../../messages/replies.js';
import type { AppDeps } from '../app.js';
import type { Config } from '../../config.js';
import { routeSchema, type RouteDoc } from './docs.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * The secret token travels in the query string, and Fastify logs each request's URL ("incoming request"): these routes
 * log the path only, and the request's query parameter names.
 */
const routeOptions = {
  logSerializers: {
    req: (req: FastifyRequest) => {
      const [path, query] = req.url.split('?', 2);
      return {
        method: req.method,
        url: path,
        ...(query ? { query: [...new URLSearchParams(query).keys()].join(',') } : {}),
        host: req.host,
        remoteAddress: req.ip,
      };
    },
  },
};

/**
 * The log level of delivery-report requests: one arrives for every message sent, so their request lines and the
 * report's own line are debug lines — shown when LOG_LEVEL is `debug` or `trace`, else only their warnings and errors
 * (a report for no known message, a refused token). The report itself is kept on the message row.
 */
export function deliveryReportLogLevel(configured: Config['logLevel']): Config['logLevel'] {
  const order: Array<Config['logLevel']> = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
  return order.indexOf(configured) < order.indexOf('info') ? configured : order[Math.max(order.indexOf(configured), order.indexOf('warn'))]!;
}

export async function registerMittoRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const { sms } = deps.config;
  const dlrLogLevel = deliveryReportLogLevel(deps.config.logLevel);
  const reports = createReportBatcher(deps.db.db, 'mitto');
  const expectedToken = digest(sms.dlrToken);

  // Raw bytes for the optional HMAC; JSON and form bodies are parsed here, after the check.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 64 * 1024 }, (_req, body, done) => done(null, body));

  const authenticate = (req: FastifyRequest): Record<string, unknown> => {
    const query = (req.query ?? {}) as Record<string, unknown>;
    const token = typeof query.token === 'string' ? query.token : '';
    if (!token || !timingSafeEqual(digest(token), expectedToken)) throw new AppError('UNAUTHORIZED', 'token: missing or wrong');
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    if (sms.dlrHmacSecret) {
      const given = Buffer.from(String(req.headers['x-signature'] ?? ''), 'hex');
      const expected = createHmac('sha256', sms.dlrHmacSecret).update(raw).digest();
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new AppError('INVALID_SIGNATURE', 'X-Signature does not match the request body');
      }
    }
    let body: Record<string, unknown> = {};
    if (raw.length) {
      const text = raw.toString('utf8');
      const type = String(req.headers['content-type'] ?? '');
      if (type.includes('application/x-www-form-urlencoded')) body = Object.fromEntries(new URLSearchParams(text));
      else {
        try {
          const parsed: unknown = JSON.parse(text);
          if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
          else throw new Error('not an object');
        } catch (err) {
          throw new AppError('INVALID_JSON', `request body is not a JSON object: ${(err as Error).message}`);
        }
      }
    }
    const { token: _t, ...rest } = query;
    return { ...rest, ...body };
  };

  const dlr = async (req: FastifyRequest) => {
    const input = authenticate(req);
    // Our callback URL carries the message id as `ref`: a report that omits the reference still finds its message.
    const report = parseDeliveryReport({ reference: input.ref, ...input });
    const result = await reports.apply({
      providerMessageId: report.providerMessageId,
      reference: report.reference,
      status: report.status,
      errorCode: report.errorCode,
      at: report.occurredAt ?? new Date(),
    });
    if (!result) {
      req.log.warn({ providerMessageId: report.providerMessageId, reference: report.reference }, 'Delivery report for an unknown message');
      throw new AppError('NOT_FOUND', 'no message matches this delivery report');
    }
    req.log.info({ messageId: result.message.id, status: result.message.status, changed: result.changed, reported: report.status }, 'Delivery report');
    return { ok: true, messageId: result.message.id, status: result.message.status, changed: result.changed };
  };
  /** Route options of a callback; a GET carries its fields in the query string only. */
  const callback = (d: Pick<RouteDoc, 'operationId' | 'summary' | 'errors'>, method: 'GET' | 'POST') => ({
    ...routeOptions,
    ...routeSchema({
      ...d,
      tags: ['webhooks'],
      auth: 'providerCallback',
      description: method === 'GET' ? 'Fields in the query string.' : 'Fields from the query string and the body (JSON or form-encoded); the body wins.',
      ...(method === 'POST' ? { rawBody: { contentTypes: ['application/json', 'application/x-www-form-urlencoded'], description: "The provider's fields" } } : {}),
    }),
  });
  const dlrDoc = { summary: "A delivery report: the message's status (delivered, failed…), by provider id or our reference", errors: [404] };
  app.get('/webhooks/mitto/dlr', { ...callback({ ...dlrDoc, operationId: 'deliveryReportByQuery' }, 'GET'), logLevel: dlrLogLevel }, dlr);
  app.post('/webhooks/mitto/dlr', { ...callback({ ...dlrDoc, operationId: 'deliveryReport' }, 'POST'), logLevel: dlrLogLevel }, dlr);

  app.post('/webhooks/mitto/inbound', callback({ operationId: 'inboundMessage', summary: 'An inbound SMS: STOP, START, HELP and other replies' }, 'POST'), async (req) => {
    const msg = parseInbound(authenticate(req));
    const outcome = await handleInbound(msg, { db: deps.db.db, queues: deps.queues, logger: req.log as never, sms }, req.id);
    return { ok: true, ...outcome };
  });
}
