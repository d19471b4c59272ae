/**
 * The servers the suite runs on answer at TEST_DATABASE_URL and TEST_REDIS_URL: the machine's own, or the private
 * ones test/globalServices.ts started (test-services.test.ts runs this file with nothing listening at the defaults).
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { startTestSystem, TEST_DATABASE_URL, TEST_REDIS_URL } from '../helpers/system.js';

describe('the test services', () => {
  it('PostgreSQL and Redis answer, and a service starts on them (migrations applied, a job queued)', async () => {
    process.stdout.write(`TEST_DATABASE_URL=${TEST_DATABASE_URL} TEST_REDIS_URL=${TEST_REDIS_URL}\n`);
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      expect(await redis.ping()).toBe('PONG');
    } finally {
      redis.disconnect();
    }
    const sys = await startTestSystem('postgres');
    try {
      expect((await sys.db.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations'))[0]!.n).toBeGreaterThan(0);
      const job = await sys.queues.get('housekeeping').add('probe', {}, { delay: 60_000 });
      expect(await job.getState()).toBe('delayed');
    } finally {
      await sys.teardown();
    }
  });
});
