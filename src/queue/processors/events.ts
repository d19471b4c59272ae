/**
 * `events`: thin. Unpacks the job and runs {@link processEvent} (src/events/process.ts, the stored webhook carried
 * out), handing it what belongs to BullMQ: the job's id, and the replacement of a specification-shaped job's `raw`
 * payload by the id of the row it was stored as, so no copy of the payload stays in Redis.
 */
import type { Job } from 'bullmq';
import { processEvent, type EventOutcome, type EventsDeps } from '../../events/process.js';
import type { JobData } from '../queues.js';

export function processEventJob(job: Job, data: JobData<'events'>, deps: Omit<EventsDeps, 'onStored'>): Promise<EventOutcome> {
  return processEvent(
    data,
    {
      ...deps,
      onStored: async (storedEventId) => {
        const { raw: _stored, ...rest } = job.data as Record<string, unknown>;
        await job.updateData({ ...rest, storedEventId });
      },
    },
    String(job.id),
  );
}
