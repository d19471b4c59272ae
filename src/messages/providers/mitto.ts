/**
 * The Mitto SMS provider: `POST {baseUrl}/sms` with `X-Mitto-API-Key`, every outcome mapped to a {@link ProviderError}
 * kind. The same client talks to the local sandbox (`src/sandbox/server.ts`) in development and tests.
 *
 * Requests go through undici's `request` on an agent of the client's own (keep-alive connections to Mitto), not
 * `fetch`: one send per message makes the WHATWG streams fetch builds for each request and response a measurable part
 * of a message's cost.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { AppError } from '../../errors.js';
import { ProviderError, type ProviderErrorCode, type SendRequest, type SendResult, type SmsProvider } from './types.js';

export interface MittoProviderOptions {
  /** API base, e.g. `https://rest.mittoapi.com` or the sandbox's URL; a trailing slash is ignored. */
  baseUrl: string;
  apiKey: string;
  /** Budget for the whole exchange (connect, send, response body). Default 10 000 ms. */
  timeoutMs?: number;
  /** The undici dispatcher requests go through. Default: an agent of this client's own. */
  dispatcher?: Dispatcher;
}

/** Response headers as undici gives them, read by name. */
type HeaderGetter = (name: string) => string | null;

const DEFAULT_RETRY_AFTER_MS = 1000;

/** Mitto `responseCode` 2–8: the message itself is wrong; sending it again cannot succeed. */
const PERMANENT_CODES: Readonly<Record<number, { code: ProviderErrorCode; what: string }>> = {
  2: { code: 'MITTO_INVALID_TYPE', what: 'invalid message type' },
  3: { code: 'MITTO_EMPTY_MESSAGE', what: 'empty message' },
  4: { code: 'MITTO_INVALID_TEXT', what: 'invalid text' },
  5: { code: 'MITTO_EMPTY_SENDER', what: 'empty sender' },
  6: { code: 'MITTO_INVALID_SENDER', what: 'invalid sender' },
  7: { code: 'MITTO_EMPTY_RECEIVER', what: 'empty receiver' },
  8: { code: 'MITTO_INVALID_RECEIVER', what: 'invalid receiver' },
};

/**
 * Socket errors that can happen after the request went out, so Mitto may have taken the message. A reset on a
 * kept-alive socket can also happen before anything was read, but we cannot tell the two apart from here.
 */
const AFTER_SEND_NETWORK_CODES = new Set(['ECONNRESET', 'UND_ERR_SOCKET']);

interface MittoResponse {
  id?: unknown;
  timestamp?: unknown;
  responseCode?: unknown;
  responseText?: unknown;
  textLength?: unknown;
}

export function createMittoProvider(options: MittoProviderOptions): SmsProvider & { close(): Promise<void> } {
  const { apiKey, timeoutMs = 10_000 } = options;
  let endpoint: string;
  try {
    endpoint = new URL(`${options.baseUrl.replace(/\/+$/, '')}/sms`).toString();
  } catch (err) {
    throw new AppError('CONFIG_INVALID', 'Mitto baseUrl is not a valid URL', { cause: err });
  }
  if (typeof apiKey !== 'string' || apiKey.trim() === '') throw new AppError('CONFIG_INVALID', 'Mitto apiKey is empty');
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new AppError('CONFIG_INVALID', `Mitto timeoutMs must be a positive number, got ${timeoutMs}`);
  }
  const ownAgent = options.dispatcher ? undefined : new Agent({ keepAliveTimeout: 30_000, connect: { timeout: timeoutMs } });
  const dispatcher = options.dispatcher ?? ownAgent!;

  async function send(req: SendRequest): Promise<SendResult> {
    const body = JSON.stringify({
      from: req.from,
      to: req.to,
      text: req.text,
      type: req.unicode ? 'Unicode' : 'GSM',
      reference: req.reference,
      callback: req.callbackUrl,
    });
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);

    let status: number;
    let header: HeaderGetter;
    let raw: string;
    try {
      const res = await request(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', 'x-mitto-api-key': apiKey },
        body,
        signal: controller.signal,
        dispatcher,
        // undici's own timers stay out of the way: the one budget above covers connect, send and the whole answer.
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      status = res.statusCode;
      const headers = res.headers;
      header = (name) => {
        const value = headers[name];
        return Array.isArray(value) ? (value[0] ?? null) : (value ?? null);
      };
      raw = await res.body.text();
    } catch (err) {
      throw networkError(err, timedOut, timeoutMs);
    } finally {
      clearTimeout(timer);
    }
    return interpret(status, header, raw, req);
  }

  return {
    name: 'mitto',
    send,
    async close() {
      await ownAgent?.close();
    },
  };
}

