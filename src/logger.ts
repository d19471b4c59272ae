/**
 * Structured JSON logs (pino). Phone numbers, message bodies, payloads and secrets never reach a log line: callers log
 * ids only, and the redaction list below is the safety net for anything passed by mistake.
 */
import { pino, type Logger } from 'pino';
import { safeErrorMessage, safeErrorStack } from './errors.js';

export type { Logger };

const REDACT = [
  'phone',
  '*.phone',
  'to',
  '*.to',
  'text',
  '*.text',
  'body',
  '*.body',
  'raw',
  '*.raw',
  'email',
  '*.email',
  'data.raw',
  'data.context',
  'req.headers.authorization',
  'req.headers["x-shopify-hmac-sha256"]',
  'req.headers["x-mitto-api-key"]',
  'headers.authorization',
  'secret',
  'token',
  'apiKey',
];

/** What a request looks like to the log serializer (Fastify's request, with the route it matched if any). */
interface LoggedRequest {
  method?: string;
  url?: string;
  ip?: string;
  routeOptions?: { url?: string };
}

/**
 * The path of a request as it may be logged. A matched route logs its pattern (`/api/contacts/:id`), so neither path
 * parameters nor the query string (search terms, callback tokens, phone numbers) reach the log; an unmatched one logs
 * its path with long digit runs and e-mail-like segments masked, and only the names of its query parameters.
 */
export function loggablePath(req: LoggedRequest): string {
  const url = req.url ?? '';
  const q = url.indexOf('?');
  const path = q >= 0 ? url.slice(0, q) : url;
  const names = q >= 0 ? [...new URLSearchParams(url.slice(q + 1)).keys()].map((k) => k.slice(0, 40)) : [];
  const query = names.length ? `?${[...new Set(names)].map((k) => `${encodeURIComponent(k)}=…`).join('&')}` : '';
  const pattern = req.routeOptions?.url;
  if (pattern) return pattern + query;
  const masked = path
    .slice(0, 200)
    .split('/')
    .map((seg) => (/\d{5,}|@|%40/.test(seg) ? '…' : seg))
    .join('/');
  return masked + query;
}

function serializeError(err: unknown) {
  if (!(err instanceof Error)) return safeErrorMessage(err);
  const code = (err as { code?: unknown }).code;
  return {
    type: err.name,
    message: safeErrorMessage(err),
    ...(typeof code === 'string' ? { code } : {}),
    ...(err.stack ? { stack: safeErrorStack(err) } : {}),
  };
}

/** `err` and `error` go through {@link safeErrorMessage} whether they hold an Error or its message. */
const serializers = {
  req: (req: LoggedRequest) => ({ method: req.method, url: loggablePath(req), remoteAddress: req.ip }),
  err: serializeError,
  error: serializeError,
};

export function createLogger(options: { level: string; name?: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      name: options.name ?? 'smsblossom',
      level: options.level,
      redact: { paths: REDACT, censor: '[redacted]' },
      serializers,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination,
  );
}
