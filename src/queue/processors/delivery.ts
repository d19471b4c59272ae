/**
 * `delivery:send`: thin. Unpacks the job and runs {@link deliverMessage} (src/messages/delivery.ts, the exactly-once
 * send), handing it BullMQ's ways of putting a job off: a delay (`moveToDelayed`), a reconcile round kept in the job's
 * data, and the queue-wide rate limit for a provider's 429.
 */
import { DelayedError, Worker, type Job } from 'bullmq';
import { deliverMessage, type DeliveryControl, type DeliveryDeps, type DeliveryOutcome } from '../../messages/delivery.js';
import { jobIdFrom, type JobData, type QueueRegistry } from '../queues.js';

export function processDelivery(
  job: Job,
  data: JobData<'delivery'>,
  deps: DeliveryDeps,
  queue: { queues: QueueRegistry; token: string | undefined },
): Promise<DeliveryOutcome> {
  return deliverMessage(data, deps, controlOf(job, queue));
}

function controlOf(job: Job, queue: { queues: QueueRegistry; token: string | undefined }): DeliveryControl {
  return {
    jobKey: jobIdFrom(String(job.id), job.timestamp),
    attemptsMade: job.attemptsMade,
    maxAttempts: job.opts.attempts ?? 1,
    reconcileRound: Number(job.data?.reconcileRound ?? 0),
    async deferUntil(at, reconcileRound) {
      if (reconcileRound !== undefined) await job.updateData({ ...job.data, reconcileRound });
      await job.moveToDelayed(at.getTime(), queue.token);
      throw new DelayedError();
    },
    async rateLimited(ms) {
      await queue.queues.get('delivery').rateLimit(ms);
      throw Worker.RateLimitError();
    },
  };
}
