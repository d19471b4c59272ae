/**
 * The dead-letter queue. BullMQ has none: its failed set is trimmed by `removeOnFail`. So a job that fails for good is
 * written to the `dead_letters` table, which nothing trims but an operator's purge.
 *
 * Durability: the worker writes the dead letter *before* it lets BullMQ fail the job (see `worker.ts`). If the process
 * dies in between, the job's lock expires, the job is picked up again as stalled, fails again and the write is
 * repeated; `insertDeadLetter` is idempotent per job instance. Jobs failed by BullMQ itself (too many stalls) are caught
 * by the worker's `failed` listener and by {@link DeadLetterQueue.sweep} at worker start.
 */
import { UnrecoverableError, type Job, type Queue } from 'bullmq';
import type { Db } from '../db/client.js';
import {
  countDeadLetters,
  deleteDeadLetter,
  getDeadLetter,
  insertDeadLetter,
  listDeadLetters,
  markDeadLetterReplayed,
  purgeDeadLetters,
  type DeadLetterFilter,
} from '../db/deadLetters.js';
import { getEvent, getEventById } from '../db/events.js';
import type { DeadLetter } from '../db/schema.js';
import { AppError, isAppError, isPermanentFailure, safeErrorMessage, safeErrorStack } from '../errors.js';
import type { Logger } from '../logger.js';
import { isQueueName, jobIdFrom, type QueueName, type QueueRegistry } from './queues.js';

/** A failure is final when BullMQ will not try the job again. */
export function isFinalFailure(job: Pick<Job, 'attemptsMade' | 'opts'>, err: unknown, attemptsMadeIncludesThis = false): boolean {
  if (err instanceof UnrecoverableError || (err as Error | undefined)?.name === 'UnrecoverableError') return true;
  if (isPermanentFailure(err)) return true;
  const made = job.attemptsMade + (attemptsMadeIncludesThis ? 0 : 1);
  return made >= (job.opts.attempts ?? 1);
}

function errorCodeOf(err: unknown): string | null {
  if (isAppError(err)) return err.code;
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') return code;
  const name = (err as Error | undefined)?.name;
  return name && name !== 'Error' ? name : null;
}

/**
 * A webhook's payload is customer data (phone, e-mail, names). The `events` table keeps it, under retention and
 * erasure; a dead letter of a job that came from a stored webhook keeps only the reference (`shopId`, `webhookId`) and
 * {@link DeadLetterQueue.replay} reads the payload back. Jobs enqueued by hand have no stored webhook: theirs is kept.
 */
function withoutStoredPayload(queue: QueueName, data: Record<string, unknown>): Record<string, unknown> {
  if (queue !== 'events' || typeof data.webhookId !== 'string' || data.raw === undefined) return data;
  const { raw: _payload, ...rest } = data;
  return { ...rest, payloadStoredWith: 'events' };
}

export class DeadLetterQueue {
  constructor(private readonly deps: { db: Db; queues: QueueRegistry; logger: Logger }) {}

  /** Records a job's final failure. Returns the dead letter id. */
  async record(queue: QueueName, job: Job, err: unknown, attemptsMade = job.attemptsMade + 1): Promise<number> {
    return (await this.write(queue, job, err, attemptsMade)).id;
  }

  private async write(queue: QueueName, job: Job, err: unknown, attemptsMade: number): Promise<{ id: number; created: boolean }> {
    const error = err instanceof Error ? err : new Error(String(err));
    const data = withoutStoredPayload(queue, (job.data ?? {}) as Record<string, unknown>);
    const { id, created } = await insertDeadLetter(this.deps.db, {
      queue,
      jobName: job.name,
      jobId: String(job.id),
      jobCreatedAt: new Date(job.timestamp),
      data,
      errorCode: errorCodeOf(err),
      // A failed query's message holds its parameters (a phone, an e-mail): the dead letter keeps neither.
      errorMessage: safeErrorMessage(error) || String(err),
      stack: safeErrorStack(error),
      attemptsMade,
      maxAttempts: job.opts.attempts ?? 1,
      requestId: typeof data.requestId === 'string' ? data.requestId : null,
      shopId: typeof data.shopId === 'string' ? data.shopId : null,
    });
    if (created) {
      this.deps.logger.warn(
        { deadLetterId: id, queue, jobId: job.id, jobName: job.name, requestId: data.requestId, shopId: data.shopId, errorCode: errorCodeOf(err) },
        'Job dead-lettered',
      );
    }
    return { id, created };
  }

