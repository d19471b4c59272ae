/**
 * A local, Mitto-compatible SMS API for development, tests and benchmarks. It answers `POST /sms` and `POST /smsbulk`
 * the way Mitto does, records what it accepted, posts delivery reports to each message's `callback`, and injects the
 * faults the delivery pipeline must survive: 5xx, 429, latency, permanent response codes, and requests that reach the
 * provider but are never answered.
 *
 * Control endpoints (no API key): `GET|PUT /__sandbox/faults`, `GET|DELETE /__sandbox/messages`, `GET /__sandbox/stats`.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter, setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError, describeIssues } from '../errors.js';
import type { Logger } from '../logger.js';

export interface Faults {
  /** Share of requests answered HTTP 503. Default 0. */
  errorRate: number;
  /** The next N requests are answered 503; counts down as they arrive (after any 429). Default 0. */
  errorBurst: number;
  /**
   * Share of valid messages that are recorded as sent (and get their delivery report) but whose request is held open
   * without an answer for `hangMs`, then dropped: a send that reached the provider. Default 0.
   */
  timeoutRate: number;
  /** How long an unanswered request is held before its connection is closed. Default 30 000 ms. */
  hangMs: number;
  /** Share of requests answered HTTP 429 with `Retry-After: 1`. Default 0. */
  rateLimitRate: number;
  /** The next N requests are answered 429; counts down as they arrive. Default 0. */
  rateLimitBurst: number;
  /** Added before every `/sms` and `/smsbulk` answer. Default 0. */
  latencyMs: number;
  /** The `responseCode` (1–99) answered to a `permanentRate` share of valid messages. Default null. */
  permanentCode: number | null;
  /** Default 0. */
  permanentRate: number;
  /** Status of the delivery reports sent from now on. Default `delivered`. */
  dlrStatus: 'delivered' | 'failed';
  /** Error code carried by `failed` delivery reports. Default `UNDELIV`. */
  dlrErrorCode: string | null;
  /**
   * Share of accepted messages that get a delivery report at all. Default 1. Below 1, a message that draws no report
   * keeps `dlr.state` `none`: the case a sender must settle without one (a lost or never-sent report).
   */
  dlrRate: number;
  /** Delay between accepting a message and posting its delivery report, for messages accepted from now on. Default: the `dlrDelayMs` option. */
  dlrDelayMs: number;
}

export interface SandboxOptions {
  /** When set, requests must carry exactly this `X-Mitto-API-Key`; otherwise any non-empty key is accepted. */
  apiKey?: string;
  logger?: Logger;
  /** Delay between accepting a message and posting its delivery report. Default 50 ms (the `dlrDelayMs` fault's initial value). */
  dlrDelayMs?: number;
  /** Seeds the fault PRNG so a run with the same requests and faults makes the same decisions. */
  seed?: number;
  /** Initial faults. */
  faults?: Partial<Faults>;
}

export interface SandboxMessage {
  id: string;
  to: string;
  from: string;
  text: string;
  type: 'GSM' | 'Unicode' | 'Binary' | 'Auto';
  reference: string | null;
  callback: string | null;
  test: boolean;
  /** The `X-Mitto-API-Key` the request carried. */
  apiKey: string;
  receivedAt: Date;
  /** False when the request was held open and dropped (the `timeoutRate` fault): the client never saw the id. */
  answered: boolean;
  bulk: boolean;
  dlr: { state: 'none' | 'scheduled' | 'sent' | 'failed'; status: 'delivered' | 'failed' | null; attempts: number };
}

export interface SandboxStats {
  /** HTTP requests to `/sms` and `/smsbulk`. */
  requests: number;
  unauthorized: number;
  rateLimited: number;
  serverErrors: number;
  badRequests: number;
  /** Messages accepted (responseCode 0 or held unanswered). */
  accepted: number;
  /** Accepted messages whose request was never answered. */
  unanswered: number;
  /** Messages answered with a non-zero responseCode. */
  rejected: number;
  /** Messages by the responseCode answered (0 included; unanswered ones are not). */
  responseCodes: Record<string, number>;
  dlr: { sent: number; failed: number };
}

export interface Sandbox {
  app: FastifyInstance;
  /** Starts listening (port 0 = any free port; host default 127.0.0.1) and resolves with the base URL. */
  listen(port?: number, host?: string): Promise<string>;
  /** Idempotent: drops held requests, cancels pending delivery reports, closes the server. */
  close(): Promise<void>;
  messages(): SandboxMessage[];
  setFaults(faults: Partial<Faults> & { seed?: number }): Faults;
  faults(): Faults;
  stats(): SandboxStats;
  /** Clears messages, stats and faults, reseeds the PRNG and cancels pending delivery reports. */
  reset(): void;
  /** Resolves with the messages once at least `n` were accepted; rejects after `timeoutMs`. */
  waitForMessages(n: number, timeoutMs?: number): Promise<SandboxMessage[]>;
}

