import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('loadConfig', () => {
  it('gives the documented defaults', () => {
    const c = loadConfig({});
    expect(c.redis.url).toBe('redis://localhost:6379');
    expect(c.redis.urlWasSet).toBe(false);
    expect(c.redis.prefix).toBe('smsblossom:dev');
    expect(c.database.url).toBeUndefined();
    expect(c.database.schema).toBe('public');
    expect(c.dataDir.endsWith('.data')).toBe(true);
    expect(c.http.port).toBe(3000);
    expect(c.http.webhookBodyLimit).toBe(1024 * 1024);
    expect(c.logLevel).toBe('info');
    expect(c.shopify.usingDevSecret).toBe(true);
    expect(c.adminToken).toBeUndefined();
    expect(c.workers.queues).toEqual(['events', 'automations', 'campaigns', 'delivery', 'housekeeping']);
    expect(c.workers.concurrency.delivery).toBe(20);
  });

  it('is frozen all the way down', () => {
    const c = loadConfig({});
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.redis)).toBe(true);
    expect(Object.isFrozen(c.workers.concurrency)).toBe(true);
    expect(() => {
      (c.redis as { prefix: string }).prefix = 'x';
    }).toThrow();
  });

  it('reads every variable', () => {
    const c = loadConfig({
      REDIS_URL: 'redis://cache:6380/2',
      REDIS_PREFIX: '{smsblossom:prod}',
      DATABASE_URL: 'postgres://u@db/sms',
      DATABASE_SCHEMA: 'tenant_a',
      PORT: '8080',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'debug',
      SHOPIFY_API_SECRET: 's3cret',
      SHOPIFY_API_KEY: 'app-key',
      ADMIN_TOKEN: 'a-long-operator-token',
      WORKER_QUEUES: 'delivery, events',
      DELIVERY_CONCURRENCY: '50',
      WORKER_LOCK_DURATION_MS: '5000',
      WORKER_STALLED_INTERVAL_MS: '2000',
      WORKER_MAX_STALLED_COUNT: '4',
    });
    expect(c.redis).toMatchObject({ url: 'redis://cache:6380/2', urlWasSet: true, prefix: '{smsblossom:prod}', embedded: false });
    expect(c.database).toMatchObject({ url: 'postgres://u@db/sms', schema: 'tenant_a' });
    expect(c.http).toMatchObject({ port: 8080, host: '127.0.0.1' });
    expect(c.shopify).toEqual({ apiSecret: 's3cret', usingDevSecret: false, apiKey: 'app-key', usingDevApiKey: false });
    expect(c.workers.queues).toEqual(['delivery', 'events']);
    expect(c.workers.concurrency.delivery).toBe(50);
    expect(c.workers).toMatchObject({ lockDurationMs: 5000, stalledIntervalMs: 2000, maxStalledCount: 4 });
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ PORT: '', REDIS_URL: '  ' }).http.port).toBe(3000);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ REDIS_URL: 'http://localhost' }, 'REDIS_URL'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ WORKER_QUEUES: 'events,sms' }, 'WORKER_QUEUES'],
    [{ DELIVERY_CONCURRENCY: '0' }, 'DELIVERY_CONCURRENCY'],
    [{ ADMIN_TOKEN: 'short' }, 'ADMIN_TOKEN'],
    [{ REDIS_PREFIX: 'ends:' }, 'REDIS_PREFIX'],
    [{ NODE_ENV: 'production' }, 'SHOPIFY_API_SECRET'],
  ])('rejects %o naming %s', (env, variable) => {
    try {
      loadConfig(env);
      expect.unreachable('should have thrown');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
      expect((err as ConfigError).message.startsWith(`${variable}:`)).toBe(true);
      expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    }
  });

  it('never echoes a secret value in the error', () => {
    expect(() => loadConfig({ ADMIN_TOKEN: 'tiny' })).toThrow(/^ADMIN_TOKEN: must be at least 16 characters$/);
  });

  it('stops the process with exit code 2 and one line naming the variable', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'migrate'], {
      env: { ...process.env, PORT: 'not-a-port' },
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^smsblossom: invalid configuration: PORT: /);
  });
});
