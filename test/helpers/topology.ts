/**
 * Production-shaped topologies for integration tests, started per test run and removed afterwards:
 *
 * - `startRedisCluster()`: a local Redis Cluster of N masters (default 3, no replicas), each a `redis-server` child
 *   process on a free loopback port whose cluster bus port (port + 10000) is free too, joined with
 *   `redis-cli --cluster create`. Its `nodesEnv` is what REDIS_CLUSTER_NODES takes.
 * - `startPgBouncer()`: a PgBouncer in transaction pooling mode on a free loopback port in front of the test
 *   PostgreSQL (TEST_DATABASE_URL's host and port, 127.0.0.1:5432 by default), with our own ini; the Debian package's
 *   service instance (port 6432) is neither used nor touched. `options` is not among the ignored startup parameters: a
 *   client that sends it is refused, as by a production pooler, so nothing may depend on startup options.
 *
 * PgBouncer refuses to run as root: under root it runs as the `postgres` user (setuid in the spawn) and its temp
 * directory is made that user's. Every child is killed, and its temp directory removed, by `stop()` (idempotent) and,
 * should a test process end without it, on the process's `exit` or a terminating signal (vitest ends its workers with
 * SIGTERM, which runs no `exit` handler); a SIGKILLed test process takes its children with it (parent-death signal).
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import { once } from 'node:events';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setInterval as ticker } from 'node:timers/promises';
import pg from 'pg';
import { freePort } from '../../src/queue/embeddedRedis.js';
import { testDatabaseUrl } from './serviceUrls.js';

export interface RedisClusterHandle {
  /** `127.0.0.1:<port>` of every master. */
  nodes: string[];
  /** The nodes comma-joined, for REDIS_CLUSTER_NODES. */
  nodesEnv: string;
  stop(): Promise<void>;
}

export interface PgBouncerHandle {
  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** How long a start may take before it is reported as stalled; only a stall reaches it. */
const START_DEADLINE_MS = 30_000;
/** How long a child gets to exit on SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 5_000;
const POLL_MS = 100;
const ATTEMPTS = 5;
const CLUSTER_SLOTS = 16384;

// ---------------------------------------------------------------------------------------------------------------
// Children and temp directories that must not outlive the test process.

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHooksInstalled = false;

/** Synchronous: runs on `exit` (the event loop is gone) and on a terminating signal. */
function killLeftovers(): void {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of liveDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort on the way out
    }
  }
}

/**
 * Kills what is left on `exit`, and on SIGTERM / SIGINT / SIGHUP: vitest ends a forks-pool worker with SIGTERM (then
 * SIGKILL), and no `exit` event runs then. When this is the signal's only listener, the signal is raised again once
 * the children are gone, so the process still ends as it would have. A SIGKILLed test process is covered by the
 * children's parent-death signal (see `spawnChild`).
 */
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', killLeftovers);
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    const onSignal = () => {
      killLeftovers();
      if (process.listenerCount(signal) === 1) {
        process.off(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

let setprivBinary: string | null | undefined;

/**
 * Spawns `command` so that it is SIGKILLed when this process dies, however it dies: through util-linux `setpriv
 * --pdeathsig KILL` (it sets the parent-death signal and execs the command, keeping the pid) when installed, else
 * directly. Credentials (`uid`/`gid`) are changed by the spawn before setpriv runs, so the signal is not cleared.
 */
function spawnChild(command: string, args: string[], options: SpawnOptions): ChildProcess {
  setprivBinary ??= findExecutable('setpriv', ['/usr/bin', '/bin']) ?? null;
  if (setprivBinary && process.platform === 'linux') return spawn(setprivBinary, ['--pdeathsig', 'KILL', '--', command, ...args], options);
  return spawn(command, args, options);
}

interface Child {
  proc: ChildProcess;
  /** Resolves once the process has exited (or could not be spawned). */
  exited: Promise<void>;
  hasExited(): boolean;
  /** What made it end, for error messages. */
  describeExit(): string;
}

function track(proc: ChildProcess): Child {
  installExitHooks();
  liveChildren.add(proc);
  let ended: string | undefined;
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', (code, signal) => {
      ended ??= signal ? `killed by ${signal}` : `exited with code ${code}`;
      liveChildren.delete(proc);
      resolve();
    });
    proc.once('error', (err) => {
      ended ??= `could not run: ${err.message}`;
      // A spawn failure emits no 'exit'.
      if (proc.pid === undefined) {
        liveChildren.delete(proc);
        resolve();
      }
    });
  });
  return { proc, exited, hasExited: () => ended !== undefined && !liveChildren.has(proc), describeExit: () => ended ?? 'running' };
}

