/**
 * Webhook intake: verify, parse, persist, enqueue — and answer within Shopify's few seconds.
 *
 * "Accepted" means durable: the event row exists *and* its `events` job is in Redis. If Redis cannot take the job the
 * row is removed again and the caller answers 503, so Shopify's retry is not mistaken for a duplicate. Should that
 * removal fail too, the row stays `received`, and the retry (same webhook id) enqueues it: the job id is derived from
 * the webhook id, so enqueuing twice adds one job.
 */
import { createHash } from 'node:crypto';
import type { Db } from '../db/client.js';
import { deleteUnqueuedEvent, insertEvent, insertRejectedEvent, type StoredEvent } from '../db/events.js';
import { AppError, isAppError } from '../errors.js';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../json.js';
import type { Logger } from '../logger.js';
import { jobIdFrom, type QueueRegistry } from '../queue/queues.js';
import { verifyWebhookHmac } from './hmac.js';
import { isShopDomain } from './shopDomain.js';
import { isTopic, PRIVACY_TOPICS } from './topics.js';

export interface IntakeDeps {
  db: Db;
  queues: QueueRegistry;
  logger: Logger;
  secret: string;
  /** Longest wait for Redis before answering 503 (ms). */
  enqueueTimeoutMs?: number;
}

export interface WebhookRequest {
  rawBody: Buffer;
  headers: Record<string, string | string[] | undefined>;
  /** Topic taken from the URL path (`/webhooks/shopify/orders/paid`), if any. */
  pathTopic?: string;
  requestId: string;
}

export interface WebhookAccepted {
  duplicate: boolean;
  eventId: number;
  jobId: string | null;
}

/** Longest object id kept; the `events` job schema allows no more. */
const MAX_OBJECT_ID = 255;
/** Characters PostgreSQL `jsonb` refuses: NUL and unpaired UTF-16 surrogates. */
const UNSTORABLE_CHAR = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
/** The JSON escapes that can produce them (paired surrogates match too; they pass through unchanged). */
const JSONB_UNSAFE_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function header(headers: WebhookRequest['headers'], name: string): string | undefined {
  const v = headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s.trim() === '' ? undefined : s.trim();
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function objectIdOf(payload: Record<string, unknown>): string | null {
  for (const key of ['id', 'token', 'inventory_item_id']) {
    const v = payload[key];
    if (typeof v === 'string' || typeof v === 'number') return String(v).slice(0, MAX_OBJECT_ID);
  }
  const customer = payload.customer as Record<string, unknown> | undefined;
  if (customer && (typeof customer.id === 'number' || typeof customer.id === 'string')) return String(customer.id).slice(0, MAX_OBJECT_ID);
  return null;
}

/**
 * JSON.parse reviver making a payload storable in `jsonb`: U+0000 and unpaired surrogates become U+FFFD, in values and
 * keys. Without it such a payload (valid JSON, correctly signed) fails to insert, is answered 503 and retried by
 * Shopify until it gives up on the subscription.
 */
function storable(_key: string, value: unknown): unknown {
  const clean = (s: string) => s.replace(UNSTORABLE_CHAR, '\uFFFD');
  if (typeof value === 'string') return clean(value);
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value);
    if (entries.some(([k]) => clean(k) !== k)) return Object.fromEntries(entries.map(([k, v]) => [clean(k), v]));
  }
  return value;
}

/** A signed body that cannot be taken (not JSON, too deep, not an object): refused for good, and recorded as such. */
export class RejectedWebhookBody extends AppError {
  constructor(
    readonly headers: ReturnType<typeof parseWebhookHeaders>,
    code: 'INVALID_JSON' | 'INVALID_PAYLOAD',
    message: string,
  ) {
    super(code, message);
  }
}

