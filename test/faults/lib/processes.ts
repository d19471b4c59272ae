/** Real `smsblossom worker` processes for the fault suite, started and `kill -9`ed like a crashing machine would be. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { QueueName } from '../../../src/config.js';
import { childEnv, PROJECT_ROOT } from '../../helpers/spawn.js';

export interface WorkerProcess {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** `kill -9`: no shutdown, no lock released; the jobs it held stall and another worker takes them over. */
  kill9(): Promise<void>;
  /** SIGTERM and wait for a graceful exit. */
  stop(): Promise<void>;
}

/** Starts `smsblossom worker --queues …` with `env`; resolves once it logged that its workers started. */
export async function startWorkerProcess(queues: readonly QueueName[], env: Record<string, string>): Promise<WorkerProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'worker', '--queues', queues.join(',')], {
    cwd: PROJECT_ROOT,
    env: childEnv({ ...env, LOG_LEVEL: 'info' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  await new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    const timer = setTimeout(() => reject(new Error(`worker process did not start within 60 s: ${stderr}`)), 60_000);
    lines.on('line', (line) => {
      if (line.includes('"Workers started"')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker process exited with ${code} before it started: ${stderr}`));
    });
  });
  // Keep draining its output so a full pipe never blocks it.
  proc.stdout!.resume();
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const gone = () => proc.exitCode !== null || proc.signalCode !== null;
  return {
    proc,
    pid: proc.pid!,
    async kill9() {
      if (gone()) return;
      proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (gone()) return;
      proc.kill('SIGTERM');
      await exited;
    },
  };
}
