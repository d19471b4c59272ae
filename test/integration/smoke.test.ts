/**
 * `npm run smoke` (scripts/enqueueSmoke.ts) as a developer runs it, in a process of its own: it passes on PGlite and on
 * PostgreSQL, exits by itself, and leaves no Redis key and no database schema behind.
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.js';
import { run } from '../helpers/spawn.js';
import { DB_KINDS, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from '../helpers/system.js';

async function keysUnder(prefix: string): Promise<string[]> {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    return await redis.keys(`${prefix}*`);
  } finally {
    redis.disconnect();
  }
}

async function schemaExists(schema: string): Promise<boolean> {
  const db = await openDatabase({ url: TEST_DATABASE_URL, schema: 'public', poolSize: 1, dataDir: 'memory://' });
  try {
    return (await db.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [schema])).length === 1;
  } finally {
    await db.close();
  }
}

describe.each(DB_KINDS)('npm run smoke on %s', (kind) => {
  it('passes, exits by itself and leaves no keys or rows behind', async () => {
    const prefix = `smsblossom-test:${uniqueName('smoke')}`;
    const result = await run(
      'npm',
      ['run', '--silent', 'smoke'],
      { REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix, ...(kind === 'postgres' ? { DATABASE_URL: TEST_DATABASE_URL } : {}) },
      // Exits by itself well within this, or `run` kills it and fails the test.
      120_000,
    );
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toContain('All jobs ended as expected');
    expect(result.stdout).toMatch(/campaigns:batch .* failed as expected \(attempt 1\): .*campaignId: /);
    expect(result.stdout).toMatch(/delivery:send .* completed \{"status":"sent"/);
    expect(result.stdout).toMatch(/webhook→delivery:orders\/paid .* delivered/);
    expect(await keysUnder(prefix)).toEqual([]);
    const schema = /PostgreSQL schema (\S+);/.exec(result.stdout)?.[1];
    if (kind === 'postgres') {
      expect(schema).toBeDefined();
      expect(await schemaExists(schema!)).toBe(false);
    } else {
      expect(result.stdout).toContain('an in-memory PGlite');
    }
  }, 150_000);
});
