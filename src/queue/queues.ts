/**
 * The queue catalog: every queue, its job names, the schema of its job data and its job options, in one place.
 * Producers enqueue through {@link QueueRegistry.enqueueJob}, which validates against the same schemas the workers
 * validate with, so a producer cannot send a payload its consumer will not accept. A plain BullMQ producer (the
 * specification's examples) skips that check; the worker makes it on the first attempt, and data the processor can
 * never run fails for good there, naming the field, instead of being retried.
 *
 * Throughout job data, `shopId` is the shop's myshopify domain, as the specification has it; rows use the numeric
 * `shops.id`. Processors call the former `shopDomain` once unpacked.
 */
import { randomUUID } from 'node:crypto';
import { Queue, type JobsOptions } from 'bullmq';
import type { RedisClient } from './redis.js';
import { z } from 'zod';
import { QUEUE_NAMES, type QueueName } from '../config.js';
import { AppError, describeIssues, type ErrorCode } from '../errors.js';
import type { Logger } from '../logger.js';

export { QUEUE_NAMES, type QueueName };
export { getRedisConnection, checkRedisHealth } from './redis.js';

/** Default job options, exactly as the specification gives them. */
export const DEFAULT_JOB_OPTIONS = Object.freeze({
  removeOnComplete: 100,
  removeOnFail: 50,
  attempts: 5,
  backoff: Object.freeze({ type: 'exponential' as const, delay: 2000 }),
}) satisfies JobsOptions;

const requestId = z.string().min(1).max(128);
/**
 * The job field `shopId` is the shop's myshopify domain (`shop.myshopify.com`), as the specification's producers send
 * it; database rows use a numeric `shopId` (`shops.id`). Processors unpack it as `shopDomain` so the two never meet.
 */
const shopDomain = z
  .string()
  .min(3)
  .max(255)
  .regex(/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/i, 'must be a shop domain such as shop.myshopify.com');
const topic = z.string().regex(/^[a-z_]+\/[a-z_]+$/, 'must be a Shopify topic such as orders/paid');
/** A row id (`messages.id`, `contacts.id`, ...): a positive integer. */
const rowId = z.number().int().positive();
/**
 * `enqueuedAt` is stamped by {@link QueueRegistry.enqueueJob}; a plain BullMQ producer (the specification's examples
 * send none) gets the job's creation time, filled in by {@link parseJobData} from `job.timestamp`.
 */
const stamps = { requestId, enqueuedAt: z.string().datetime() };

/** Job names of the queues whose names are fixed (an `events` job is named after its topic). */
export const JOB_NAMES = {
  automations: ['evaluate'],
  campaigns: ['batch'],
  delivery: ['send'],
  /** `repeat` from the job schedulers, `cleanup` as in the specification's example, `run` by hand. */
  housekeeping: ['repeat', 'cleanup', 'run'],
  /** `shop`: one shop's customer sync; `reconcile`: the weekly run that queues a `shop` job per installed shop. */
  sync: ['shop', 'reconcile'],
} as const;

/** A queue's job names as a type: an `events` job is named after its topic, any other takes one of {@link JOB_NAMES}. */
export type JobName<Q extends QueueName> = Q extends keyof typeof JOB_NAMES ? (typeof JOB_NAMES)[Q][number] : string;

/** The housekeeping tasks (`housekeeping/tasks.ts` runs them). */
export const HOUSEKEEPING_TASKS = ['cleanup_old_messages', 'cleanup_events', 'retry_failed_messages', 'rollup_reports', 'reconcile'] as const;
export type HousekeepingTask = (typeof HOUSEKEEPING_TASKS)[number];

/**
 * `events`: one accepted Shopify webhook; the job name is the topic. Carries the id of the stored `events` row
 * (`storedEventId`), not the payload, so personal data lives in one place (the database) and erasure need not search
 * Redis. A producer following the specification sends `raw` instead: the processor stores it first, then processes it.
 */