  /**
   * Records every job still in a queue's failed set that is not recorded yet; returns how many it added. Covers
   * failures that happened while the recording worker was down (or that BullMQ decided without running the processor).
   *
   * Every job in the failed set failed for good: BullMQ parks a job there only once it will not retry it. Its attempt
   * count says nothing about that (an `UnrecoverableError` or too many stalls fail a job with attempts to spare).
   */
  async sweep(queueName: QueueName, queue: Queue, limit = 500): Promise<number> {
    const failed = await queue.getFailed(0, limit - 1);
    let recorded = 0;
    for (const job of failed) {
      if (!job) continue;
      const reason = new Error(job.failedReason || 'failed');
      if (job.stacktrace?.length) reason.stack = job.stacktrace[job.stacktrace.length - 1];
      const { created } = await this.write(queueName, job, reason, job.attemptsMade);
      if (created) recorded++;
    }
    return recorded;
  }

  list(filter: DeadLetterFilter & { limit?: number; afterId?: number }): Promise<DeadLetter[]> {
    return listDeadLetters(this.deps.db, filter);
  }

  get(id: number): Promise<DeadLetter | undefined> {
    return getDeadLetter(this.deps.db, id);
  }

  count(filter: DeadLetterFilter = {}): Promise<number> {
    return countDeadLetters(this.deps.db, filter);
  }

  /** Puts the job back on its queue with its data and request id, under a new job id. Returns that id. */
  async replay(id: number): Promise<{ jobId: string; queue: QueueName }> {
    const row = await this.get(id);
    if (!row) throw new AppError('NOT_FOUND', `dead letter ${id} does not exist`, { details: { id } });
    if (!isQueueName(row.queue)) throw new AppError('UNKNOWN_QUEUE', `dead letter ${id} names unknown queue "${row.queue}"`);
    const { enqueuedAt: _ignored, ...stored } = row.data;
    const data = await this.withPayload(row, stored);
    const jobId = await this.deps.queues.enqueueJob(row.queue, row.jobName, data as never, {
      jobId: jobIdFrom('replay', row.id, row.replayCount + 1),
    });
    await markDeadLetterReplayed(this.deps.db, row.id, jobId);
    this.deps.logger.info({ deadLetterId: id, queue: row.queue, jobId, requestId: row.requestId, shopId: row.shopId }, 'Dead letter replayed');
    return { jobId, queue: row.queue };
  }

  /**
   * An `events` dead letter replays the stored event it names (`storedEventId`), or has the payload left out of it put
   * back from the stored webhook; either way the event must still be stored.
   */
  private async withPayload(row: DeadLetter, data: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (row.queue !== 'events' || typeof data.shopId !== 'string') return data;
    const byId = typeof data.storedEventId === 'number';
    if (!byId && (data.raw !== undefined || typeof data.webhookId !== 'string')) return data;
    const event = byId ? await getEventById(this.deps.db, data.storedEventId as number) : await getEvent(this.deps.db, data.shopId, data.webhookId as string);
    if (!event?.payload) {
      throw new AppError('NOT_FOUND', `dead letter ${row.id}: the webhook it replays is no longer stored (retention or erasure)`, { details: { id: row.id } });
    }
    return byId ? data : { ...data, raw: event.payload };
  }

  async remove(id: number): Promise<boolean> {
    return deleteDeadLetter(this.deps.db, id);
  }

  async purge(filter: DeadLetterFilter): Promise<number> {
    const n = await purgeDeadLetters(this.deps.db, filter);
    this.deps.logger.info({ ...filter, purged: n }, 'Dead letters purged');
    return n;
  }
}
