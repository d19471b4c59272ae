/**
 * Template previews per shop: each one renders a template the merchant wrote, so a shop gets
 * PREVIEW_RATE_LIMIT_MAX of them per RATE_LIMIT_WINDOW_MS (far below its general API budget), counted in Redis across
 * API processes. Over it: 429 RATE_LIMITED with the seconds to wait.
 */
import { AppError } from '../errors.js';
import type { AppDeps } from './app.js';
import { createWindowCounter, retrySeconds, type WindowCounter } from './windowCounter.js';

const counters = new WeakMap<AppDeps, WindowCounter>();

/** Counts one preview for the shop; throws RATE_LIMITED when it is over its budget. */
export async function takePreview(deps: AppDeps, shopId: number): Promise<void> {
  let counter = counters.get(deps);
  if (!counter) {
    counter = createWindowCounter(deps.queues.connection, `${deps.config.redis.prefix}:preview:`, deps.config.rateLimit.windowMs);
    counters.set(deps, counter);
  }
  const { count, resetMs } = await counter.hit(String(shopId));
  const max = deps.config.render.previewMax;
  if (count > max) {
    throw new AppError('RATE_LIMITED', `too many template previews: at most ${max} per ${Math.round(counter.windowMs / 1000)} s per shop; retry in ${retrySeconds(resetMs)} s`);
  }
}
