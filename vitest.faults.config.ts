import { defineConfig } from 'vitest/config';

/** `npm run test:faults`: the fault-injection suite (private Redis and PostgreSQL servers, killed processes). */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.fault.ts'],
    // A private PostgreSQL and redis-server when none answers at TEST_DATABASE_URL / TEST_REDIS_URL.
    globalSetup: ['test/globalServices.ts'],
    pool: 'forks',
    // One file at a time: each one loads the machine on purpose, and timings (timeouts, reconcile waits) assume it.
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
  },
});
