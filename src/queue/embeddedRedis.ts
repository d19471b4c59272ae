/**
 * For `npm start` on a machine with no Redis running: when REDIS_URL is unset, nothing answers on localhost:6379 and
 * `redis-server` is on the PATH, start a private one under DATA_DIR (AOF on, so jobs survive a restart) on a free
 * loopback port, and stop it on exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../logger.js';
import { assertRedisReachable } from './redis.js';

export interface EmbeddedRedis {
  url: string;
  stop(): Promise<void>;
}

/** A free TCP port on the loopback interface (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function onPath(binary: string): Promise<boolean> {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const dir of dirs) {
    try {
      await fs.access(path.join(dir, binary), fs.constants.X_OK);
      return true;
    } catch {
      // keep looking
    }
  }
  return false;
}

export async function startEmbeddedRedis(dataDir: string, logger: Logger): Promise<EmbeddedRedis | undefined> {
  if (!(await onPath('redis-server'))) return undefined;
  const dir = path.join(dataDir, 'redis');
  await fs.mkdir(dir, { recursive: true });
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '', '--maxmemory-policy', 'noeviction', '--logfile', path.join(dir, 'redis.log')],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      await assertRedisReachable({ url }, 500);
      break;
    } catch (err) {
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw new Error(`could not start the embedded redis-server: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  logger.info({ redisUrl: url, dir }, 'Started an embedded redis-server (REDIS_URL is unset and nothing answers on localhost:6379)');
  let stopping: Promise<void> | undefined;
  return {
    url,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null) child.kill('SIGTERM');
        await exited;
      })();
      return stopping;
    },
  };
}
