/**
 * Structured JSON logs (pino). Phone numbers, message bodies, payloads and secrets never reach a log line: callers log
 * ids only, and the redaction list below is the safety net for anything passed by mistake.
 */
import { pino, type Logger } from 'pino';

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

export function createLogger(options: { level: string; name?: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      name: options.name ?? 'smsblossom',
      level: options.level,
      redact: { paths: REDACT, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination,
  );
}