/** SIGTERM, then SIGKILL when it is still there after the grace period; resolves once it has exited. */
async function terminate(child: Child): Promise<void> {
  if (child.hasExited() || child.proc.pid === undefined) return;
  child.proc.kill('SIGTERM');
  const grace = AbortSignal.timeout(STOP_GRACE_MS);
  const outcome = await Promise.race([child.exited.then(() => 'done' as const), once(grace, 'abort').then(() => 'late' as const)]);
  if (outcome === 'late') {
    child.proc.kill('SIGKILL');
    await child.exited;
  }
}

async function makeTempDir(prefix: string): Promise<string> {
  installExitHooks();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  liveDirs.add(dir);
  return dir;
}

async function removeTempDir(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/**
 * Polls `probe` on a POLL_MS ticker until it returns a value; fails when `gaveUp` names a reason (the process died) or
 * at the deadline, with the last probe error.
 */
async function pollUntil<T>(what: string, probe: () => Promise<T | undefined>, gaveUp: () => string | undefined, deadlineMs = START_DEADLINE_MS): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  let last = 'no answer yet';
  const ticks = ticker(POLL_MS);
  try {
    for (;;) {
      const reason = gaveUp();
      if (reason) throw new Error(`${what}: ${reason}`);
      try {
        const value = await probe();
        if (value !== undefined) return value;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`${what}: still not there after ${deadlineMs} ms (last: ${last})`);
      await ticks.next();
    }
  } finally {
    await ticks.return?.();
  }
}

function tail(file: string, chars = 3000): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '(no log)';
  }
}

/** Whether 127.0.0.1:`port` can be bound right now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/**
 * A port in 20000–29999, not in `taken`, with it and its cluster bus port (+10000, so 30000–39999: never another
 * node's client port) both free now.
 */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    if (taken.has(port)) continue;
    if ((await portFree(port)) && (await portFree(port + 10000))) return port;
  }
  throw new Error('found no free port pair (p, p+10000) for a Redis Cluster node in 20000–29999');
}

function findExecutable(name: string, dirs: string[]): string | undefined {
  const pathDirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const dir of [...dirs, ...pathDirs]) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Redis Cluster

/** One command over RESP to 127.0.0.1:`port`; answers simple strings, integers and bulk strings. */
function redisCommand(port: number, args: string[], timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const done = (err: Error | undefined, value?: string) => {
      socket.destroy();
      if (err) reject(err);
      else resolve(value ?? '');
    };
    socket.setTimeout(timeoutMs, () => done(new Error(`127.0.0.1:${port} did not answer ${args[0]} within ${timeoutMs} ms`)));
    socket.once('error', (err) => done(err));
    socket.once('close', () => done(new Error(`127.0.0.1:${port} closed the connection`)));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const head = buf.subarray(1, eol).toString();
      switch (String.fromCharCode(buf[0] ?? 0)) {
        case '+':
        case ':':
          return done(undefined, head);
        case '-':
          return done(new Error(`127.0.0.1:${port}: ${head}`));
        case '$': {
          const len = Number(head);
          if (len < 0) return done(undefined, '');
          if (buf.length < eol + 2 + len + 2) return;
          return done(undefined, buf.subarray(eol + 2, eol + 2 + len).toString());
        }
        default:
          return done(new Error(`127.0.0.1:${port}: unexpected reply ${JSON.stringify(buf.toString().slice(0, 80))}`));
      }
    });
    socket.write(args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).reduce((acc, part) => acc + part, `*${args.length}\r\n`));
  });
}

interface RedisNode {
  port: number;
  child: Child;
}