export const eventsJobSchema = z
  .object({
    topic,
    /** The shop's domain (see `shopDomain` above), not `shops.id`. */
    shopId: shopDomain,
    objectId: z.string().max(255).nullable().optional(),
    /** `events.id` of the stored webhook. */
    storedEventId: rowId.optional(),
    /** The Shopify payload, for producers that did not store it (the specification's `{ topic, shopId, objectId, raw }`). */
    raw: z.record(z.string(), z.unknown()).optional(),
    /** `X-Shopify-Webhook-Id`; present for webhooks taken in over HTTP. */
    webhookId: z.string().max(255).optional(),
    /** `X-Shopify-Event-Id` (not the stored row's id). */
    eventId: z.string().max(255).optional(),
    triggeredAt: z.string().optional(),
    ...stamps,
  })
  .refine((d) => d.storedEventId !== undefined || d.raw !== undefined, {
    path: ['storedEventId'],
    message: 'needs storedEventId (a stored event) or raw (the Shopify payload)',
  });

/** `automations:evaluate`: a normalised event to evaluate against the shop's automations. */
export const automationsJobSchema = z.object({
  trigger: z.string().min(1).max(100),
  /** The shop's domain, not `shops.id`. */
  shopId: shopDomain,
  context: z.record(z.string(), z.unknown()),
  originalEvent: z
    .object({ topic, webhookId: z.string().optional(), objectId: z.string().nullable().optional() })
    .optional(),
  ...stamps,
});

/**
 * `campaigns:batch`: produce the next page of a campaign's audience. `campaignId` is `campaigns.id`; the
 * specification's example passes it as a string, so a string of digits is taken as the number it spells. Anything else
 * (its `'campaign-123'`) names no campaign and is refused, naming the field.
 */
export const campaignsJobSchema = z.object({
  campaignId: z.union([rowId, z.string().regex(/^\d{1,15}$/).transform(Number)], {
    error: 'must be a campaign id (a positive integer, or a string of digits)',
  }),
  /** The shop's domain, not `shops.id`. */
  shopId: shopDomain,
  batchSize: z.number().int().min(1).max(10_000).default(500),
  /** The campaign's generation when the job was made (bumped by send, schedule, resume): an older job stands down. */
  generation: z.number().int().min(0).optional(),
  ...stamps,
});

/**
 * `delivery:send`: send one message, exactly once. Either the message row exists (`messageId`, as automations,
 * campaigns and replies enqueue it; `messageIds`, a campaign's batch), or the job is the specification's
 * `{ shopId, recipient, template, context }`: the processor renders `template` with `context` and creates the row
 * first, keyed by the job, then sends it.
 */
export const deliveryJobSchema = z
  .object({
    /** The shop's domain, not `shops.id`. */
    shopId: shopDomain,
    messageId: rowId.optional(),
    /** A campaign's messages sent together: read, claimed and settled in one statement each (CAMPAIGN_SEND_BATCH). */
    messageIds: z.array(rowId).min(1).max(500).optional(),
    recipient: z.string().min(3).max(32).optional(),
    template: z.string().min(1).max(5000).optional(),
    context: z.record(z.string(), z.unknown()).default({}),
    /** The message's contact: customer erasure removes the customer's pending jobs by it. */
    contactId: rowId.optional(),
    /** Where the message came from, for an operator reading the job; the processor reads the message row. */
    automationId: rowId.optional(),
    campaignId: rowId.optional(),
    /** For an abandoned-checkout message: the checkout it recovers (a completed checkout cancels the send). */
    checkoutToken: z.string().min(1).max(255).optional(),
    /** Times this job has waited for a delivery report after a send whose outcome was unknown. */
    reconcileRound: z.number().int().min(0).optional(),
    ...stamps,
  })
  .superRefine((d, ctx) => {
    if (d.messageIds !== undefined) {
      if (d.messageId !== undefined) ctx.addIssue({ code: 'custom', path: ['messageIds'], message: 'not together with messageId' });
      return;
    }
    if (d.messageId !== undefined) return;
    for (const field of ['recipient', 'template'] as const) {
      if (d[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: 'required when there is no messageId' });
    }
  });

/** `housekeeping`: a maintenance task, scheduled or enqueued by hand. */
export const housekeepingJobSchema = z.object({
  task: z.enum(HOUSEKEEPING_TASKS),
  /** Limits the task to one shop: its domain, not `shops.id`. */
  shopId: shopDomain.optional(),
  ...stamps,
});

/**
 * `sync`: `shop` syncs one shop's details and customers from the Admin API (src/sync/customers.ts); `reconcile` (the
 * weekly schedule) queues `shop` for every installed shop holding an access token.
 */