/** Checks the signature and the headers; throws a typed 4xx error. */
function parseWebhookHeaders(req: WebhookRequest, secret: string) {
  const hmac = header(req.headers, 'x-shopify-hmac-sha256');
  if (!hmac) throw new AppError('INVALID_SIGNATURE', 'X-Shopify-Hmac-Sha256 header is missing');
  if (!verifyWebhookHmac(req.rawBody, hmac, secret)) {
    throw new AppError('INVALID_SIGNATURE', 'X-Shopify-Hmac-Sha256 does not match the request body');
  }
  const headerTopic = header(req.headers, 'x-shopify-topic');
  const topic = headerTopic ?? req.pathTopic;
  if (!topic) throw new AppError('MISSING_HEADER', 'X-Shopify-Topic header is missing');
  if (!isTopic(topic)) throw new AppError('VALIDATION_FAILED', `X-Shopify-Topic: "${topic.slice(0, 60)}" is not a Shopify topic`);
  if (headerTopic && req.pathTopic && headerTopic !== req.pathTopic) {
    throw new AppError('VALIDATION_FAILED', `X-Shopify-Topic "${headerTopic}" does not match the URL topic "${req.pathTopic}"`);
  }
  const shopDomain = header(req.headers, 'x-shopify-shop-domain')?.toLowerCase();
  if (!shopDomain) throw new AppError('MISSING_HEADER', 'X-Shopify-Shop-Domain header is missing');
  if (!isShopDomain(shopDomain)) {
    throw new AppError('VALIDATION_FAILED', `X-Shopify-Shop-Domain: "${shopDomain.slice(0, 60)}" is not a <name>.myshopify.com shop`);
  }
  const eventId = header(req.headers, 'x-shopify-event-id')?.slice(0, 255) ?? null;
  // Shopify always sends a webhook id; without one, identical bodies of one topic are taken as the same delivery.
  const webhookId =
    header(req.headers, 'x-shopify-webhook-id')?.slice(0, 255) ??
    (eventId ? `event-${eventId}` : `sha256-${createHash('sha256').update(topic).update(req.rawBody).digest('hex')}`);
  const triggeredRaw = header(req.headers, 'x-shopify-triggered-at');
  const triggeredAt = triggeredRaw && !Number.isNaN(Date.parse(triggeredRaw)) ? new Date(triggeredRaw) : null;
  return { topic, shopDomain, webhookId, eventId, triggeredAt, apiVersion: header(req.headers, 'x-shopify-api-version')?.slice(0, 20) ?? null };
}

/**
 * The shop a signed body names (`shop_domain`, which the privacy topics always carry) must be the one of the unsigned
 * `X-Shopify-Shop-Domain` header: a body signed for shop A sent with shop B's header would otherwise erase B.
 */
function checkShopNamedInBody(topic: string, shopDomain: string, payload: Record<string, unknown>): void {
  const named = payload.shop_domain;
  if (typeof named !== 'string') {
    // Privacy topics erase or export data: the shop they act on must be named by the signed body too.
    if (PRIVACY_TOPICS.has(topic)) throw new AppError('SHOP_DOMAIN_MISMATCH', `${topic}: the body does not name its shop (shop_domain)`);
    return;
  }
  if (named.trim().toLowerCase() !== shopDomain) {
    throw new AppError('SHOP_DOMAIN_MISMATCH', `X-Shopify-Shop-Domain "${shopDomain}" is not the shop the signed body names`);
  }
}