const DEFAULT_FAULTS: Faults = {
  errorRate: 0,
  errorBurst: 0,
  timeoutRate: 0,
  hangMs: 30_000,
  rateLimitRate: 0,
  rateLimitBurst: 0,
  latencyMs: 0,
  permanentCode: null,
  permanentRate: 0,
  dlrStatus: 'delivered',
  dlrErrorCode: 'UNDELIV',
  dlrRate: 1,
  dlrDelayMs: 50,
};

const rate = z.number().min(0).max(1);
const ms = z.number().int().min(0).max(3_600_000);
const FaultsInput = z
  .object({
    errorRate: rate,
    errorBurst: z.number().int().min(0),
    timeoutRate: rate,
    hangMs: ms,
    rateLimitRate: rate,
    rateLimitBurst: z.number().int().min(0),
    latencyMs: ms,
    permanentCode: z.number().int().min(1).max(99).nullable(),
    permanentRate: rate,
    dlrStatus: z.enum(['delivered', 'failed']),
    dlrErrorCode: z.string().max(64).nullable(),
    dlrRate: rate,
    dlrDelayMs: ms,
    seed: z.number().int(),
  })
  .partial()
  .strict();

const RESPONSE_TEXT: Readonly<Record<number, string>> = {
  0: 'Message sent',
  1: 'Internal error',
  2: 'Invalid type',
  3: 'Empty message',
  4: 'Invalid text',
  5: 'Empty sender',
  6: 'Invalid sender',
  7: 'Empty receiver',
  8: 'Invalid receiver',
};

const TYPES: Readonly<Record<string, SandboxMessage['type']>> = { gsm: 'GSM', unicode: 'Unicode', binary: 'Binary', auto: 'Auto' };
const ALPHANUMERIC_SENDER = /^[A-Za-z0-9]{3,11}$/;
const NUMERIC_SENDER = /^\+?\d{3,14}$/;
const RECEIVER = /^\+?[1-9]\d{6,14}$/;
/**
 * Delivery reports go out as a provider sends them: a bounded number of callbacks in flight (a burst of accepted
 * messages queues its reports rather than opening thousands of connections to the callback), and a report the callback
 * did not take is retried with a growing delay for a few minutes before it is given up: 100 ms, 400 ms, 1.6 s, 6.4 s,
 * then every 30 s, ten attempts over about three minutes.
 */
const DLR_CONCURRENCY = 32;
const DLR_ATTEMPTS = 10;
const DLR_MAX_DELAY_MS = 30_000;
const DLR_TIMEOUT_MS = 5_000;

interface SmsAnswer {
  id: string | null;
  timestamp: string;
  to: string | null;
  responseCode: number;
  responseText: string;
  textLength: number | null;
  test: boolean;
}

