/**
 * Finding and removing a shop's (or a customer's) jobs in the queues: pending work cancelled at uninstall, and job data
 * holding personal data removed at redaction. Active jobs are left alone (their lock belongs to a worker); each
 * processor re-checks the shop and the contact when it runs.
 */
import type { Job, JobType } from 'bullmq';
import type { Logger } from '../logger.js';
import type { QueueName, QueueRegistry } from '../queue/queues.js';

/** Jobs not yet started. */
export const PENDING_STATES: JobType[] = ['waiting', 'delayed', 'prioritized', 'waiting-children'];
/** Jobs kept after they ran (`removeOnComplete` / `removeOnFail` keep the last ones, data included). */
export const FINISHED_STATES: JobType[] = ['completed', 'failed'];

/**
 * Removes the jobs of `queueNames` in `states` that `match` accepts; returns how many per queue. Ids are collected
 * first and removed afterwards, so paging is not disturbed by the removals.
 */
export async function removeMatchingJobs(
  queues: QueueRegistry,
  queueNames: readonly QueueName[],
  states: JobType[],
  match: (job: Job) => boolean,
  logger: Logger,
  pageSize = 500,
): Promise<Record<string, number>> {
  const removed: Record<string, number> = {};
  for (const name of queueNames) {
    const queue = queues.get(name);
    const found: Job[] = [];
    for (let start = 0; ; start += pageSize) {
      const page = await queue.getJobs(states, start, start + pageSize - 1, true);
      for (const job of page) if (job && match(job)) found.push(job);
      if (page.length < pageSize) break;
    }
    removed[name] = await removeEach(found, logger);
  }
  return removed;
}

/** Removes each job unless a worker holds it; returns how many went. */
async function removeEach(jobs: Iterable<Job>, logger: Logger): Promise<number> {
  let n = 0;
  for (const job of jobs) {
    try {
      await job.remove();
      n++;
    } catch (err) {
      // Taken by a worker meanwhile: its processor re-checks the shop, the contact and the stored event first.
      logger.debug({ queue: job.queueName, jobId: job.id, err: (err as Error).message }, 'Job not removed (it started meanwhile)');
    }
  }
  return n;
}

/** Removes the jobs of `queueName` with these ids that are not running; returns how many went. */
export async function removeJobsById(queues: QueueRegistry, queueName: QueueName, jobIds: readonly string[], logger: Logger): Promise<number> {
  const queue = queues.get(queueName);
  const found: Job[] = [];
  for (const id of new Set(jobIds)) {
    const job = await queue.getJob(id);
    if (job) found.push(job);
  }
  return removeEach(found, logger);
}

/** True when any of the job ids is waiting, delayed, active or otherwise still to run. */
export async function anyJobAlive(queues: QueueRegistry, queue: QueueName, jobIds: readonly string[]): Promise<boolean> {
  const q = queues.get(queue);
  for (const id of jobIds) {
    const state = await q.getJobState(id);
    if (state !== 'unknown' && state !== 'completed' && state !== 'failed') return true;
  }
  return false;
}
