/** Queue depth and processing figures read from Redis (BullMQ's job counts and per-minute metrics). */
import type { Queue } from 'bullmq';

export interface QueueDepth {
  waiting: number;
  active: number;
  completed: number;
  failed: number;
  delayed: number;
  prioritized: number;
  /** Worker connections serving this queue, across every process. */
  workers: number;
}

export interface ProcessingStats {
  /** Jobs completed / failed since metrics began (BullMQ worker metrics). */
  completedTotal: number;
  failedTotal: number;
  /** Mean per minute over the last 15 minutes. */
  completedPerMinute: number;
  failedPerMinute: number;
}

export async function collectQueueMetrics(
  queues: Queue[],
  timeoutMs: number,
): Promise<{ queues: Record<string, QueueDepth>; processing: Record<string, ProcessingStats> }> {
  const read = async (q: Queue) => {
    const [counts, workers, completed, failed] = await Promise.all([
      q.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized'),
      q.getWorkersCount(),
      q.getMetrics('completed', 0, 14),
      q.getMetrics('failed', 0, 14),
    ]);
    const perMinute = (data: number[]) => (data.length ? Math.round((data.reduce((a, b) => a + b, 0) / 15) * 100) / 100 : 0);
    return {
      depth: {
        waiting: counts.waiting ?? 0,
        active: counts.active ?? 0,
        completed: counts.completed ?? 0,
        failed: counts.failed ?? 0,
        delayed: counts.delayed ?? 0,
        prioritized: counts.prioritized ?? 0,
        workers,
      },
      processing: {
        completedTotal: completed.meta.count,
        failedTotal: failed.meta.count,
        completedPerMinute: perMinute(completed.data),
        failedPerMinute: perMinute(failed.data),
      },
    };
  };
  let timer: NodeJS.Timeout | undefined;
  const all = await Promise.race([
    Promise.all(queues.map(read)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`queue metrics took longer than ${timeoutMs} ms`)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  const result = { queues: {} as Record<string, QueueDepth>, processing: {} as Record<string, ProcessingStats> };
  queues.forEach((q, i) => {
    result.queues[q.name] = all[i]!.depth;
    result.processing[q.name] = all[i]!.processing;
  });
  return result;
}