/** mulberry32: tiny, fast, good enough to make fault injection repeatable. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function createSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const { apiKey, logger, dlrDelayMs = 50 } = options;
  if (apiKey !== undefined && apiKey.trim() === '') throw new AppError('CONFIG_INVALID', 'sandbox apiKey, when given, must not be empty');
  if (!Number.isInteger(dlrDelayMs) || dlrDelayMs < 0) throw new AppError('CONFIG_INVALID', `sandbox dlrDelayMs must be a non-negative integer, got ${dlrDelayMs}`);

  let seed = options.seed;
  let random = seed === undefined ? Math.random : mulberry32(seed);
  let faults: Faults = { ...DEFAULT_FAULTS, dlrDelayMs };
  let stats = emptyStats();
  let records: SandboxMessage[] = [];
  /** Bumped by reset(): delivery reports of an earlier generation stop retrying. */
  let generation = 0;
  let closed = false;
  let closing: Promise<void> | undefined;
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const shutdown = new AbortController();
  /** Keep-alive connections for delivery reports, as a provider keeps them to a busy callback URL. */
  const dlrAgent = new Agent({ keepAliveTimeout: 30_000 });
  // Every request in latency and every callback in flight listens for the shutdown.
  setMaxListeners(0, shutdown.signal);
  const dlrTimers = new Set<NodeJS.Timeout>();
  /** Callback attempts due, waiting for one of the DLR_CONCURRENCY slots. */
  const dlrDue: Array<() => Promise<void>> = [];
  let dlrInFlight = 0;
  const pumpDlr = (): void => {
    while (dlrInFlight < DLR_CONCURRENCY && dlrDue.length > 0) {
      const attempt = dlrDue.shift()!;
      dlrInFlight++;
      void attempt().finally(() => {
        dlrInFlight--;
        pumpDlr();
      });
    }
  };
  const held = new Map<Socket, NodeJS.Timeout>();

  const draw = (share: number): boolean => share > 0 && random() < share;

  function setFaults(input: Partial<Faults> & { seed?: number }): Faults {
    const parsed = FaultsInput.safeParse(input);
    if (!parsed.success) throw new AppError('VALIDATION_FAILED', describeIssues(parsed.error.issues));
    const { seed: newSeed, ...rest } = parsed.data;
    if (newSeed !== undefined) {
      seed = newSeed;
      random = mulberry32(newSeed);
    }
    faults = { ...faults, ...rest };
    return { ...faults };
  }
  if (options.faults) setFaults(options.faults);
  const initialFaults = { ...faults };

  const app = Fastify({
    ...(logger ? { loggerInstance: logger as FastifyBaseLogger } : { logger: false }),
    return503OnClosing: true,
    // Close means close: a client's pool may hold a connection that never sent a request, which Node does not count as
    // idle and would keep `close()` waiting for the 60 s headers timeout.
    forceCloseConnections: true,
  });

  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    if (err instanceof AppError) return reply.status(err.statusCode).send(err.toJSON());
    const status = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500;
    return reply.status(status).send({ error: { code: status >= 500 ? 'INTERNAL' : 'INVALID_PAYLOAD', message: err.message } });
  });

  /** Auth, latency, 429 and 503, in that order. Resolves with the caller's key, or null when it has answered. */
  async function gate(req: FastifyRequest, reply: FastifyReply): Promise<{ key: string } | null> {
    stats.requests++;
    const header = req.headers['x-mitto-api-key'];
    const key = (Array.isArray(header) ? header[0] : header)?.trim() ?? '';
    if (key === '' || (apiKey !== undefined && key !== apiKey)) {
      stats.unauthorized++;
      reply.status(401).send({ responseText: 'Unauthorized: missing or invalid X-Mitto-API-Key' });
      return null;
    }
    if (faults.latencyMs > 0) {
      try {
        await sleep(faults.latencyMs, undefined, { signal: shutdown.signal });
      } catch {
        stats.serverErrors++;
        reply.status(503).send({ responseText: 'Service Unavailable' });
        return null;
      }
    }
    if (faults.rateLimitBurst > 0 || draw(faults.rateLimitRate)) {
      if (faults.rateLimitBurst > 0) faults.rateLimitBurst--;
      stats.rateLimited++;
      reply.status(429).header('retry-after', '1').send({ responseText: 'Too Many Requests' });
      return null;
    }
    if (faults.errorBurst > 0 || draw(faults.errorRate)) {
      if (faults.errorBurst > 0) faults.errorBurst--;
      stats.serverErrors++;
      reply.status(503).send({ responseText: 'Service Unavailable' });
      return null;
    }
    return { key };
  }

  /** Validates one message like Mitto and, when valid and no permanent fault fires, records it as accepted. */
  function acceptOne(body: Record<string, unknown>, key: string, bulk: boolean): { answer: SmsAnswer; record: SandboxMessage | null } {
    const now = new Date();
    const test = body.test === true || body.test === 'true';
    const to = typeof body.to === 'string' ? body.to.trim() : '';
    const reject = (responseCode: number): { answer: SmsAnswer; record: null } => {
      stats.rejected++;
      countCode(responseCode);
      const answer = { id: null, timestamp: now.toISOString(), to: to || null, responseCode, responseText: RESPONSE_TEXT[responseCode] ?? 'Error', textLength: null, test };
      return { answer, record: null };
    };

    const type = body.type === undefined || body.type === null ? 'GSM' : typeof body.type === 'string' ? TYPES[body.type.toLowerCase()] : undefined;
    if (type === undefined) return reject(2);
    const text = typeof body.text === 'string' ? body.text : '';
    if (text === '') return reject(3);
    if (type === 'Binary' && !/^(?:[0-9A-Fa-f]{2})+$/.test(text)) return reject(4);
    const from = typeof body.from === 'string' ? body.from.trim() : '';
    if (from === '') return reject(5);
    if (!ALPHANUMERIC_SENDER.test(from) && !NUMERIC_SENDER.test(from)) return reject(6);
    if (to === '') return reject(7);
    if (!RECEIVER.test(to)) return reject(8);
    if (faults.permanentCode !== null && draw(faults.permanentRate)) return reject(faults.permanentCode);

    const record: SandboxMessage = {
      id: randomUUID(),
      to,
      from,
      text,
      type,
      reference: optionalString(body.reference),
      callback: optionalString(body.callback),
      test,
      apiKey: key,
      receivedAt: now,
      answered: true,
      bulk,
      dlr: { state: 'none', status: null, attempts: 0 },
    };
    stats.accepted++;
    const answer = { id: record.id, timestamp: now.toISOString(), to, responseCode: 0, responseText: RESPONSE_TEXT[0]!, textLength: text.length, test };
    return { answer, record };
  }

  function countCode(code: number): void {
    stats.responseCodes[code] = (stats.responseCodes[code] ?? 0) + 1;
  }

  function commit(accepted: SandboxMessage[], answered: boolean): void {
    for (const record of accepted) {
      record.answered = answered;
      if (answered) countCode(0);
      else stats.unanswered++;
      records.push(record);
      scheduleDlr(record);
    }
    if (accepted.length > 0) events.emit('message');
  }

  /**
   * Takes the request over from Fastify and never answers it: the socket is closed after `hangMs` (or at shutdown),
   * as a provider that stalls after taking the message would.
   */
  function hold(req: FastifyRequest, reply: FastifyReply): FastifyReply {
    reply.hijack();
    const socket = req.raw.socket;
    const timer = setTimeout(() => socket.destroy(), faults.hangMs);
    held.set(socket, timer);
    socket.once('close', () => {
      clearTimeout(timer);
      held.delete(socket);
    });
    return reply;
  }

  function scheduleDlr(record: SandboxMessage): void {
    if (record.callback === null) return;
    // Drawn only when reports are being dropped, so a seeded run without this fault makes the same decisions as before.
    if (faults.dlrRate < 1 && !draw(faults.dlrRate)) return;
    const status = faults.dlrStatus;
    const payload = {
      id: record.id,
      reference: record.reference,
      status,
      errorCode: status === 'failed' ? faults.dlrErrorCode : null,
      timestamp: '',
    };
    record.dlr = { state: 'scheduled', status, attempts: 0 };
    const gen = generation;
    const later = (delay: number, attempt: number) => {
      const timer = setTimeout(() => {
        dlrTimers.delete(timer);
        dlrDue.push(() => deliver(attempt));
        pumpDlr();
      }, delay);
      dlrTimers.add(timer);
    };
    // Never throws: a callback that is down, slow or wrong must not take the sandbox with it.
    const deliver = async (attempt: number): Promise<void> => {
      if (closed || gen !== generation) return;
      record.dlr.attempts = attempt;
      let problem: string;
      try {
        const res = await request(record.callback!, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ...payload, timestamp: new Date().toISOString() }),
          signal: AbortSignal.any([shutdown.signal, AbortSignal.timeout(DLR_TIMEOUT_MS)]),
          dispatcher: dlrAgent,
        });
        await res.body.dump().catch(() => undefined);
        if (res.statusCode >= 200 && res.statusCode < 300) {
          record.dlr.state = 'sent';
          stats.dlr.sent++;
          return;
        }
        problem = `HTTP ${res.statusCode}`;
      } catch (err) {
        problem = err instanceof Error ? err.message : String(err);
      }
      if (closed || gen !== generation) return;
      if (attempt >= DLR_ATTEMPTS) {
        record.dlr.state = 'failed';
        stats.dlr.failed++;
        // The callback URL may carry a secret token: log the message id only.
        logger?.warn({ messageId: record.id, attempts: attempt, problem }, 'sandbox gave up posting a delivery report');
        return;
      }
      later(Math.min(100 * 4 ** (attempt - 1), DLR_MAX_DELAY_MS), attempt + 1);
    };
    later(faults.dlrDelayMs, 1);
  }

  app.post('/sms', async (req, reply) => {
    const auth = await gate(req, reply);
    if (auth === null) return reply;
    if (!isObject(req.body)) {
      stats.badRequests++;
      return reply.status(400).send({ responseText: 'Request body must be a JSON object' });
    }
    const { answer, record } = acceptOne(req.body, auth.key, false);
    if (record === null) return reply.send(answer);
    if (draw(faults.timeoutRate)) {
      commit([record], false);
      return hold(req, reply);
    }
    commit([record], true);
    return reply.send(answer);
  });

  app.post('/smsbulk', async (req, reply) => {
    const auth = await gate(req, reply);
    if (auth === null) return reply;
    const items = isObject(req.body) ? bulkItems(req.body) : null;
    if (items === null) {
      stats.badRequests++;
      return reply.status(400).send({ responseText: 'Expected {messages: [...]} or {from, text, to: [...]}' });
    }
    const results = items.map((item) => acceptOne(item, auth.key, true));
    const accepted = results.flatMap((r) => (r.record ? [r.record] : []));
    if (accepted.length > 0 && draw(faults.timeoutRate)) {
      commit(accepted, false);
      return hold(req, reply);
    }
    commit(accepted, true);
    return reply.send({ messages: results.map((r) => r.answer) });
  });

  app.get('/__sandbox/faults', async () => ({ ...faults, seed: seed ?? null }));
  app.put('/__sandbox/faults', async (req) => ({ ...setFaults(isObject(req.body) ? (req.body as Partial<Faults>) : {}), seed: seed ?? null }));
  app.get('/__sandbox/messages', async (req) => {
    const q = isObject(req.query) ? req.query : {};
    const reference = optionalString(q.reference);
    const to = optionalString(q.to);
    return {
      messages: records
        .filter((m) => (reference === null || m.reference === reference) && (to === null || m.to === to))
        // Never echo a key over HTTP: a developer may point the sandbox at a real one by mistake.
        .map((m) => ({ ...m, apiKey: '[redacted]' })),
    };
  });
  app.delete('/__sandbox/messages', async () => {
    const cleared = records.length;
    records = [];
    return { cleared };
  });
  app.get('/__sandbox/stats', async () => snapshotStats());

  await app.ready();

  function snapshotStats(): SandboxStats {
    return { ...stats, responseCodes: { ...stats.responseCodes }, dlr: { ...stats.dlr } };
  }

  const snapshot = (): SandboxMessage[] => records.map((m) => ({ ...m, dlr: { ...m.dlr } }));

  function cancelDlrs(): void {
    for (const timer of dlrTimers) clearTimeout(timer);
    dlrTimers.clear();
    dlrDue.length = 0;
  }

  return {
    app,
    async listen(port = 0, host = '127.0.0.1') {
      if (!app.server.listening) await app.listen({ port, host });
      const address = app.server.address();
      if (address === null || typeof address === 'string') throw new AppError('INTERNAL', 'sandbox is not listening on a TCP port');
      const shown = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.address;
      return `http://${shown.includes(':') ? `[${shown}]` : shown}:${address.port}`;
    },
    close() {
      closing ??= (async () => {
        closed = true;
        const problems: unknown[] = [];
        const step = async (fn: () => unknown) => {
          try {
            await fn();
          } catch (err) {
            problems.push(err);
          }
        };
        await step(() => shutdown.abort());
        await step(cancelDlrs);
        await step(() => {
          for (const [socket, timer] of held) {
            clearTimeout(timer);
            socket.destroy();
          }
          held.clear();
        });
        await step(() => app.close());
        await step(() => dlrAgent.destroy());
        await step(() => events.removeAllListeners());
        if (problems.length > 0) throw new AggregateError(problems, 'sandbox did not close cleanly');
      })();
      return closing;
    },
    messages: snapshot,
    setFaults,
    faults: () => ({ ...faults }),
    stats: snapshotStats,
    reset() {
      generation++;
      cancelDlrs();
      records = [];
      stats = emptyStats();
      faults = { ...initialFaults };
      random = options.seed === undefined ? Math.random : mulberry32(options.seed);
      seed = options.seed;
    },
    waitForMessages(n, timeoutMs = 5_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (records.length < n) return;
          cleanup();
          resolve(snapshot());
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`sandbox has ${records.length} of ${n} messages after ${timeoutMs} ms`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          events.off('message', check);
        };
        events.on('message', check);
        check();
      });
    },
  };
}

function emptyStats(): SandboxStats {
  return { requests: 0, unauthorized: 0, rateLimited: 0, serverErrors: 0, badRequests: 0, accepted: 0, unanswered: 0, rejected: 0, responseCodes: {}, dlr: { sent: 0, failed: 0 } };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function optionalString(value: unknown): string | null {
  return typeof value === 'string' && value.trim() !== '' ? value : null;
}

/** Bulk requests either list whole messages, or share `from`/`text`/`type` across several receivers. */
function bulkItems(body: Record<string, unknown>): Record<string, unknown>[] | null {
  if (Array.isArray(body.messages)) return body.messages.map((m) => (isObject(m) ? m : {}));
  const to = Array.isArray(body.to) ? body.to : typeof body.to === 'string' ? body.to.split(',') : null;
  if (to === null || to.length === 0) return null;
  return to.map((t) => ({ ...body, to: typeof t === 'string' ? t.trim() : t }));
}