async function startClusterNode(redisServer: string, dir: string, taken: Set<number>): Promise<RedisNode> {
  let lastFailure = '';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = await freeClusterPort(taken);
    taken.add(port);
    const logfile = path.join(dir, `redis-${port}.log`);
    const child = track(
      spawnChild(
        redisServer,
        [
          '--port', String(port),
          '--bind', '127.0.0.1',
          '--cluster-enabled', 'yes',
          '--cluster-config-file', path.join(dir, `nodes-${port}.conf`),
          '--dir', dir,
          '--save', '',
          '--appendonly', 'no',
          '--daemonize', 'no',
          '--logfile', logfile,
        ],
        { stdio: 'ignore' },
      ),
    );
    try {
      await pollUntil(
        `redis-server on 127.0.0.1:${port}`,
        async () => ((await redisCommand(port, ['PING'], 1000)) === 'PONG' ? true : undefined),
        () => (child.hasExited() ? `${child.describeExit()}\n${tail(logfile)}` : undefined),
      );
      return { port, child };
    } catch (err) {
      // Most likely a port taken between the check and the bind: another port.
      lastFailure = (err as Error).message;
      await terminate(child);
    }
  }
  throw new Error(`could not start a Redis Cluster node after ${ATTEMPTS} attempts: ${lastFailure}`);
}

function runToEnd(command: string, args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawnChild(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const child = track(proc);
    let output = '';
    proc.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    proc.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.once('close', (code) => {
      clearTimeout(timer);
      void child.exited.then(() => resolve({ code, output }));
    });
  });
}

/** CLUSTER INFO of a node as key → value. */
async function clusterInfo(port: number): Promise<Record<string, string>> {
  const text = await redisCommand(port, ['CLUSTER', 'INFO']);
  const info: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0) info[line.slice(0, at)] = line.slice(at + 1).trim();
  }
  return info;
}

