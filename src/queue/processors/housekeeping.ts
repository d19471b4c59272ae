/**
 * `housekeeping`: scheduled maintenance (`repeat`, from the job schedulers) or a task enqueued by hand (`cleanup`,
 * `run`) — `{task, shopId?}` → the task function, whose counts are the job's return value. The catalog knows the
 * tasks: an unknown one is refused at enqueue, or by the worker on the first attempt (`UNKNOWN_HOUSEKEEPING_TASK`),
 * and goes to the dead letters at once instead of retrying. `shopId` is the shop's domain.
 */
import { runHousekeepingTask, type HousekeepingDeps, type TaskResult } from '../../housekeeping/tasks.js';
import type { JobData } from '../queues.js';

export async function processHousekeeping(data: JobData<'housekeeping'>, deps: HousekeepingDeps): Promise<TaskResult> {
  const started = Date.now();
  const result = await runHousekeepingTask(data.task, { shopDomain: data.shopId, requestId: data.requestId }, deps);
  deps.logger.info({ task: data.task, ms: Date.now() - started, result }, 'Housekeeping task done');
  return result;
}