/** Checks signature, headers and shape; returns what is needed to persist, or throws a typed 4xx error. */
export function parseWebhook(req: WebhookRequest, secret: string) {
  const headers = parseWebhookHeaders(req, secret);
  let text: string;
  try {
    text = utf8.decode(req.rawBody);
  } catch (err) {
    throw new RejectedWebhookBody(headers, 'INVALID_JSON', `request body is not valid UTF-8: ${(err as Error).message}`);
  }
  // Before parsing: JSON.parse takes any depth, but storing the result (JSON.stringify, the jsonb parser) overflows.
  if (jsonDepthExceeds(text)) throw new RejectedWebhookBody(headers, 'INVALID_PAYLOAD', `request body is nested deeper than ${MAX_JSON_DEPTH} levels`);
  let payload: unknown;
  try {
    // The reviver costs; only payloads that need it pay for it.
    payload = JSONB_UNSAFE_ESCAPE.test(text) ? JSON.parse(text, storable) : JSON.parse(text);
  } catch (err) {
    throw new RejectedWebhookBody(headers, 'INVALID_JSON', `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new RejectedWebhookBody(headers, 'INVALID_PAYLOAD', 'request body must be a JSON object');
  }
  checkShopNamedInBody(headers.topic, headers.shopDomain, payload as Record<string, unknown>);
  return { ...headers, payload: payload as Record<string, unknown> };
}

/**
 * Records a signed delivery whose body cannot be taken, as an event `failed` / `rejected` without payload, so an
 * operator sees it and a retry of it is recognisable; then refuses it with the same 400.
 */
async function rejectBody(err: RejectedWebhookBody, req: WebhookRequest, deps: IntakeDeps): Promise<never> {
  const h = err.headers;
  await insertRejectedEvent(deps.db, {
    shopDomain: h.shopDomain,
    topic: h.topic,
    webhookId: h.webhookId,
    eventId: h.eventId,
    apiVersion: h.apiVersion,
    triggeredAt: h.triggeredAt,
    requestId: req.requestId,
    error: `${err.code}: ${err.message}`.slice(0, 500),
  }).catch((dbErr: Error) =>
    deps.logger.warn({ requestId: req.requestId, shopId: h.shopDomain, err: dbErr }, 'Rejected webhook not recorded'),
  );
  deps.logger.info({ requestId: req.requestId, shopId: h.shopDomain, topic: h.topic, webhookId: h.webhookId, code: err.code }, 'Webhook rejected: body cannot be taken');
  throw err;
}

export async function acceptWebhook(req: WebhookRequest, deps: IntakeDeps): Promise<WebhookAccepted> {
  let w: ReturnType<typeof parseWebhook>;
  try {
    w = parseWebhook(req, deps.secret);
  } catch (err) {
    if (err instanceof RejectedWebhookBody) return rejectBody(err, req, deps);
    throw err;
  }
  const log = deps.logger.child({ requestId: req.requestId, shopId: w.shopDomain, topic: w.topic, webhookId: w.webhookId });
  const objectId = objectIdOf(w.payload);

  let row: StoredEvent;
  let duplicate = false;
  try {
    const result = await insertEvent(deps.db, {
      shopDomain: w.shopDomain,
      topic: w.topic,
      objectId,
      webhookId: w.webhookId,
      eventId: w.eventId,
      apiVersion: w.apiVersion,
      triggeredAt: w.triggeredAt,
      payload: w.payload,
      requestId: req.requestId,
    });
    duplicate = result.existing !== undefined;
    row = result.inserted ?? result.existing!;
  } catch (err) {
    log.error({ err: (err as Error).message }, 'Webhook not persisted: database unavailable');
    throw new AppError('DATABASE_UNAVAILABLE', 'the event could not be stored; retry later', { cause: err });
  }

  // A row still `received` is not finished: its job is added again under the same id, which BullMQ ignores while the
  // job exists and which re-queues one that was lost (an earlier attempt whose enqueue failed, Redis restarted empty).
  if (duplicate && row.status !== 'received') {
    log.info({ eventRowId: row.id }, 'Duplicate webhook ignored');
    return { duplicate: true, eventId: row.id, jobId: null };
  }

  const jobId = jobIdFrom('wh', row.shopDomain, row.webhookId);
  try {
    await withTimeout(
      deps.queues.enqueueJob(
        'events',
        row.topic,
        {
          topic: row.topic,
          shopId: row.shopDomain,
          objectId: row.objectId,
          storedEventId: row.id,
          webhookId: row.webhookId,
          ...(row.eventId ? { eventId: row.eventId } : {}),
          ...(row.triggeredAt ? { triggeredAt: row.triggeredAt.toISOString() } : {}),
          requestId: duplicate ? (row.requestId ?? req.requestId) : req.requestId,
        },
        { jobId },
      ),
      deps.enqueueTimeoutMs ?? 2000,
      'Redis',
    );
  } catch (err) {
    if (!duplicate) await deleteUnqueuedEvent(deps.db, row.id).catch(() => undefined);
    // Data the catalog refuses will be refused on every retry: answer 4xx rather than have Shopify retry a 503.
    if (isAppError(err) && err.permanent) throw err;
    log.error({ err: (err as Error).message }, 'Webhook not accepted: queue unavailable');
    throw new AppError('REDIS_UNAVAILABLE', 'the event could not be queued; retry later', { cause: err });
  }
  // One statement and one enqueue: the row stays `received` until the events worker marks it done. A job lost with
  // Redis after this point is found by `reconcile` (a row still `received` with no job under its id).
  log.info({ eventRowId: row.id, jobId, duplicate }, duplicate ? 'Duplicate webhook of an unfinished event: its job added again' : 'Webhook accepted');
  return { duplicate, eventId: row.id, jobId };
}