export const syncJobSchema = z.object({
  /** The shop's domain, not `shops.id`; required by `shop` jobs. */
  shopId: shopDomain.optional(),
  reason: z.enum(['install', 'manual', 'reconcile']).default('manual'),
  ...stamps,
});

interface CatalogEntry<S extends z.ZodTypeAny> {
  /** What the queue is for (shown in health output and docs). */
  readonly purpose: string;
  /** The queue's job names. */
  readonly jobName: z.ZodType<string>;
  /** The job names, for error messages. */
  readonly jobNames: string;
  readonly schema: S;
  readonly jobOptions: JobsOptions;
  /** An error code more precise than INVALID_JOB_DATA when the only bad field is this one. */
  readonly fieldCodes?: Readonly<Record<string, ErrorCode>>;
}

const fixedNames = <N extends readonly [string, ...string[]]>(names: N) => ({ jobName: z.enum(names), jobNames: names.join(', ') });

export const QUEUE_CATALOG = {
  events: {
    purpose: 'Process incoming Shopify webhook events',
    jobName: topic,
    jobNames: 'a Shopify topic, e.g. orders/paid',
    schema: eventsJobSchema,
    jobOptions: DEFAULT_JOB_OPTIONS,
  },
  automations: {
    purpose: 'Evaluate automation rules and trigger delivery',
    ...fixedNames(JOB_NAMES.automations),
    schema: automationsJobSchema,
    jobOptions: DEFAULT_JOB_OPTIONS,
  },
  campaigns: {
    purpose: 'Batch process campaign audiences',
    ...fixedNames(JOB_NAMES.campaigns),
    schema: campaignsJobSchema,
    jobOptions: DEFAULT_JOB_OPTIONS,
  },
  delivery: {
    purpose: 'Send messages via the SMS provider',
    ...fixedNames(JOB_NAMES.delivery),
    schema: deliveryJobSchema,
    jobOptions: DEFAULT_JOB_OPTIONS,
  },
  housekeeping: {
    purpose: 'Maintenance and cleanup tasks',
    ...fixedNames(JOB_NAMES.housekeeping),
    schema: housekeepingJobSchema,
    fieldCodes: { task: 'UNKNOWN_HOUSEKEEPING_TASK' },
    jobOptions: DEFAULT_JOB_OPTIONS,
  },
  sync: {
    purpose: 'Sync shop details and customers from the Shopify Admin API',
    ...fixedNames(JOB_NAMES.sync),
    schema: syncJobSchema,
    // A retried sync resumes where it stopped (shop_syncs): a retry after an Admin API outage costs only the wait.
    jobOptions: DEFAULT_JOB_OPTIONS,
  },
} as const satisfies { [Q in QueueName]: CatalogEntry<z.ZodTypeAny> };

export type Catalog = typeof QUEUE_CATALOG;
/** Job data as a processor sees it (after validation and defaults). */
export type JobData<Q extends QueueName> = z.output<Catalog[Q]['schema']>;
/** Job data as a producer passes it: `requestId` optional, `enqueuedAt` stamped by `enqueueJob`. */
export type EnqueueData<Q extends QueueName> = Omit<z.input<Catalog[Q]['schema']>, 'requestId' | 'enqueuedAt'> & {
  requestId?: string;
};

export function isQueueName(name: string): name is QueueName {
  return (QUEUE_NAMES as readonly string[]).includes(name);
}

/** `req_<ms>_<random>`, the specification's request id format. */
export function newRequestId(now = Date.now()): string {
  // The first 8 hex digits of a v4 UUID are random; randomUUID draws from a cached pool, randomBytes calls into
  // OpenSSL each time (one id per request and per job: it showed in profiles).
  return `req_${now}_${randomUUID().slice(0, 8)}`;
}

/**
 * A BullMQ job id from parts. BullMQ forbids `:` in custom ids (it separates key segments) and purely numeric ids
 * (they collide with generated ones), so both are avoided here.
 */
export function jobIdFrom(...parts: Array<string | number>): string {
  return parts.map((p) => String(p).replace(/[:\s]/g, '_')).join('-');
}

