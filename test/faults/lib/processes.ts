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
export function startWorkerProcess(queues: readonly QueueName[], env: Record<string, string>): Promise<WorkerProcess> {
  return startCliProcess(['worker', '--queues', queues.join(',')], env, '"Workers started"');
}

/**
 * Starts `smsblossom start` with `env`, its log (at info) going to /dev/null rather than through a pipe this test
 * process must drain while it generates load (a full pipe would stall the service's synchronous log writes and be
 * measured as its latency); resolves once `${baseUrl}/health/ready` answers 200.
 */
export async function startServiceProcess(env: Record<string, string>, baseUrl: string): Promise<WorkerProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start'], {
    cwd: PROJECT_ROOT,
    env: childEnv({ ...env, LOG_LEVEL: 'info' }),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`smsblossom start exited with ${proc.exitCode} before it was ready: ${stderr}`);
    const status = await fetch(`${baseUrl}/health/ready`).then((r) => r.status, () => 0);
    if (status === 200) break;
    if (Date.now() > deadline) throw new Error(`smsblossom start was not ready within 60 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return handle(proc);
}

/** Starts `smsblossom <args>` with `env` (logging at info); resolves once a line of its log contains `readyText`. */
export async function startCliProcess(args: readonly string[], env: Record<string, string>, readyText: string): Promise<WorkerProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
    cwd: PROJECT_ROOT,
    env: childEnv({ ...env, LOG_LEVEL: 'info' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  await new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    const timer = setTimeout(() => reject(new Error(`smsblossom ${args.join(' ')} did not start within 60 s: ${stderr}`)), 60_000);
    lines.on('line', (line) => {
      if (line.includes(readyText)) {
        clearTimeout(timer);
        lines.close();
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`smsblossom ${args.join(' ')} exited with ${code} before it started: ${stderr}`));
    });
  });
  // Keep draining its output so a full pipe never blocks it.
  proc.stdout!.resume();
  return handle(proc);
}

function handle(proc: ChildProcess): WorkerProcess {
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
