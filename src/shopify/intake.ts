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
import { deleteUnqueuedEvent, insertEvent, markEventQueued, type StoredEvent } from '../db/events.js';
import { AppError, isAppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { jobIdFrom, type QueueRegistry } from '../queue/queues.js';
import { verifyWebhookHmac } from './hmac.js';
import { isTopic } from './topics.js';

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

// DNS labels: letters, digits and inner hyphens. Stricter than the `events` job schema, so a domain accepted here is
// never refused at enqueue time (which would turn a bad request into an endless 503).
const SHOP_DOMAIN = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$/i;
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

/** Checks signature and shape; returns what is needed to persist, or throws a typed 4xx error. */
export function parseWebhook(req: WebhookRequest, secret: string) {
  const hmac = header(req.headers, 'x-shopify-hmac-sha256');
  if (!hmac) throw new AppError('INVALID_SIGNATURE', 'X-Shopify-Hmac-Sha256 header is missing');
  if (!verifyWebhookHmac(req.rawBody, hmac, secret)) {
    throw new AppError('INVALID_SIGNATURE', 'X-Shopify-Hmac-Sha256 does not match the request body');
  }
  let payload: unknown;
  try {
    const text = utf8.decode(req.rawBody);
    // The reviver costs; only payloads that need it pay for it.
    payload = JSONB_UNSAFE_ESCAPE.test(text) ? JSON.parse(text, storable) : JSON.parse(text);
  } catch (err) {
    throw new AppError('INVALID_JSON', `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new AppError('INVALID_PAYLOAD', 'request body must be a JSON object');
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
  if (!SHOP_DOMAIN.test(shopDomain) || shopDomain.length > 255) {
    throw new AppError('VALIDATION_FAILED', `X-Shopify-Shop-Domain: "${shopDomain.slice(0, 60)}" is not a shop domain`);
  }
  const eventId = header(req.headers, 'x-shopify-event-id')?.slice(0, 255) ?? null;
  // Shopify always sends a webhook id; without one, identical bodies of one topic are taken as the same delivery.
  const webhookId =
    header(req.headers, 'x-shopify-webhook-id')?.slice(0, 255) ??
    (eventId ? `event-${eventId}` : `sha256-${createHash('sha256').update(topic).update(req.rawBody).digest('hex')}`);
  const triggeredRaw = header(req.headers, 'x-shopify-triggered-at');
  const triggeredAt = triggeredRaw && !Number.isNaN(Date.parse(triggeredRaw)) ? new Date(triggeredRaw) : null;
  return {
    topic,
    shopDomain,
    webhookId,
    eventId,
    triggeredAt,
    apiVersion: header(req.headers, 'x-shopify-api-version')?.slice(0, 20) ?? null,
    payload: payload as Record<string, unknown>,
  };
}

export async function acceptWebhook(req: WebhookRequest, deps: IntakeDeps): Promise<WebhookAccepted> {
  const w = parseWebhook(req, deps.secret);
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
          raw: w.payload,
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
  await markEventQueued(deps.db, row.id).catch((err: Error) =>
    // The job is in Redis and the row exists: the event is safe. The status catches up when the job is processed
    // (markEventDone does not require `queued`).
    log.warn({ err: err.message }, 'Event queued but its status could not be updated'),
  );
  log.info({ eventRowId: row.id, jobId, duplicate }, duplicate ? 'Webhook re-queued (earlier attempt was not queued)' : 'Webhook accepted');
  return { duplicate, eventId: row.id, jobId };
}