export async function startRedisCluster(opts: { masters?: number } = {}): Promise<RedisClusterHandle> {
  const masters = opts.masters ?? 3;
  if (!Number.isInteger(masters) || masters < 3) throw new Error(`a Redis Cluster needs at least 3 masters (asked for ${masters})`);
  const redisServer = findExecutable('redis-server', ['/usr/bin', '/usr/local/bin']);
  const redisCli = findExecutable('redis-cli', ['/usr/bin', '/usr/local/bin']);
  if (!redisServer || !redisCli) throw new Error('redis-server and redis-cli are needed for a local Redis Cluster: install Redis (apt-get install redis-server)');

  const dir = await makeTempDir('smsblossom-redis-cluster-');
  const nodes: RedisNode[] = [];
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await Promise.all(nodes.map((node) => terminate(node.child)));
      await removeTempDir(dir);
    })());

  try {
    const taken = new Set<number>();
    for (let i = 0; i < masters; i++) nodes.push(await startClusterNode(redisServer, dir, taken));
    const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);

    const created = await runToEnd(redisCli, ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], 60_000);
    if (created.code !== 0) throw new Error(`redis-cli --cluster create ${addresses.join(' ')} failed (code ${created.code}):\n${created.output}`);

    // Every node must agree: all slots served, every master known, state ok.
    for (const node of nodes) {
      await pollUntil(
        `Redis Cluster state on 127.0.0.1:${node.port}`,
        async () => {
          const info = await clusterInfo(node.port);
          const ready =
            info.cluster_state === 'ok' &&
            Number(info.cluster_slots_ok) === CLUSTER_SLOTS &&
            Number(info.cluster_known_nodes) === masters &&
            Number(info.cluster_size) === masters;
          if (!ready) throw new Error(`cluster_state:${info.cluster_state} slots_ok:${info.cluster_slots_ok} known_nodes:${info.cluster_known_nodes} size:${info.cluster_size}`);
          return true;
        },
        () => (node.child.hasExited() ? `${node.child.describeExit()}\n${tail(path.join(dir, `redis-${node.port}.log`))}` : undefined),
      );
    }
    return { nodes: addresses, nodesEnv: addresses.join(','), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// PgBouncer

/** Absolute path of the pgbouncer binary when installed (Debian puts it in /usr/sbin, which may not be on PATH). */
export function pgbouncerPath(): string | undefined {
  return findExecutable('pgbouncer', ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']);
}

/** uid and gid of the `postgres` user, or undefined when there is none. */
export function postgresUser(): { uid: number; gid: number } | undefined {
  try {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return undefined;
  }
}

/** Whether a pg client gets `SELECT 1` answered at `url`. */
async function answersSelect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const res = await client.query<{ one: number }>('SELECT 1 AS one');
    return res.rows[0]?.one === 1;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function startPgBouncer(opts: { database: string; poolSize?: number }): Promise<PgBouncerHandle> {
  const binary = pgbouncerPath();
  if (!binary) throw new Error('pgbouncer is not installed (looked in /usr/sbin, /usr/bin, /usr/local/* and PATH): run `apt-get install pgbouncer` (CI installs it in .ci/run)');
  const { database } = opts;
  if (!/^[A-Za-z0-9_]+$/.test(database)) throw new Error(`startPgBouncer: database name "${database}" must be letters, digits and _ only`);
  const poolSize = opts.poolSize ?? 20;
  if (!Number.isInteger(poolSize) || poolSize < 1) throw new Error(`startPgBouncer: poolSize must be a positive integer (got ${poolSize})`);

  // The PostgreSQL the tests use (the global setup may have started a private one on another port).
  const upstream = new URL(testDatabaseUrl());
  const upstreamHost = upstream.hostname || '127.0.0.1';
  const upstreamPort = upstream.port || '5432';

  const root = process.getuid?.() === 0;
  const runAs = root ? postgresUser() : undefined;
  if (root && !runAs) throw new Error('pgbouncer refuses to run as root and there is no `postgres` user to run it as');

  const dir = await makeTempDir('smsblossom-pgbouncer-');
  const ini = path.join(dir, 'pgbouncer.ini');
  const userlist = path.join(dir, 'userlist.txt');
  const logfile = path.join(dir, 'pgbouncer.log');
  await fsp.writeFile(userlist, '"postgres" ""\n"root" ""\n');
  if (runAs) {
    await fsp.chmod(dir, 0o700);
    await fsp.chown(dir, runAs.uid, runAs.gid);
    await fsp.chown(userlist, runAs.uid, runAs.gid);
  }

  let child: Child | undefined;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (child) await terminate(child);
      await removeTempDir(dir);
    })());

  try {
    let lastFailure = '';
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const port = await freePort();
      await fsp.writeFile(
        ini,
        [
          '[databases]',
          `${database} = host=${upstreamHost} port=${upstreamPort} dbname=${database} user=postgres`,
          '',
          '[pgbouncer]',
          'listen_addr = 127.0.0.1',
          `listen_port = ${port}`,
          // Empty: no Unix socket.
          'unix_socket_dir =',
          'auth_type = trust',
          `auth_file = ${userlist}`,
          'pool_mode = transaction',
          `default_pool_size = ${poolSize}`,
          'max_client_conn = 500',
          // Not `options`: the service must not depend on startup options behind a pooler.
          'ignore_startup_parameters = extra_float_digits',
          `logfile = ${logfile}`,
          `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
          '',
        ].join('\n'),
      );
      if (runAs) await fsp.chown(ini, runAs.uid, runAs.gid);
      let stderr = '';
      const proc = spawnChild(binary, [ini], { stdio: ['ignore', 'ignore', 'pipe'], ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}) });
      proc.stderr?.on('data', (chunk: Buffer) => (stderr = `${stderr}${chunk.toString()}`.slice(-3000)));
      child = track(proc);
      const url = `postgres://postgres@127.0.0.1:${port}/${database}`;
      const current = child;
      try {
        await pollUntil(
          `pgbouncer on 127.0.0.1:${port} in front of ${upstreamHost}:${upstreamPort}/${database}`,
          async () => ((await answersSelect(url)) ? true : undefined),
          () => (current.hasExited() ? `${current.describeExit()}\n${stderr || tail(logfile)}` : undefined),
        );
        return { url, port, stop };
      } catch (err) {
        lastFailure = (err as Error).message;
        const died = current.hasExited();
        await terminate(current);
        // Still running yet not answering: PostgreSQL or the config is at fault, not the port; do not retry.
        if (!died) break;
      }
    }
    throw new Error(`could not start pgbouncer: ${lastFailure}`);
  } catch (err) {
    await stop();
    throw err;
  }
}
