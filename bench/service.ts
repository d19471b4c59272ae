/**
 * One SMS Blossom under test, the way a user runs it: `smsblossom start` in its own process, in production mode, on the
 * local PostgreSQL (a schema of its own, reached through the SQL counter, its connections named so the meter finds
 * their backends) and the benchmark's private Redis (a prefix of its own), sending through the real Mitto client to
 * the sandbox, itself a separate process, whose delivery reports come back to the service's HTTP API.
 */
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import pg from 'pg';
// The secret the fault suite's webhooks (test/faults/lib/workload.ts) are signed with, which the benchmarks send too.
import { SHOPIFY_SECRET as SECRET } from '../test/helpers/system.js';
import { benchId, deleteKeys, type BenchContext } from './lib.js';
import { startMeter, type Meter } from './meter.js';
import { startSandbox, startService, type Proc } from './processes.js';
import { startSqlCounter, type SqlCounter } from './sqlCounter.js';

export const API_KEY = 'bench-shopify-api-key';
export const ADMIN = 'bench-admin-token-0123456789';
const MITTO_KEY = 'bench-mitto-key';

export interface ServiceRun {
  id: string;
  schema: string;
  service: Proc & { url: string };
  sandbox: Proc & { url: string };
  /** A direct connection to PostgreSQL (not counted, not metered), with the service's schema first on the search path. */
  db: pg.Client;
  sql: SqlCounter;
  /** Opens a measured window over the service, its backends, the sandbox and Redis. */
  meter(): Promise<Meter>;
  /** Merchant API call with a session token for `shop`; throws on a non-2xx answer. */
  merchant(shop: string, method: string, path: string, body?: unknown): Promise<any>;
  /** A Shopify session token for the merchant API of `shop`. */
  sessionToken(shop: string): Promise<string>;
}

export async function withService<T>(ctx: BenchContext, env: Record<string, string>, fn: (run: ServiceRun) => Promise<T>): Promise<T> {
  const id = benchId();
  const schema = `bench_${id}`;
  const prefix = `smsblossom-bench:${id}`;
  const applicationName = `smsblossom-bench-${id}`;
  const upstream = new URL(ctx.databaseUrl);
  const sql = await startSqlCounter({ host: upstream.hostname, port: Number(upstream.port || 5432) });
  const proxied = new URL(ctx.databaseUrl);
  proxied.host = sql.address;
  // A connection-string parameter wins over the pool's own application_name: the meter finds the backends by it.
  proxied.searchParams.set('application_name', applicationName);
  const db = new pg.Client({ connectionString: ctx.databaseUrl, application_name: 'smsblossom-bench-meter', options: `-c search_path=${schema},public` });
  let sandbox: (Proc & { url: string }) | undefined;
  let service: (Proc & { url: string }) | undefined;
  try {
    await db.connect();
    sandbox = await startSandbox(MITTO_KEY);
    service = await startService({
      NODE_ENV: 'production',
      LOG_LEVEL: ctx.logLevel,
      REDIS_URL: ctx.redisUrl,
      REDIS_PREFIX: prefix,
      REDIS_EMBEDDED: 'false',
      DATABASE_URL: proxied.toString(),
      DATABASE_SCHEMA: schema,
      SHOPIFY_API_SECRET: SECRET,
      SHOPIFY_API_KEY: API_KEY,
      ADMIN_TOKEN: ADMIN,
      // Shopify access tokens are stored encrypted; the bench's shops never install, but production requires a key.
      TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      SMS_PROVIDER: 'mitto',
      MITTO_API_URL: sandbox.url,
      MITTO_API_KEY: MITTO_KEY,
      ...ctx.serviceEnv,
      ...env,
    });
    const s = service;
    const sb = sandbox;
    const sessionToken = (shop: string) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ dest: `https://${shop}` })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuer(`https://${shop}/admin`)
        .setAudience(API_KEY)
        .setSubject('1')
        .setIssuedAt(now)
        .setExpirationTime(now + 3600)
        .sign(new TextEncoder().encode(SECRET));
    };
    return await fn({
      id,
      schema,
      service: s,
      sandbox: sb,
      db,
      sql,
      meter: () =>
        startMeter({
          processes: { service: s.pid, sandbox: sb.pid },
          rssOf: s.pid,
          pg: { client: db, applicationName },
          redis: ctx.redis,
          sql,
        }),
      merchant: async (shop, method, path, body) => {
        const res = await fetch(`${s.url}${path}`, {
          method,
          headers: { authorization: `Bearer ${await sessionToken(shop)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
        return res.json();
      },
      sessionToken,
    });
  } finally {
    await service?.stop();
    await sandbox?.stop();
    await sql.close();
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await db.end().catch(() => undefined);
    await deleteKeys(ctx.redis, prefix);
  }
}
