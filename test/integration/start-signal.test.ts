/**
 * `npm start` as an operator (or a process manager) runs it: the compiled service in dist/ (built by the suite's global
 * setup), started through npm. A SIGTERM to the npm process must reach Node, which stops within SHUTDOWN_TIMEOUT_MS:
 * its port closes, no process of the tree is left, and npm exits 0.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { isAlive, portAccepts, serviceEnv, spawnLogged } from '../helpers/spawn.js';
import { deleteRedisPrefix, dropSchema, SHOPIFY_SECRET, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from '../helpers/system.js';

const SHUTDOWN_TIMEOUT_MS = 10_000;
/** npm's own start-up and exit, and a loaded CI machine. */
const MARGIN_MS = 15_000;

const schema = uniqueName('startsig');
const prefix = `smsblossom-test:${uniqueName('startsig')}`;

interface LogLine {
  msg?: string;
  pid?: number;
  url?: string;
}

describe('npm start', () => {
  const pids: number[] = [];
  afterAll(async () => {
    // Only reached with a process left over when an assertion failed: do not leave it running.
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await dropSchema(schema);
    await deleteRedisPrefix(prefix);
  });

  it('stops on a SIGTERM to the npm process within SHUTDOWN_TIMEOUT_MS, closing its port, exit 0', { timeout: 120_000 }, async () => {
    const service = spawnLogged<LogLine>('npm', ['start'], serviceEnv(prefix, schema, { SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) }));
    const { proc: npm, lines, exited } = service;
    pids.push(npm.pid!);
    await service.waitForLine('the service to listen and start its workers', (l) => l.msg === 'Workers started');
    const listening = lines.find((l) => l.msg === 'SMS Blossom is listening')!;
    const nodePid = listening.pid!;
    pids.push(nodePid);
    // Node is npm's child, with no shell between them to swallow the signal.
    expect(nodePid).not.toBe(npm.pid);
    const ready = await fetch(new URL('/health/ready', listening.url));
    expect(ready.status).toBe(200);
    const port = Number(new URL(listening.url!).port);

    const signalledAt = Date.now();
    npm.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`npm start still running ${SHUTDOWN_TIMEOUT_MS + MARGIN_MS} ms after SIGTERM; stderr: ${service.stderr()}`)), SHUTDOWN_TIMEOUT_MS + MARGIN_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    const elapsed = Date.now() - signalledAt;

    expect(result, service.stderr()).toEqual({ code: 0, signal: null });
    expect(elapsed).toBeLessThan(SHUTDOWN_TIMEOUT_MS + MARGIN_MS);
    expect(lines.map((l) => l.msg)).toContain('Stopped');
    expect(isAlive(nodePid)).toBe(false);
    expect(await portAccepts(port)).toBe(false);
  });
});
