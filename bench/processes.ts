/**
 * The processes of a benchmark, each on its own: a private redis-server, the Mitto-compatible sandbox
 * (`src/sandbox/main.ts`, what `npm run sandbox` runs), SMS Blossom itself (`dist/cli.js start`, what `npm start` runs;
 * `npm run bench` builds dist/ first when stale) and the raw BullMQ reference (`bench/rawServer.ts`). TypeScript children
 * run as `node --import tsx <script>` rather than through the `tsx` CLI, which would put a second process between us and
 * the one doing the work, whose pid we measure.
 * Each child's output goes to a log file in the system temp directory, named when it fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface Proc {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** SIGTERM, then SIGKILL after 30 s; resolves when the process has exited. Safe to call twice. */
  stop(): Promise<void>;
}

/** A port nothing listens on right now (the OS picks it; released before it is handed out). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Only what a process needs from ours: a variable of the developer's shell must not change the service under test. */
function baseEnv(): Record<string, string> {
  const keep = ['PATH', 'HOME', 'LANG', 'TMPDIR', 'TZ'];
  return Object.fromEntries(keep.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]!]));
}

function spawnLogged(name: string, command: string, args: string[], env: Record<string, string>, stdin: 'ignore' | 'pipe' = 'ignore'): Proc {
  const logFile = path.join(os.tmpdir(), `smsblossom-bench-${name}-${process.pid}-${Date.now()}.log`);
  const fd = fs.openSync(logFile, 'w');
  const child = spawn(command, args, { cwd: ROOT, env: { ...baseEnv(), ...env }, stdio: [stdin, fd, fd] });
  fs.closeSync(fd);
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    pid: child.pid,
    child,
    logFile,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

function nodeArgs(script: string, args: string[]): string[] {
  // BENCH_CPU_PROF=<dir>: each Node child writes a V8 CPU profile there when it exits (open it in Chrome DevTools).
  const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.BENCH_CPU_PROF)}`] : [];
  const loader = script.endsWith('.ts') ? ['--import', 'tsx'] : [];
  return [...profile, ...loader, script, ...args];
}

/** Polls `probe` until it resolves true; fails early when the process exits, or after `timeoutMs`. */
async function waitUntil(proc: Proc, what: string, probe: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`${what} exited with code ${proc.child.exitCode} before it was ready; see ${proc.logFile}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms; see ${proc.logFile}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const httpOk = (url: string) => async () => (await fetch(url, { signal: AbortSignal.timeout(2000) })).ok;

/**
 * A redis-server of the benchmark's own, without persistence: its CPU time and command counters then belong to the
 * benchmark alone, where the shared server on 6379 also counts every test suite running beside it.
 */
export async function startPrivateRedis(): Promise<Proc & { url: string }> {
  const port = await freePort();
  const proc = spawnLogged('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {});
  const url = `redis://127.0.0.1:${port}`;
  await waitUntil(proc, 'redis-server', () => new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  }));
  return { ...proc, url };
}

/** The Mitto-compatible sandbox as `npm run sandbox -- --port P --api-key K` runs it. */
export async function startSandbox(apiKey: string): Promise<Proc & { url: string }> {
  const port = await freePort();
  const proc = spawnLogged('sandbox', process.execPath, nodeArgs('src/sandbox/main.ts', ['--port', String(port), '--api-key', apiKey]), {});
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(proc, 'sandbox', httpOk(`${url}/__sandbox/stats`));
  return { ...proc, url };
}

/** SMS Blossom as `npm start` runs it (`smsblossom start`: API and every worker), ready when `/health/ready` answers 200. */
export async function startService(env: Record<string, string>): Promise<Proc & { url: string }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawnLogged('service', process.execPath, nodeArgs('dist/cli.js', ['start']), { ...env, PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: url });
  await waitUntil(proc, 'smsblossom start', httpOk(`${url}/health/ready`));
  return { ...proc, url };
}

/** The raw BullMQ reference (`bench/rawServer.ts <mode>`): ready when it prints READY; starts its workers on "go". */
export async function startRaw(mode: 'chain' | 'single', env: Record<string, string>): Promise<Proc & { go(): void }> {
  const proc = spawnLogged(`raw-${mode}`, process.execPath, nodeArgs('bench/rawServer.ts', [mode]), env, 'pipe');
  await waitUntil(proc, `raw BullMQ (${mode})`, async () => fs.readFileSync(proc.logFile, 'utf8').includes('READY'));
  return { ...proc, go: () => proc.child.stdin!.write('go\n') };
}

// USER_HZ, the unit of utime and stime: 100 on every Linux architecture Node runs on (sysconf is out of Node's reach).
const TICKS_PER_SECOND = 100;

/**
 * CPU time (user + system, every thread) a process and its descendants have used so far, in ms; undefined once it is
 * gone. Descendants count because `smsblossom start` on several cores is a tree (a supervisor and one process per
 * core): live ones by their own figures, ended ones once reaped (cutime, cstime).
 */
export function cpuMsOf(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after the command name (which may hold spaces and parentheses): state is field 3, utime 14, stime 15,
  // cutime 16, cstime 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const own = ((Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * 1000) / TICKS_PER_SECOND;
  return childrenOf(pid).reduce((sum, child) => sum + (cpuMsOf(child) ?? 0), own);
}

/** The live children of a process (those its main thread started: Node forks from it). */
function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Resident memory in bytes of a process and of the processes it started (a supervisor's: every process of the service);
 * 0 once it is gone.
 */
export function rssOf(pid: number): number {
  let own = 0;
  try {
    own = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
  return childrenOf(pid).reduce((sum, child) => sum + rssOf(child), own);
}
