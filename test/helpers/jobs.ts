/** Waiting on BullMQ job state in tests: polls the job's real state in Redis, never sleeps a fixed time. */
import type { Job, JobState, Queue } from 'bullmq';
import { vi } from 'vitest';

/** Resolves with the job once it is in `state`; fails the test with the last state seen after `timeout` ms. */
export async function waitForJobState(queue: Queue, jobId: string, state: JobState, timeout = 10_000): Promise<Job> {
  return vi.waitFor(
    async () => {
      const current = await queue.getJobState(jobId);
      if (current !== state) throw new Error(`job ${queue.name}:${jobId} is "${current}", waiting for "${state}"`);
      const job = await queue.getJob(jobId);
      if (!job) throw new Error(`job ${queue.name}:${jobId} vanished`);
      return job;
    },
    { timeout, interval: 20 },
  );
}
