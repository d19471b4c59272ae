/**
 * Where the tests find PostgreSQL and Redis: TEST_DATABASE_URL and TEST_REDIS_URL, else the local defaults. The global
 * setup (test/globalServices.ts) sets both to private servers it started when nothing answers at these addresses.
 */
export const DEFAULT_TEST_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
export const DEFAULT_TEST_REDIS_URL = 'redis://127.0.0.1:6379';

export const testDatabaseUrl = (): string => process.env.TEST_DATABASE_URL ?? DEFAULT_TEST_DATABASE_URL;
export const testRedisUrl = (): string => process.env.TEST_REDIS_URL ?? DEFAULT_TEST_REDIS_URL;