/**
 * Validates job data for a queue, throwing a typed error that names each bad field. `createdAt` (the job's
 * `timestamp`) stands in for an `enqueuedAt` the producer did not stamp.
 */
export function parseJobData<Q extends QueueName>(queue: Q, name: string, data: unknown, createdAt?: number): JobData<Q> {
  const entry: CatalogEntry<z.ZodTypeAny> = QUEUE_CATALOG[queue];
  if (!entry.jobName.safeParse(name).success) {
    throw new AppError('UNKNOWN_JOB_NAME', `queue "${queue}" has no job named "${name}" (expected ${entry.jobNames})`, {
      details: { queue, name },
    });
  }
  const stamped =
    createdAt !== undefined && data && typeof data === 'object' && (data as { enqueuedAt?: unknown }).enqueuedAt === undefined
      ? { ...data, enqueuedAt: new Date(createdAt).toISOString() }
      : data;
  const parsed = entry.schema.safeParse(stamped);
  if (!parsed.success) {
    const fields = new Set(parsed.error.issues.map((i) => String(i.path[0] ?? '')));
    const [only] = fields;
    const code = fields.size === 1 && only !== undefined ? (entry.fieldCodes?.[only] ?? 'INVALID_JOB_DATA') : 'INVALID_JOB_DATA';
    throw new AppError(code, `${queue}:${name}: ${describeIssues(parsed.error.issues)}`, {
      details: { queue, name, fields: [...fields] },
    });
  }
  return parsed.data as JobData<Q>;
}

export interface QueueRegistryOptions {
  /** A producer connection (see `getRedisConnection(..., 'producer')`); shared by every Queue object. */
  connection: RedisClient;
  prefix: string;
  logger: Logger;
}

/**
 * Owns one BullMQ `Queue` per queue name, created on first use and reused, and the producer side of the catalog.
 */
export class QueueRegistry {
  private readonly queues = new Map<QueueName, Queue>();
  private closing: Promise<void> | undefined;

  constructor(private readonly options: QueueRegistryOptions) {}

  get prefix(): string {
    return this.options.prefix;
  }

  get connection(): RedisClient {
    return this.options.connection;
  }

  /** The Queue object for a name (created once). Unknown names are a typed error. */
  get(name: string): Queue {
    if (!isQueueName(name)) {
      throw new AppError('UNKNOWN_QUEUE', `unknown queue "${name}" (known: ${QUEUE_NAMES.join(', ')})`, {
        details: { queue: name },
      });
    }
    if (this.closing) throw new AppError('SHUTTING_DOWN', 'queues are closing');
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, {
        connection: this.options.connection,
        prefix: this.options.prefix,
        defaultJobOptions: QUEUE_CATALOG[name].jobOptions,
      });
      queue.on('error', (err) => this.options.logger.error({ queue: name, err: err.message }, 'Queue error'));
      this.queues.set(name, queue);
    }
    return queue;
  }

  all(): Queue[] {
    return QUEUE_NAMES.map((n) => this.get(n));
  }

  /**
   * Validates and enqueues a job; returns its id. Stamps `requestId` (the caller's, else a new one) and `enqueuedAt`.
   * An unknown queue, an unknown job name or invalid data throws an {@link AppError} and enqueues nothing.
   */
  async enqueueJob<Q extends QueueName>(queue: Q, name: JobName<Q>, data: EnqueueData<Q>, opts: JobsOptions = {}): Promise<string> {
    const q = this.get(queue);
    const stamped = { ...data, requestId: data.requestId ?? newRequestId(), enqueuedAt: new Date().toISOString() };
    const valid = parseJobData(queue, name, stamped);
    if (opts.jobId !== undefined && (opts.jobId.includes(':') || /^\d+$/.test(opts.jobId))) {
      throw new AppError('INVALID_JOB_DATA', `jobId "${opts.jobId}" must not contain ":" nor be only digits`);
    }
    const job = await q.add(name, valid, opts);
    if (!job.id) throw new AppError('INTERNAL', `BullMQ returned no id for ${queue}:${name}`);
    return job.id;
  }

  /** Closes every Queue object; safe to call more than once. The connection belongs to the caller. */
  close(): Promise<void> {
    this.closing ??= Promise.allSettled([...this.queues.values()].map((q) => q.close())).then(() => undefined);
    return this.closing;
  }
}
