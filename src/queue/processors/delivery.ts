/**
 * `delivery:send`: thin. Unpacks the job and runs {@link deliverMessage} (src/messages/delivery.ts, the exactly-once
 * send), or {@link deliverMessages} for a campaign's batch (`messageIds`), handing them BullMQ's ways of putting a job
 * off: a delay (`moveToDelayed`), a reconcile round kept in the job's data, the queue-wide rate limit for a provider's
 * 429, and one-message jobs for what a batch leaves to the one-message path.
 */
import { DelayedError, Worker, type Job } from 'bullmq';
import {
  deliverMessage,
  deliverMessages,
  type BatchDeliveryControl,
  type BatchOutcome,
  type DeliveryDeps,
  type DeliveryOutcome,
} from '../../messages/delivery.js';
import { jobIdFrom, parseJobData, type JobData, type QueueRegistry } from '../queues.js';

export function processDelivery(
  job: Job,
  data: JobData<'delivery'>,
  deps: DeliveryDeps,
  queue: { queues: QueueRegistry; token: string | undefined },
): Promise<DeliveryOutcome | BatchOutcome> {
  const control = controlOf(job, data, queue);
  return data.messageIds ? deliverMessages(data.messageIds, data, deps, control) : deliverMessage(data, deps, control);
}

function controlOf(job: Job, data: JobData<'delivery'>, queue: { queues: QueueRegistry; token: string | undefined }): BatchDeliveryControl {
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
    async handOff(items) {
      const now = Date.now();
      const enqueuedAt = new Date(now).toISOString();
      await queue.queues.get('delivery').addBulk(
        items.map((h) => ({
          name: 'send',
          data: parseJobData('delivery', 'send', {
            shopId: data.shopId,
            messageId: h.messageId,
            ...(h.contactId !== null ? { contactId: h.contactId } : {}),
            ...(h.campaignId !== null ? { campaignId: h.campaignId } : {}),
            ...(h.reconcileRound > 0 ? { reconcileRound: h.reconcileRound } : {}),
            requestId: data.requestId,
            enqueuedAt,
          }),
          opts: {
            jobId: jobIdFrom('msg', h.messageId),
            ...(job.opts.priority ? { priority: job.opts.priority } : {}),
            ...(h.at.getTime() > now ? { delay: h.at.getTime() - now } : {}),
          },
        })),
      );
    },
  };
}
