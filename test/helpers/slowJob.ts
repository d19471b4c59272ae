/**
 * A processor that holds its job until the test lets go, for shutdown tests. Its whole state lives in Redis under the
 * queue prefix, so a worker in a child process and one in the test process share it (and teardown deletes it).
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Processor } from '../../src/queue/worker.js';

export interface SlowJobKeys {
  /** INCR when a job starts. */
  started: string;
  /** INCR when a job finishes. */
  done: string;
  /** Jobs wait while this key is absent. */
  release: string;
  /** RPUSH of each job id as it starts, to tell which jobs ran. */
  ran: string;
}

export function slowJobKeys(prefix: string): SlowJobKeys {
  return { started: `${prefix}:test:started`, done: `${prefix}:test:done`, release: `${prefix}:test:release`, ran: `${prefix}:test:ran` };
}

export function slowProcessor(prefix: string): Processor<'events'> {
  const keys = slowJobKeys(prefix);
  return async (job, _data, ctx) => {
    const redis = ctx.queues.connection;
    await redis.multi().incr(keys.started).rpush(keys.ran, String(job.id)).exec();
    // Waiting on state the test controls, polled every 20 ms.
    while (!(await redis.exists(keys.release))) await delay(20);
    await redis.incr(keys.done);
    return { released: true };
  };
}
