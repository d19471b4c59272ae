import { defineConfig } from 'vitest/config';

/**
 * `npm run test:scale-out`: the pipeline as separate processes, on one Redis with PostgreSQL reached directly and on a
 * 3-master Redis Cluster with PostgreSQL behind PgBouncer in transaction mode (test/scaleout/). Needs `redis-server` and
 * `pgbouncer` on the machine (CI installs pgbouncer).
 */
export default defineConfig({
  test: {
    include: ['test/scaleout/**/*.scaleout.ts'],
    // A private PostgreSQL and redis-server when none answers at TEST_DATABASE_URL / TEST_REDIS_URL.
    globalSetup: ['test/globalServices.ts'],
    pool: 'forks',
    // Each topology runs seven service processes: one file, one topology at a time.
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
  },
});
