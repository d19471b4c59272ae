/**
 * `smsblossom start` on several processes (PROCESSES, by default one per core on PostgreSQL). The primary holds what
 * the processes share and serves nothing itself: it resolves Redis (starting the embedded one if need be), applies the
 * migrations once, runs the bundled SMS sandbox once when it is the provider, then forks the processes (`node:cluster`).
 * Each one is a plain `smsblossom start`: the HTTP API on the shared port (the primary hands out connections round
 * robin) and a BullMQ worker for every queue, pointed at the resolved Redis and provider through its environment. So
 * running on several machines is the same thing with more processes.
 *
 * A process that dies is started again after a back-off; one that fails before all of them first served stops the
 * start (exit 1, as one process failing to start does). SIGTERM/SIGINT ask every process to stop (each finishes its
 * active jobs within SHUTDOWN_TIMEOUT_MS); the primary exits when they all have, then stops the sandbox and the
 * embedded Redis. A second signal ends them at once.
 */
import cluster, { type Worker } from 'node:cluster';
import os from 'node:os';
import type { Config } from './config.js';
import { openDatabase } from './db/client.js';
import { migrate } from './db/migrate.js';
import type { Logger } from './logger.js';
import { createSandbox, type Sandbox } from './sandbox/server.js';
import { serveClusterMetrics } from './queue/clusterMetrics.js';
import { resolveRedis } from './system.js';
import type { EmbeddedRedis } from './queue/embeddedRedis.js';

/** Messages between the primary and its processes (IPC). */
const READY = 'smsblossom:ready';
const STOP = 'smsblossom:stop';

/** Back-off of a process started again: doubles per quick death, up to the maximum. */
const RESTART_BASE_MS = 1000;
const RESTART_MAX_MS = 30_000;
/** A process that served this long before dying starts again after the base back-off. */
const RESTART_RESET_AFTER_MS = 60_000;
/** Past the processes' own shutdown limit, before the primary ends those left. */
const STOP_MARGIN_MS = 2000;

const isMessage = (m: unknown, type: string) => typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type;

/** Whether this process is one of a supervisor's (a cluster worker). */
export const isSupervised = (): boolean => cluster.isWorker;

/** Tells the supervisor this process serves (no-op outside one). Call once the stop handlers are in place. */
export function notifyReady(): void {
  if (cluster.isWorker) process.send?.({ type: READY });
}

/** Calls `stop` when the supervisor asks this process to stop (no-op outside one). */
export function onSupervisorStop(stop: () => void): void {
  if (cluster.isWorker) process.on('message', (m) => isMessage(m, STOP) && stop());
}

/**
 * Why `start` runs one process on a machine with more cores, when the default chose it: the embedded database.
 * Undefined when PROCESSES says so or the machine has one core.
 */
export function singleProcessReason(config: Config): string | undefined {
  if (config.processes.explicit || config.database.url || os.availableParallelism() < 2) return undefined;
  return 'Running one process: the embedded PGlite database is opened by a single process (set DATABASE_URL to use every core)';
}

export interface SupervisorOptions {
  config: Config;
  logger: Logger;
  /** After SHUTDOWN_TIMEOUT_MS, how long a process's remaining shutdown steps may take (as for one process). */
  shutdownGraceMs: number;
}

