/**
 * The housekeeping job schedulers (BullMQ 6 `upsertJobScheduler`). A scheduler is keyed by its id in Redis, so every
 * process that serves `housekeeping` can register them at start: two processes starting together leave one scheduler
 * per task, and a changed pattern replaces the old one.
 */
import type { Queue } from 'bullmq';
import type { Logger } from '../logger.js';
import type { QueueRegistry } from '../queue/queues.js';
import { HOUSEKEEPING_TASKS, type HousekeepingTask } from './tasks.js';

/** Cron patterns (UTC): cleanups daily at night, retries every 15 min, rollups hourly, the sweep every 5 min. */
export const HOUSEKEEPING_SCHEDULES: Readonly<Record<HousekeepingTask, string>> = Object.freeze({
  cleanup_old_messages: '17 3 * * *',
  cleanup_events: '37 3 * * *',
  retry_failed_messages: '*/15 * * * *',
  rollup_reports: '5 * * * *',
  reconcile: '*/5 * * * *',
});

/** Job name of scheduled runs (the catalog also accepts `cleanup` and `run` for runs enqueued by hand). */
export const SCHEDULED_JOB_NAME = 'repeat';

export const schedulerId = (task: HousekeepingTask) => `housekeeping-${task}`;

/**
 * The weekly sync reconcile (Sundays 04:23 UTC): a `sync:reconcile` job that queues a customer sync of every installed
 * shop, catching whatever webhooks missed. A scheduler of the `sync` queue, registered with the housekeeping ones.
 */
export const SYNC_RECONCILE_SCHEDULE = '23 4 * * 0';
export const SYNC_RECONCILE_SCHEDULER_ID = 'sync-reconcile';

/** Registers (or updates) one scheduler per task. Idempotent across calls and processes. */
export async function registerHousekeepingSchedules(queues: QueueRegistry, logger: Logger, now = new Date()): Promise<string[]> {
  const queue = queues.get('housekeeping');
  const ids: string[] = [];
  for (const task of HOUSEKEEPING_TASKS) {
    const id = schedulerId(task);
    await queue.upsertJobScheduler(
      id,
      { pattern: HOUSEKEEPING_SCHEDULES[task], tz: 'UTC' },
      {
        name: SCHEDULED_JOB_NAME,
        // The template is validated by the worker like any job; each run's logs carry the job id besides this.
        data: { task, requestId: `sched_${task}`, enqueuedAt: now.toISOString() },
        // A failed run is retried a little, then recorded; the next tick runs the task anyway.
        opts: { attempts: 3, backoff: { type: 'exponential', delay: 10_000 }, removeOnComplete: 50, removeOnFail: 50 },
      },
    );
    ids.push(id);
  }
  await queues.get('sync').upsertJobScheduler(
    SYNC_RECONCILE_SCHEDULER_ID,
    { pattern: SYNC_RECONCILE_SCHEDULE, tz: 'UTC' },
    {
      name: 'reconcile',
      data: { reason: 'reconcile', requestId: 'sched_sync_reconcile', enqueuedAt: now.toISOString() },
      opts: { attempts: 3, backoff: { type: 'exponential', delay: 10_000 }, removeOnComplete: 10, removeOnFail: 10 },
    },
  );
  ids.push(SYNC_RECONCILE_SCHEDULER_ID);
  logger.info({ schedulers: ids.length }, 'Housekeeping schedules registered');
  return ids;
}

/** Removes our schedulers (HOUSEKEEPING_SCHEDULES=false), leaving any other scheduler of the queue alone. */
export async function removeHousekeepingSchedules(queues: QueueRegistry): Promise<number> {
  const queue: Queue = queues.get('housekeeping');
  let removed = 0;
  for (const task of HOUSEKEEPING_TASKS) if (await queue.removeJobScheduler(schedulerId(task))) removed++;
  if (await queues.get('sync').removeJobScheduler(SYNC_RECONCILE_SCHEDULER_ID)) removed++;
  return removed;
}
