/**
 * A render thread of the pool in ./renderPool.ts: one renderer, rendering one task at a time — one template with one
 * or more sets of variables (a campaign page's recipients in one message, not one message each). Errors go back as
 * their code and message (an AppError does not survive the structured clone).
 */
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { isAppError } from '../errors.js';
import { createRenderer, type RendererOptions, type RenderItem, type RenderResult } from './render.js';

export interface RenderTask {
  id: number;
  template: string;
  items: RenderItem[];
}

export type RenderReply =
  | { id: number; ok: true; results: RenderResult[] }
  | { id: number; ok: false; code: 'TEMPLATE_INVALID' | 'TEMPLATE_RENDER_FAILED'; message: string };

export interface RenderWorkerData {
  renderer: RendererOptions;
  /** Nice value of this thread (see RenderPoolOptions.nice). */
  nice: number;
}

const data = workerData as RenderWorkerData;
// On Linux, priority 0 names the calling thread (nice values are per thread), so only this render thread changes.
// Where that is not allowed the thread simply runs at normal priority; the pool's deadline still bounds each render.
if (data.nice !== 0) {
  try {
    os.setPriority(0, data.nice);
  } catch {
    // not permitted here
  }
}

const renderer = createRenderer(data.renderer);
parentPort!.postMessage('ready');

parentPort!.on('message', (task: RenderTask) => {
  renderer.renderMany(task.template, task.items).then(
    (results) => parentPort!.postMessage({ id: task.id, ok: true, results } satisfies RenderReply),
    (err: unknown) =>
      parentPort!.postMessage({
        id: task.id,
        ok: false,
        code: isAppError(err, 'TEMPLATE_INVALID') ? 'TEMPLATE_INVALID' : 'TEMPLATE_RENDER_FAILED',
        message: err instanceof Error ? err.message : String(err),
      } satisfies RenderReply),
  );
});
