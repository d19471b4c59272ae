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
    expect(c.workers.queues).toEqual(['events', 'automations', 'campaigns', 'delivery', 'housekeeping', 'sync']);
    expect(c.workers.concurrency.delivery).toBe(20);
  });

  it('sends campaigns 50 messages to a delivery job, one when the provider has a send rate (BullMQ limits jobs, not messages)', () => {
    expect(loadConfig({}).campaigns.sendBatch).toBe(50);
    expect(loadConfig({ CAMPAIGN_SEND_BATCH: '20' }).campaigns.sendBatch).toBe(20);
    expect(loadConfig({ CAMPAIGN_SEND_BATCH: '20', MITTO_RATE_LIMIT_PER_SEC: '30' }).campaigns.sendBatch).toBe(1);
    expect(() => loadConfig({ CAMPAIGN_SEND_BATCH: '0' })).toThrow(/CAMPAIGN_SEND_BATCH/);
    expect(() => loadConfig({ CAMPAIGN_SEND_BATCH: '501' })).toThrow(/CAMPAIGN_SEND_BATCH/);
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
    [{ NODE_ENV: 'production', SHOPIFY_API_SECRET: 's', PUBLIC_URL: 'https://x.example' }, 'MITTO_API_KEY'],
    [{ NODE_ENV: 'production', SHOPIFY_API_SECRET: 's', MITTO_API_KEY: 'k' }, 'PUBLIC_URL'],
    [{ TRUST_PROXY: 'yes please' }, 'TRUST_PROXY'],
    [{ HTTP_REQUEST_TIMEOUT_MS: '5' }, 'HTTP_REQUEST_TIMEOUT_MS'],
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

  it('production runs the sandbox only when told to, and reads TRUST_PROXY as a flag, a hop count or addresses', () => {
    const prod = { NODE_ENV: 'production', SHOPIFY_API_SECRET: 's', PUBLIC_URL: 'https://sms.example', TOKEN_ENCRYPTION_KEY: 'a'.repeat(64) };
    expect(loadConfig({ ...prod, SMS_PROVIDER: 'sandbox' }).sms.provider).toBe('sandbox');
    expect(loadConfig({ ...prod, MITTO_API_KEY: 'k' }).sms.provider).toBe('mitto');
    expect(loadConfig({}).http.trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).http.trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '2' }).http.trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8,127.0.0.1' }).http.trustProxy).toEqual(['10.0.0.0/8', '127.0.0.1']);
  });

  it('reads a Redis Cluster from REDIS_CLUSTER_NODES and refuses a prefix whose keys would not share a slot', () => {
    const c = loadConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:7001, 127.0.0.1:7002,[::1]:7003', REDIS_PREFIX: '{smsblossom}' });
    expect(c.redis.cluster).toEqual({ nodes: [{ host: '127.0.0.1', port: 7001 }, { host: '127.0.0.1', port: 7002 }, { host: '::1', port: 7003 }], tls: false });
    // A cluster is never replaced by an embedded server.
    expect(c.redis.embedded).toBe(false);
    expect(loadConfig({}).redis.cluster).toBeUndefined();
    const tls = loadConfig({ REDIS_CLUSTER_NODES: 'rediss://app:s3cret@a.example:6380,rediss://app:s3cret@b.example:6380', REDIS_PREFIX: 'sms:{prod}' });
    expect(tls.redis.cluster).toEqual({ nodes: [{ host: 'a.example', port: 6380 }, { host: 'b.example', port: 6380 }], username: 'app', password: 's3cret', tls: true });

    expect(() => loadConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:7001' })).toThrow(/^REDIS_PREFIX: must contain a \{hash tag\} when REDIS_CLUSTER_NODES is set.*REDIS_PREFIX=\{smsblossom\} \(got "smsblossom:dev"\)$/);
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:7001', REDIS_PREFIX: 'a:{}:b' })).toThrow(/^REDIS_PREFIX: must contain a \{hash tag\}/);
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:notaport', REDIS_PREFIX: '{s}' })).toThrow(/^REDIS_CLUSTER_NODES: each node must be host:port/);
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'redis://a:1@h:1,redis://b:2@h:2', REDIS_PREFIX: '{s}' })).toThrow(/^REDIS_CLUSTER_NODES: every node URL must name the same credentials/);
    // The password is never echoed.
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'redis://u:hunter2@h:1/3', REDIS_PREFIX: '{s}' })).toThrow(/^REDIS_CLUSTER_NODES: each node must be host:port \(entry 1 is not\)$/);
  });

  it('reads how PostgreSQL is reached: session by default, transaction behind a pooler in that mode', () => {
    expect(loadConfig({}).database.poolMode).toBe('session');
    expect(loadConfig({ DATABASE_POOL_MODE: 'transaction' }).database.poolMode).toBe('transaction');
    expect(() => loadConfig({ DATABASE_POOL_MODE: 'statement' })).toThrow(/^DATABASE_POOL_MODE: /);
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
