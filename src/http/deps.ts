/**
 * What the HTTP app and its routes are built from. A module of its own so that routes import it without importing
 * app.ts, which imports them.
 */
import type { Config } from '../config.js';
import type { Database } from '../db/client.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Renderer } from '../messages/render.js';
import type { DeadLetterQueue } from '../queue/deadLetters.js';
import type { ServiceMetrics } from '../queue/metrics.js';
import type { QueueRegistry } from '../queue/queues.js';
import type { WorkerPool } from '../queue/worker.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  db: Database;
  queues: QueueRegistry;
  deadLetters: DeadLetterQueue;
  /** The workers of this process, if it runs any (for `/queue/health`). */
  workers?: WorkerPool;
  /** Prometheus metrics shared with this process's workers; the app makes its own when absent. */
  metrics?: ServiceMetrics;
  /**
   * The renderer of merchant templates (previews, estimates, campaign test sends): the process's render-thread pool.
   * The app starts its own (and closes it with itself) when absent.
   */
  renderer?: Renderer;
}

/** The app's renderer; `buildApp` (app.ts) always sets one. */
export function appRenderer(deps: AppDeps): Renderer {
  if (!deps.renderer) throw new AppError('INTERNAL', 'the app was built without a renderer');
  return deps.renderer;
}

/** Nice value of the API's render threads: a merchant's preview never takes CPU from webhook intake. */
export const API_RENDER_NICE = 10;

/** Render-pool options from the configuration. */
export function renderPoolOptions(config: Config) {
  return { size: config.render.poolSize, timeoutMs: config.render.timeoutMs, queueMax: config.render.queueMax };
}
