/**
 * Private Redis and PostgreSQL servers for the fault suite: each on a free port, in a temporary directory, so a test can
 * kill and restart them without touching the shared services other tests (and other developers) use.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { freePort } from '../../../src/queue/embeddedRedis.js';

/** The one free-port finder (src/queue/embeddedRedis.ts), for the fault suite's helpers. */
export { freePort };

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface PrivateRedis {
  url: string;
  /** `kill -9` the server, then start it again on the same port and directory (it reloads its append-only file). */
  crashAndRestart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** A redis-server with AOF on and `appendfsync always`: a write it acknowledged survives `kill -9`. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsblossom-fault-redis-'));
  let proc: ChildProcess | undefined;
  const ping = async () => {
    const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } finally {
      r.disconnect();
    }
  };
  const start = async () => {
    proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--maxmemory-policy', 'noeviction'],
      { stdio: 'ignore' },
    );
    // AOF loading may answer LOADING for a moment: wait for a real PONG.
    await until(`redis-server on port ${port}`, ping, 15_000);
  };
  const kill = async (signal: NodeJS.Signals) => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill(signal);
    });
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    async crashAndRestart(downMs = 500) {
      await kill('SIGKILL');
      await new Promise((r) => setTimeout(r, downMs));
      await start();
    },
    async stop() {
      await kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PrivatePostgres {
  url: string;
  /** Stops the server in `immediate` mode (no clean shutdown: the next start runs crash recovery), then starts it. */
  crashAndRestart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function pgBin(name: string): string {
  const root = '/usr/lib/postgresql';
  const version = fs.existsSync(root) ? fs.readdirSync(root).sort().pop() : undefined;
  if (!version) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql');
  return path.join(root, version, 'bin', name);
}

/** PostgreSQL refuses to run as root: run its tools as the `postgres` user then. */
function asPostgres(cmd: string, args: string[]): { cmd: string; args: string[] } {
  return process.getuid?.() === 0 ? { cmd: 'runuser', args: ['-u', 'postgres', '--', cmd, ...args] } : { cmd, args };
}

function runPg(name: string, args: string[]): void {
  const { cmd, args: full } = asPostgres(pgBin(name), args);
  const r = spawnSync(cmd, full, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${name} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
}

/** A throwaway PostgreSQL cluster (initdb, trust auth) on a free port. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsblossom-fault-pg-'));
  const data = path.join(dir, 'data');
  if (process.getuid?.() === 0) spawnSync('chown', ['-R', 'postgres:postgres', dir]);
  runPg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
  const ctl = (...args: string[]) => runPg('pg_ctl', ['-D', data, '-l', path.join(dir, 'log'), '-w', '-t', '30', ...args]);
  const start = async () => {
    ctl('-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`, 'start');
    await until(`postgres on port ${port}`, async () => {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      try {
        await c.connect();
        await c.query('SELECT 1');
        return true;
      } finally {
        await c.end().catch(() => undefined);
      }
    }, 30_000);
  };
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async crashAndRestart(downMs = 500) {
      ctl('-m', 'immediate', 'stop');
      await new Promise((r) => setTimeout(r, downMs));
      await start();
    },
    async stop() {
      try {
        ctl('-m', 'immediate', 'stop');
      } catch {
        // already stopped
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
