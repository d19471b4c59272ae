import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds dist/ when stale: some tests run the compiled service (bin/smsblossom.js, `npm start`). Starts a private
    // PostgreSQL and redis-server when none answers (test/globalServices.ts).
    globalSetup: ['test/buildDist.ts', 'test/globalServices.ts'],
    // Integration tests talk to real Redis and PostgreSQL; each test file uses its own queue prefix and schema.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
