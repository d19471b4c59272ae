/**
 * Liquid rendering off the event loop. Templates are written by merchants, and a nested `{% for %}` can burn a whole
 * render limit of CPU: on the thread that takes webhooks, twelve such previews held a signed webhook for 11 s. The
 * pool runs renders on a few worker threads instead, each with a hard deadline: past it the thread is terminated
 * (whatever it was doing, even code that never yields to liquid's own time check) and replaced on next use.
 *
 * It is a {@link Renderer}: `validate` parses on the calling thread (bounded by the template length limit), `render`
 * goes to a thread. Renders beyond the threads wait in a bounded queue; past it they are refused at once. A page of
 * renders (`renderMany`) waits in a queue of its own, served after single renders: an order confirmation's render
 * waits for at most the one task a thread is on, never behind a campaign's pages.
 */
import { createRequire } from 'node:module';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { AppError } from '../errors.js';
import { createRenderer, type Renderer, type RendererOptions, type RenderItem, type RenderOptions, type RenderResult } from './render.js';
import type { RenderReply, RenderTask, RenderWorkerData } from './renderWorker.js';

export interface RenderPoolOptions {
  /** Render threads. Default: one per core but one, at least 1, at most 4. */
  size?: number;
  /** Hard deadline of one render on its thread, in ms. Default 1000. */
  timeoutMs?: number;
  /** Renders waiting for a thread before new ones are refused (SERVICE_UNAVAILABLE). Default 64. */
  queueMax?: number;
  /** Heap of one render thread, in MB: a template that allocates past it ends its thread, not the process. Default 128. */
  maxHeapMb?: number;
  /**
   * Nice value of the threads (Linux: per thread). Renders a request waits for (previews) run below the event loop, so
   * intake wins the CPU on a busy machine; renders jobs depend on (campaign pages) run at 0, or a loaded machine would
   * starve them. Default 0.
   */
  nice?: number;
  renderer?: RendererOptions;
}

export interface RenderPool extends Renderer {
  /** Terminates the threads; renders still waiting are refused. Safe to call twice. */
  close(): Promise<void>;
  /** Threads alive now (they start on first use). */
  readonly threads: number;
}

interface Pending {
  task: RenderTask;
  resolve: (r: RenderResult[]) => void;
  reject: (err: Error) => void;
}

/** Renders of one template a thread takes in one task (`renderMany` splits longer lists). */
const RENDERS_PER_TASK = 100;

interface Slot {
  worker: Worker;
  /** Set when the thread has loaded its renderer: the deadline of a render never pays for a thread's start. */
  ready: boolean;
  current: (Pending & { timer: NodeJS.Timeout }) | null;
}

export function defaultPoolSize(): number {
  return Math.max(1, Math.min(4, os.availableParallelism() - 1));
}

/**
 * How a thread starts: the compiled `renderWorker.js` beside this file; or, when this file runs as TypeScript (tests,
 * `tsx`), the `.ts` source compiled on load by tsx's CommonJS API (ESM loader hooks do not reach worker threads on
 * Node 20).
 */
function workerScript(): { script: URL | string; eval: boolean } {
  const self = new URL(import.meta.url);
  if (!self.pathname.endsWith('.ts')) return { script: new URL('./renderWorker.js', self), eval: false };
  const tsx = createRequire(import.meta.url).resolve('tsx/cjs/api');
  const source = fileURLToPath(new URL('./renderWorker.ts', self));
  return { script: `require(${JSON.stringify(tsx)}).require(${JSON.stringify(source)}, __filename);`, eval: true };
}