/** What the primary started and must stop once its processes are gone (last started, first stopped). */
interface Shared {
  /** Settings every process gets on top of the environment. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

async function startShared(config: Config, logger: Logger): Promise<Shared> {
  const stops: Array<() => Promise<unknown>> = [];
  const stop = async () => {
    for (const fn of stops.reverse()) await fn().catch((err: Error) => logger.error({ err: err.message }, 'Shutdown step failed'));
  };
  try {
    let embedded: EmbeddedRedis | undefined;
    ({ config, embedded } = await resolveRedis(config, logger));
    if (embedded) stops.push(() => embedded.stop());
    const env: Record<string, string> = { PROCESSES: '1', REDIS_URL: config.redis.url };

    // Once here rather than racing in every process (they would serialise on the advisory lock anyway).
    const db = await openDatabase({ ...config.database, dataDir: config.dataDir });
    try {
      const applied = await migrate(db);
      logger.info({ database: db.kind, schema: db.schema, applied }, 'Database ready');
    } finally {
      await db.close();
    }

    // One sandbox for all: it holds the messages and sends the delivery reports (to the shared port, any process).
    if (config.sms.provider === 'sandbox' && config.workers.queues.includes('delivery')) {
      const sandbox: Sandbox = await createSandbox({ apiKey: config.sms.mittoApiKey, logger });
      stops.push(() => sandbox.close());
      const url = await sandbox.listen(config.sms.sandboxPort, '127.0.0.1');
      logger.info({ sandbox: url }, 'SMS provider: the bundled Mitto sandbox (set MITTO_API_KEY to send for real)');
      Object.assign(env, { SMS_PROVIDER: 'mitto', MITTO_API_URL: url, MITTO_API_KEY: config.sms.mittoApiKey });
    }
    return { env, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Runs `config.processes.count` processes until SIGTERM/SIGINT; resolves with the exit code (0 when every process
 * stopped cleanly). Rejects when what they share cannot be started (Redis, the database).
 */
export async function runSupervisor({ config, logger, shutdownGraceMs }: SupervisorOptions): Promise<number> {
  const shared = await startShared(config, logger);
  const count = config.processes.count;
  /** Per process: its slot (for its back-off), when it started, whether it served. */
  const live = new Map<number, { slot: number; startedAt: number; ready: boolean }>();
  const quickDeaths = new Array<number>(count).fill(0);
  let started = false;
  let stopping = false;
  let finished = false;
  let exitCode = 0;
  const restarts = new Set<NodeJS.Timeout>();

  const fork = (slot: number) => {
    const worker = cluster.fork(shared.env);
    live.set(worker.id, { slot, startedAt: Date.now(), ready: false });
  };

  return new Promise<number>((resolve) => {
    // (A send to one that has just died fails; its exit is handled like the others'.)
    const askToStop = (worker: Worker) => worker.send({ type: STOP }, () => undefined);
    const finish = () => {
      if (live.size || finished) return;
      finished = true;
      void shared.stop().then(() => {
        logger.info({ exitCode }, 'Stopped');
        resolve(exitCode);
      });
    };
    const stopAll = () => {
      if (stopping) return;
      stopping = true;
      for (const t of restarts) clearTimeout(t);
      restarts.clear();
      // One still starting is asked when it reports ready (it listens for the request from then on).
      for (const worker of Object.values(cluster.workers ?? {})) if (worker && live.get(worker.id)?.ready) askToStop(worker);
      const limitMs = config.workers.shutdownTimeoutMs + shutdownGraceMs + STOP_MARGIN_MS;
      setTimeout(() => {
        logger.error({ limitMs, left: live.size }, 'Shutdown did not finish in time: ending the processes left');
        exitCode = 1;
        for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      }, limitMs).unref();
      finish();
    };

    // A process's `/metrics` asks for every process's counters and histograms, summed.
    serveClusterMetrics(() =>
      Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && live.get(w.id)?.ready === true && w.isConnected()),
    );
    cluster.on('message', (worker: Worker, message: unknown) => {
      const entry = live.get(worker.id);
      if (!entry || !isMessage(message, READY)) return;
      entry.ready = true;
      if (stopping) return askToStop(worker);
      if (!started && [...live.values()].every((p) => p.ready) && live.size === count) {
        started = true;
        logger.info({ processes: count, pids: Object.values(cluster.workers ?? {}).map((w) => w?.process.pid) }, 'All processes serving');
      }
    });

    cluster.on('exit', (worker: Worker, code: number | null, signal: NodeJS.Signals | null) => {
      const entry = live.get(worker.id);
      live.delete(worker.id);
      if (!entry) return;
      // Not `pid`: every log line carries the primary's own as that.
      const exitedPid = worker.process.pid;
      if (stopping) {
        if (code !== 0) exitCode = 1;
        return finish();
      }
      if (!started) {
        // As with one process: a start that fails is reported (the process said why on stderr) and ends the start.
        logger.error({ exitedPid, code, signal }, 'A process failed to start: stopping the others');
        exitCode = 1;
        return stopAll();
      }
      const lived = Date.now() - entry.startedAt;
      quickDeaths[entry.slot] = lived >= RESTART_RESET_AFTER_MS ? 0 : quickDeaths[entry.slot]! + 1;
      const restartInMs = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** Math.max(0, quickDeaths[entry.slot]! - 1));
      logger.warn({ exitedPid, code, signal, restartInMs }, 'A process exited unexpectedly: starting another');
      const timer = setTimeout(() => {
        restarts.delete(timer);
        if (!stopping) fork(entry.slot);
      }, restartInMs);
      restarts.add(timer);
    });

    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        logger.warn({ signal }, 'Second signal: ending every process now');
        for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
        process.exit(1);
      }
      signalled = true;
      logger.info({ signal, processes: live.size }, 'Shutting down: every process finishes its active jobs');
      stopAll();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);

    logger.info({ processes: count, cores: os.availableParallelism() }, 'Starting processes');
    for (let slot = 0; slot < count; slot++) fork(slot);
  });
}
