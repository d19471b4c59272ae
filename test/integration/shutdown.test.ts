/**
 * Graceful shutdown of a real worker process (test/helpers/workerChild.ts) on real Redis and PostgreSQL: SIGTERM
 * while a job runs lets that job finish, takes no new job, exits 0, and the next worker neither loses nor repeats work.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { QueueRegistry } from '../../src/queue/queues.js';
import { waitForJobState } from '../helpers/jobs.js';
import { slowJobKeys, slowProcessor } from '../helpers/slowJob.js';
import { childEnv, PROJECT_ROOT } from '../helpers/spawn.js';
import {
  deleteRedisPrefix,
  dropSchema,
  SHOPIFY_SECRET,
  startTestSystem,
  TEST_DATABASE_URL,
  TEST_REDIS_URL,
  testConfig,
  uniqueName,
  type TestSystem,
} from '../helpers/system.js';

interface WorkerChild {
  readonly process: ChildProcessByStdio<null, Readable, Readable>;
  /** Events the child has announced on stdout, in order. */
  readonly events: string[];
  readonly stderr: () => string;
  /** Resolves when the child exits. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(event: string, timeout?: number): Promise<void>;
}

function startWorkerChild(prefix: string, schema: string, env: Record<string, string> = {}): WorkerChild {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/workerChild.ts'], {
    cwd: PROJECT_ROOT,
    env: childEnv({
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: prefix,
      DATABASE_URL: TEST_DATABASE_URL,
      DATABASE_SCHEMA: schema,
      LOG_LEVEL: 'silent',
      SHOPIFY_API_SECRET: SHOPIFY_SECRET,
      SHUTDOWN_TIMEOUT_MS: '20000',
      ...env,
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: string[] = [];
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    let nl: number;
    while ((nl = stdout.indexOf('\n')) >= 0) {
      const line = stdout.slice(0, nl);
      stdout = stdout.slice(nl + 1);
      try {
        events.push((JSON.parse(line) as { event: string }).event);
      } catch {
        events.push(`unparsed: ${line}`);
      }
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
  });
  return {
    process: child,
    events,
    stderr: () => stderr,
    exited,
    waitFor: (event, timeout = 20_000) =>
      vi.waitFor(
        () => {
          if (events.includes(event)) return;
          if (exit) throw new Error(`worker child exited (${JSON.stringify(exit)}) before "${event}"; stderr: ${stderr}`);
          throw new Error(`waiting for "${event}" from the worker child (seen: ${events.join(', ') || 'nothing'})`);
        },
        { timeout, interval: 20 },
      ),
  };
}

/** Resolves with the child's exit, or rejects if it has not exited within `timeoutMs` (a hang on shutdown). */
async function exitOf(child: WorkerChild, timeoutMs = 15_000) {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      child.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`worker child did not exit within ${timeoutMs} ms (events: ${child.events.join(', ')}); stderr: ${child.stderr()}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe('SIGTERM during a running job', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  /** A fresh queue prefix and schema, a producer, and Redis access to the slow job's counters. */
  function setUp() {
    const prefix = `smsblossom-test:${uniqueName('sd')}`;
    const schema = uniqueName('sd');
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    const registry = new QueueRegistry({ connection: redis, prefix, logger: createLogger({ level: 'silent' }) });
    cleanups.push(async () => {
      await registry.close();
      await redis.quit();
      await deleteRedisPrefix(prefix);
      await dropSchema(schema);
    });
    const keys = slowJobKeys(prefix);
    const counters = async () => {
      const [started, done, ran] = await Promise.all([redis.get(keys.started), redis.get(keys.done), redis.lrange(keys.ran, 0, -1)]);
      return { started: Number(started ?? 0), done: Number(done ?? 0), ran };
    };
    const enqueue = (n: number) =>
      registry.enqueueJob('events', 'orders/paid', {
        topic: 'orders/paid',
        shopId: 'shutdown.myshopify.com',
        objectId: String(n),
        raw: { id: n },
        requestId: `req_${Date.now()}_sd${n}`,
      });
    const child = (env: Record<string, string> = {}) => {
      const c = startWorkerChild(prefix, schema, env);
      cleanups.push(async () => {
        if (c.process.exitCode === null && c.process.signalCode === null) {
          c.process.kill('SIGKILL');
          await c.exited;
        }
      });
      return c;
    };
    /** The next worker, in this process, on the same queues and database. */
    const nextWorker = async (): Promise<TestSystem> => {
      const config = testConfig('postgres', { REDIS_PREFIX: prefix, DATABASE_SCHEMA: schema });
      const sys = await startTestSystem('postgres', { config, workers: ['events'], processors: { events: slowProcessor(prefix) } });
      cleanups.push(() => sys.teardown());
      return sys;
    };
    return { prefix, redis, keys, queue: registry.get('events'), counters, enqueue, child, nextWorker };
  }

  it('lets the running job finish, exits 0, and the next worker does not run it again', async () => {
    const t = setUp();
    const jobId = await t.enqueue(1);
    const child = t.child();
    await vi.waitFor(async () => expect((await t.counters()).started).toBe(1), { timeout: 20_000, interval: 20 });
    await child.waitFor('ready');

    child.process.kill('SIGTERM');
    await child.waitFor('stopping');
    // Stopping, not stopped: the job is still running and holds the process open.
    expect(await t.queue.getJobState(jobId)).toBe('active');
    expect(child.process.exitCode).toBeNull();
    await t.redis.set(t.keys.release, '1');

    expect(await exitOf(child)).toEqual({ code: 0, signal: null });
    expect(child.events).toEqual(['ready', 'stopping', 'stopped']);
    const job = await t.queue.getJob(jobId);
    expect(await job!.getState()).toBe('completed');
    expect(job!.attemptsMade).toBe(1);
    expect(job!.returnvalue).toEqual({ released: true });
    expect(await t.counters()).toEqual({ started: 1, done: 1, ran: [jobId] });

    const next = await t.nextWorker();
    expect((await t.counters()).started).toBe(1);
    // A job through the next worker proves it is fetching; had the first job been left behind, it would come first.
    const probe = await t.enqueue(2);
    await waitForJobState(t.queue, probe, 'completed');

    expect(await t.counters()).toEqual({ started: 2, done: 2, ran: [jobId, probe] });
    expect(await t.queue.getJobState(jobId)).toBe('completed');
    expect(await next.deadLetters.count()).toBe(0);
  });

  it('takes no job enqueued after SIGTERM, and the next worker runs it: nothing lost', async () => {
    const t = setUp();
    const child = t.child();
    await child.waitFor('ready');
    const first = await t.enqueue(1);
    await vi.waitFor(async () => expect((await t.counters()).started).toBe(1), { timeout: 20_000, interval: 20 });

    child.process.kill('SIGTERM');
    await child.waitFor('stopping');
    // The worker has stopped taking work once its blocking connection (the one BullMQ counts as a worker) is closed.
    await vi.waitFor(async () => expect(await t.queue.getWorkersCount()).toBe(0), { timeout: 10_000, interval: 20 });
    const late = await t.enqueue(2);
    await t.redis.set(t.keys.release, '1');

    expect(await exitOf(child)).toEqual({ code: 0, signal: null });
    expect(await t.queue.getJobState(first)).toBe('completed');
    expect(await t.queue.getJobState(late)).toBe('waiting');
    expect(await t.counters()).toEqual({ started: 1, done: 1, ran: [first] });

    await t.nextWorker();
    await waitForJobState(t.queue, late, 'completed');

    expect(await t.counters()).toEqual({ started: 2, done: 2, ran: [first, late] });
    expect(await t.queue.getJobState(first)).toBe('completed');
  });

  it('stops waiting for a job that outlives SHUTDOWN_TIMEOUT_MS, and leaves it unfinished rather than lost', async () => {
    const t = setUp();
    const jobId = await t.enqueue(1);
    const child = t.child({ SHUTDOWN_TIMEOUT_MS: '300' });
    await vi.waitFor(async () => expect((await t.counters()).started).toBe(1), { timeout: 20_000, interval: 20 });
    // Its workers take jobs before start-up has finished: a signal before "ready" would find no handler yet.
    await child.waitFor('ready');

    child.process.kill('SIGTERM'); // the job is never released

    await child.waitFor('stopped', 10_000);
    expect(await exitOf(child)).toEqual({ code: 0, signal: null });
    expect((await t.counters()).done).toBe(0);
    // Still active with a lock nobody renews: once the lock expires a worker's stalled check puts it back to wait.
    expect(await t.queue.getJobState(jobId)).toBe('active');
  });
});