function interpret(status: number, header: HeaderGetter, raw: string, req: SendRequest): SendResult {
  const json = parseJson(raw);
  const responseCode = json ? toInt(json.responseCode) : undefined;
  const httpStatus = status;

  if (status === 429) {
    return fail('rate_limited', 'HTTP_429', 'Mitto rate limit reached', {
      httpStatus,
      retryAfterMs: retryAfterMs(header('retry-after')),
    });
  }
  if (status === 401 || status === 403) {
    return fail('permanent', 'MITTO_AUTH', `Mitto refused the API key (HTTP ${status}): check the configured key and that this host's IP is allow-listed`, { httpStatus });
  }
  if (status >= 500) {
    return fail('transient', `HTTP_${status}`, `Mitto answered HTTP ${status}`, { httpStatus, providerCode: responseCode });
  }
  if (status >= 300 && status < 400) {
    return fail('permanent', `HTTP_${status}`, `Mitto answered a redirect (HTTP ${status}) to ${header('location') ?? '(no location)'}: configure the final base URL`, { httpStatus });
  }

  if (responseCode !== undefined && responseCode !== 0) {
    const known = PERMANENT_CODES[responseCode];
    if (known) {
      return fail('permanent', known.code, `Mitto rejected the message: ${known.what} (responseCode ${responseCode})`, { httpStatus, providerCode: responseCode });
    }
    // 1 is Mitto's internal error. Codes we do not know also mean "not sent", so a later attempt cannot duplicate.
    const code: ProviderErrorCode = responseCode === 1 ? 'MITTO_INTERNAL_ERROR' : `MITTO_RESPONSE_${responseCode}`;
    const what = responseCode === 1 ? 'internal error' : `unknown responseCode, ${describeBody(json?.responseText, req)}`;
    return fail('transient', code, `Mitto did not send the message: ${what} (responseCode ${responseCode})`, { httpStatus, providerCode: responseCode });
  }

  if (status >= 400) {
    return fail('permanent', `HTTP_${status}`, `Mitto answered HTTP ${status}: ${describeBody(json?.responseText ?? raw, req)}`, { httpStatus, providerCode: responseCode });
  }

  // 2xx from here on: Mitto took the request, so a reply we cannot read must be reconciled, not resent.
  const id = json?.id;
  if (!json || (typeof id !== 'string' && typeof id !== 'number') || String(id) === '') {
    return fail('ambiguous', 'MITTO_BAD_RESPONSE', `Mitto answered HTTP ${status} without a readable message id`, { httpStatus, providerCode: responseCode });
  }
  return {
    providerMessageId: String(id),
    acceptedAt: toDate(json.timestamp) ?? new Date(),
    textLength: toInt(json.textLength) ?? null,
  };
}

function fail(kind: ProviderError['kind'], code: ProviderErrorCode, message: string, options: ConstructorParameters<typeof ProviderError>[3]): never {
  throw new ProviderError(kind, code, message, options);
}

function networkError(err: unknown, timedOut: boolean, timeoutMs: number): ProviderError {
  if (timedOut) {
    return new ProviderError('ambiguous', 'TIMEOUT', `Mitto did not answer within ${timeoutMs} ms; the message may have been sent`, { cause: err });
  }
  const sysCode = errorCode(err);
  if (sysCode !== undefined && AFTER_SEND_NETWORK_CODES.has(sysCode)) {
    return new ProviderError('ambiguous', 'CONNECTION_RESET', `connection to Mitto lost before an answer (${sysCode}); the message may have been sent`, { cause: err });
  }
  return new ProviderError('transient', 'CONNECTION_FAILED', `could not reach Mitto (${sysCode ?? describeError(err)})`, { cause: err });
}

/** The first `code` along the cause chain (undici's errors carry it; wrapped ones carry it in `cause`). */
function errorCode(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  while (queue.length > 0) {
    const e = queue.shift();
    if (e === null || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    queue.push((e as { cause?: unknown }).cause);
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors)) queue.push(...errors);
  }
  return undefined;
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A short, printable excerpt of what Mitto said, with our recipient and text removed in case it echoes them. */
function describeBody(value: unknown, req: SendRequest): string {
  if (typeof value !== 'string' || value.trim() === '') return '(empty body)';
  let text = value;
  for (const secret of [req.text, req.to, req.to.replace(/^\+/, '')]) {
    if (secret.length >= 3) text = text.split(secret).join('[redacted]');
  }
  text = text.replace(/\+?\d[\d\s().-]{4,}\d/g, '[redacted]').replace(/\s+/g, ' ').trim();
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function parseJson(raw: string): MittoResponse | undefined {
  try {
    const value: unknown = JSON.parse(raw);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as MittoResponse) : undefined;
  } catch {
    return undefined;
  }
}

function toInt(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) return Number(value.trim());
  return undefined;
}

function toDate(value: unknown): Date | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** `Retry-After` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function retryAfterMs(header: string | null, now: number = Date.now()): number {
  if (header === null || header.trim() === '') return DEFAULT_RETRY_AFTER_MS;
  const value = header.trim();
  if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? DEFAULT_RETRY_AFTER_MS : Math.max(0, at - now);
}
