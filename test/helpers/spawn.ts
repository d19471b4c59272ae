/** Runs a command to completion in tests, collecting its output; kills it if it outlives `timeoutMs`. */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { SHOPIFY_SECRET, TEST_DATABASE_URL, TEST_REDIS_URL } from './system.js';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment a child process gets: only what it needs to find node and npx, plus `vars`; nothing leaks in from
 * the test runner's own environment (a stray DATABASE_URL would point the child at the wrong database).
 */
export function childEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const key of ['PATH', 'HOME', 'TMPDIR', 'npm_config_cache']) {
    if (process.env[key] !== undefined) env[key] = process.env[key];
  }
  return { ...env, NODE_ENV: 'test', LOG_LEVEL: 'silent', ...vars };
}

export function run(command: string, args: string[], vars: Record<string, string>, timeoutMs = 20_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: PROJECT_ROOT, env: childEnv(vars), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Whether a process of that id is still there (signal 0 probes without signalling). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A long-running command whose JSON log lines (stdout) are collected as they come. */
export interface LoggedProcess<L> {
  proc: ChildProcessByStdio<null, Readable, Readable>;
  lines: L[];
  exited: Promise<Exit>;
  stderr(): string;
  /** Waits for a line `match` accepts; fails at once if the command exited first. */
  waitForLine(what: string, match: (line: L) => boolean, timeoutMs?: number): Promise<L>;
}

export function spawnLogged<L extends { msg?: string; pid?: number }>(command: string, args: string[], vars: Record<string, string>): LoggedProcess<L> {
  const proc = spawn(command, args, { cwd: PROJECT_ROOT, env: childEnv(vars), stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: L[] = [];
  /** Waiters, checked on every new line and at exit (no polling: the bench runs this outside vitest too). */
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const check of [...waiters]) check();
  };
  let pending = '';
  let stderr = '';
  proc.stdout.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      // npm's own banner lines are not JSON.
      if (line.startsWith('{')) lines.push(JSON.parse(line) as L);
    }
    wake();
  });
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let exit: Exit | undefined;
  const exited = new Promise<Exit>((resolve) =>
    proc.on('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
      wake();
    }),
  );
  return {
    proc,
    lines,
    exited,
    stderr: () => stderr,
    waitForLine: (what, match, timeoutMs = 90_000) =>
      new Promise<L>((resolve, reject) => {
        const finish = (fn: () => void) => {
          waiters.delete(check);
          clearTimeout(timer);
          fn();
        };
        const check = () => {
          const line = lines.find(match);
          if (line) finish(() => resolve(line));
          else if (exit) finish(() => reject(new Error(`${command} ${args.join(' ')} exited (${JSON.stringify(exit)}) before ${what}; stderr: ${stderr}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`${command} ${args.join(' ')}: no ${what} within ${timeoutMs} ms; stderr: ${stderr}`))), timeoutMs);
        waiters.add(check);
        check();
      }),
  };
}

/**
 * The environment of a spawned service on the test Redis and PostgreSQL, under its own key prefix and schema (removed by
 * the test), logging at info, on a port of its own choosing on 127.0.0.1, without housekeeping schedules.
 */
export function serviceEnv(prefix: string, schema: string, vars: Record<string, string> = {}): Record<string, string> {
  return {
    LOG_LEVEL: 'info',
    PORT: '0',
    HOST: '127.0.0.1',
    REDIS_URL: TEST_REDIS_URL,
    REDIS_PREFIX: prefix,
    REDIS_EMBEDDED: 'false',
    DATABASE_URL: TEST_DATABASE_URL,
    DATABASE_SCHEMA: schema,
    SHOPIFY_API_SECRET: SHOPIFY_SECRET,
    HOUSEKEEPING_SCHEDULES: 'false',
    ...vars,
  };
}
