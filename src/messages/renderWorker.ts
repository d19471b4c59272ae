/**
 * A render thread of the pool in ./renderPool.ts: one renderer, rendering one template at a time. Errors go back as
 * their code and message (an AppError does not survive the structured clone).
 */
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { isAppError } from '../errors.js';
import { createRenderer, type RendererOptions, type RenderOptions } from './render.js';

export interface RenderTask {
  id: number;
  template: string;
  vars: Record<string, unknown>;
  options: RenderOptions;
}

export type RenderReply =
  | { id: number; ok: true; text: string; warnings: string[] }
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
  renderer.render(task.template, task.vars, task.options).then(
    (r) => parentPort!.postMessage({ id: task.id, ok: true, text: r.text, warnings: r.warnings } satisfies RenderReply),
    (err: unknown) =>
      parentPort!.postMessage({
        id: task.id,
        ok: false,
        code: isAppError(err, 'TEMPLATE_INVALID') ? 'TEMPLATE_INVALID' : 'TEMPLATE_RENDER_FAILED',
        message: err instanceof Error ? err.message : String(err),
      } satisfies RenderReply),
  );
});
