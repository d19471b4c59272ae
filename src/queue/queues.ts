/**
 * The queue catalog: every queue, its job names, the schema of its job data and its job options, in one place.
 * Producers enqueue through {@link QueueRegistry.enqueueJob}, which validates against the same schemas the workers
 * validate with, so a producer cannot send a payload its consumer will not accept.
 */
import { randomBytes } from 'node:crypto';
import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { QUEUE_NAMES, type QueueName } from '../config.js';
import { AppError, describeIssues } from '../errors.js';
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
const shopDomain = z
  .string()
  .min(3)
  .max(255)
  .regex(/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/i, 'must be a shop domain such as shop.myshopify.com');
const topic = z.string().regex(/^[a-z_]+\/[a-z_]+$/, 'must be a Shopify topic such as orders/paid');
const stamps = { requestId, enqueuedAt: z.string().datetime() };

/** `events`: one job per accepted Shopify webhook; the job name is the topic. */
export const eventsJobSchema = z.object({
  topic,
  shopId: shopDomain,
  objectId: z.string().max(255).nullable().optional(),
  raw: z.record(z.string(), z.unknown()),
  /** `X-Shopify-Webhook-Id`; present for webhooks taken in over HTTP, used to mark the stored event processed. */
  webhookId: z.string().max(255).optional(),
  eventId: z.string().max(255).optional(),
  triggeredAt: z.string().optional(),
  ...stamps,
});

/** `automations:evaluate`: a normalised event to evaluate against the shop's automations. */
export const automationsJobSchema = z.object({
  trigger: z.string().min(1).max(100),
  shopId: shopDomain,
  context: z.record(z.string(), z.unknown()),
  originalEvent: z
    .object({ topic, webhookId: z.string().optional(), objectId: z.string().nullable().optional() })
    .optional(),
  ...stamps,
});

/** `campaigns:batch`: produce the next page of a campaign's audience. */
export const campaignsJobSchema = z.object({
  campaignId: z.string().min(1).max(100),
  shopId: shopDomain,
  batchSize: z.number().int().min(1).max(10_000).default(500),
  /** The campaign's generation when the job was made (bumped by send, schedule, resume): an older job stands down. */
  generation: z.number().int().min(0).optional(),
  ...stamps,
});

/** `delivery:send`: render and send one message. */
export const deliveryJobSchema = z.object({
  shopId: shopDomain,
  recipient: z.string().max(32).optional(),
  contactId: z.string().max(40).optional(),
  automationId: z.string().max(40).optional(),
  campaignId: z.string().max(40).optional(),
  messageId: z.string().max(40).optional(),
  template: z.string().max(5000).optional(),
  context: z.record(z.string(), z.unknown()).default({}),
  /** Times this job has waited for a delivery report after a send whose outcome was unknown. */
  reconcileRound: z.number().int().min(0).optional(),
  ...stamps,
});

/** `housekeeping`: a maintenance task, scheduled or enqueued by hand. */
export const housekeepingJobSchema = z.object({
  task: z.string().min(1).max(100),
  shopId: shopDomain.optional(),
  ...stamps,
});

interface CatalogEntry<S extends z.ZodTypeAny> {
  /** What the queue is for (shown in health output and docs). */
  readonly purpose: string;
  /** Accepts a job name for this queue. */
  readonly isJobName: (name: string) => boolean;
  readonly jobNames: string;
  readonly schema: S;
  readonly jobOptions: JobsOptions;
}

const fixedNames = (...names: string[]) => ({
  isJobName: (n: string) => names.includes(n),
  jobNames: names.join(', '),
});

export const QUEUE_CATALOG = {
  events: {
    purpose: 'Process incoming Shopify webhook events',
    isJobName: (n: string) => topic.safeParse(n).success,
    jobNames: 'a Shopify topic, e.g. orders/paid',
    schema: eventsJobSchema,
    jobOptions: DEFAULT_JOB_OPTIONS,
  },
  automations: {
    purpose: 'Evaluate automation rules and trigger delivery',
    ...fixedNames('evaluate'),
    schema: automationsJobSchema,
    jobOptions: DEFAULT_JOB_OPTIONS,
  },
  campaigns: {
    purpose: 'Batch process campaign audiences',
    ...fixedNames('batch'),
    schema: campaignsJobSchema,
    jobOptions: DEFAULT_JOB_OPTIONS,
  },
  delivery: {
    purpose: 'Send messages via the SMS provider',
    ...fixedNames('send'),
    schema: deliveryJobSchema,
    jobOptions: DEFAULT_JOB_OPTIONS,
  },
  housekeeping: {
    purpose: 'Maintenance and cleanup tasks',
    ...fixedNames('repeat', 'cleanup', 'run'),
    schema: housekeepingJobSchema,
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
  return `req_${now}_${randomBytes(4).toString('hex')}`;
}

/**
 * A BullMQ job id from parts. BullMQ forbids `:` in custom ids (it separates key segments) and purely numeric ids
 * (they collide with generated ones), so both are avoided here.
 */
export function jobIdFrom(...parts: Array<string | number>): string {
  return parts.map((p) => String(p).replace(/[:\s]/g, '_')).join('-');
}

/** Validates job data for a queue, throwing a typed error that names each bad field. */
export function parseJobData<Q extends QueueName>(queue: Q, name: string, data: unknown): JobData<Q> {
  const entry: CatalogEntry<z.ZodTypeAny> = QUEUE_CATALOG[queue];
  if (!entry.isJobName(name)) {
    throw new AppError('UNKNOWN_JOB_NAME', `queue "${queue}" has no job named "${name}" (expected ${entry.jobNames})`, {
      details: { queue, name },
    });
  }
  const parsed = entry.schema.safeParse(data);
  if (!parsed.success) {
    throw new AppError('INVALID_JOB_DATA', `${queue}:${name}: ${describeIssues(parsed.error.issues)}`, {
      details: { queue, name },
    });
  }
  return parsed.data as JobData<Q>;
}

export interface QueueRegistryOptions {
  /** A producer connection (see `getRedisConnection(..., 'producer')`); shared by every Queue object. */
  connection: Redis;
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

  get connection(): Redis {
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
  async enqueueJob<Q extends QueueName>(queue: Q, name: string, data: EnqueueData<Q>, opts: JobsOptions = {}): Promise<string> {
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