export function createRenderPool(options: RenderPoolOptions = {}): RenderPool {
  const size = options.size ?? defaultPoolSize();
  const timeoutMs = options.timeoutMs ?? 1000;
  const queueMax = options.queueMax ?? 64;
  // Liquid's own time check stops most runaway templates at half the deadline, so the thread survives them; the
  // deadline itself is for what that check cannot see.
  const rendererOptions: RendererOptions = { renderLimitMs: Math.max(1, Math.floor(timeoutMs * 0.5)), ...options.renderer };
  const local = createRenderer(rendererOptions);
  const script = workerScript();
  const slots: Slot[] = [];
  const queue: Pending[] = [];
  /** `renderMany`'s tasks: taken when `queue` is empty. */
  const bulk: Pending[] = [];
  let nextId = 1;
  let closed = false;

  function spawn(): Slot {
    const worker = new Worker(script.script, {
      eval: script.eval,
      workerData: { renderer: rendererOptions, nice: options.nice ?? 0 } satisfies RenderWorkerData,
      resourceLimits: { maxOldGenerationSizeMb: options.maxHeapMb ?? 128 },
    });
    // An idle pool must not keep the process alive.
    worker.unref();
    const slot: Slot = { worker, ready: false, current: null };
    worker.on('message', (reply: RenderReply | 'ready') => {
      if (reply === 'ready') {
        slot.ready = true;
        pump();
        return;
      }
      const p = slot.current;
      if (!p || p.task.id !== reply.id) return;
      clearTimeout(p.timer);
      slot.current = null;
      if (reply.ok) p.resolve(reply.results);
      else p.reject(new AppError(reply.code, reply.message));
      pump();
    });
    const lost = (why: string) => {
      retire(slot);
      if (!slot.ready) {
        // A thread that cannot even start will not start on the next try either: refuse what waits, do not loop.
        for (const p of [...queue.splice(0), ...bulk.splice(0)]) p.reject(new AppError('TEMPLATE_RENDER_FAILED', `the render thread did not start: ${why}`));
        return;
      }
      const p = slot.current;
      slot.current = null;
      if (p) {
        clearTimeout(p.timer);
        p.reject(new AppError('TEMPLATE_RENDER_FAILED', why));
      }
      pump();
    };
    worker.on('error', (err) => lost(`the render thread failed: ${err.message}`));
    worker.on('exit', () => lost('the render thread exited'));
    slots.push(slot);
    return slot;
  }

  function retire(slot: Slot): void {
    const i = slots.indexOf(slot);
    if (i >= 0) slots.splice(i, 1);
  }

  function run(slot: Slot, p: Pending): void {
    // The deadline is per render: a task of n renders has n of them.
    const deadline = timeoutMs * p.task.items.length;
    const timer = setTimeout(() => {
      // Past the deadline the thread is busy with something it will not give up: end it, start afresh.
      retire(slot);
      slot.current = null;
      slot.worker.removeAllListeners('exit');
      slot.worker.on('exit', () => undefined);
      void slot.worker.terminate();
      p.reject(new AppError('TEMPLATE_RENDER_FAILED', `rendering took longer than ${deadline} ms`));
      pump();
    }, deadline);
    slot.current = { ...p, timer };
    try {
      slot.worker.postMessage(p.task);
    } catch (err) {
      // Variables that cannot be cloned (a function) are a caller's bug; the thread is still fine.
      clearTimeout(timer);
      slot.current = null;
      p.reject(new AppError('TEMPLATE_RENDER_FAILED', `render variables cannot be sent to the render thread: ${(err as Error).message}`));
      pump();
    }
  }

  function pump(): void {
    while (!closed && (queue.length || bulk.length)) {
      const slot = slots.find((s) => s.ready && s.current === null);
      if (!slot) {
        // Start a thread if there is room; the queue is served when it says it is ready.
        if (slots.length < size) spawn();
        return;
      }
      run(slot, (queue.shift() ?? bulk.shift())!);
    }
  }

  /** Queues one task: a template and its renders, on the first free thread. */
  function submit(template: string, items: RenderItem[], to: Pending[]): Promise<RenderResult[]> {
    // A template that does not parse is refused here, without a trip to a thread.
    local.validate(template);
    if (closed) return Promise.reject(new AppError('SHUTTING_DOWN', 'the renderer is closed'));
    // Pages are bounded by their callers (CAMPAIGNS_CONCURRENCY pages per process); single renders by queueMax.
    if (to === queue && to.length >= queueMax) return Promise.reject(new AppError('SERVICE_UNAVAILABLE', `too many renders waiting (${queueMax}); retry shortly`));
    return new Promise<RenderResult[]>((resolve, reject) => {
      to.push({ task: { id: nextId++, template, items }, resolve, reject });
      pump();
    });
  }

  return {
    get threads() {
      return slots.length;
    },
    validate(template) {
      local.validate(template);
    },
    async render(template: string, vars: Record<string, unknown>, opts: RenderOptions = {}): Promise<RenderResult> {
      const [result] = await submit(template, [{ vars, options: opts }], queue);
      return result!;
    },
    async renderMany(template: string, items: readonly RenderItem[]): Promise<RenderResult[]> {
      const tasks: Array<Promise<RenderResult[]>> = [];
      for (let i = 0; i < items.length; i += RENDERS_PER_TASK) tasks.push(submit(template, items.slice(i, i + RENDERS_PER_TASK), bulk));
      return (await Promise.all(tasks)).flat();
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const p of [...queue.splice(0), ...bulk.splice(0)]) p.reject(new AppError('SHUTTING_DOWN', 'the renderer is closed'));
      await Promise.all(
        slots.splice(0).map((s) => {
          if (s.current) {
            clearTimeout(s.current.timer);
            s.current.reject(new AppError('SHUTTING_DOWN', 'the renderer is closed'));
          }
          s.worker.removeAllListeners('exit');
          return s.worker.terminate();
        }),
      );
    },
  };
}
