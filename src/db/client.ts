/**
 * Opens the database: PostgreSQL through a `pg` pool when a URL is configured, else the embedded PGlite under the data
 * directory. Both are handed to Drizzle; the rest of the code sees one {@link Database} and cannot tell them apart.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import pg from 'pg';
import { lockPgliteDirectory } from './pgliteLock.js';
import { schema } from './schema.js';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface Querier {
  exec(sqlText: string): Promise<void>;
  query<T = Record<string, unknown>>(sqlText: string, params?: unknown[]): Promise<T[]>;
}

export interface Database {
  readonly db: Db;
  readonly kind: 'postgres' | 'pglite';
  readonly schema: string;
  /** Runs SQL text of one or more statements with no parameters (migrations). */
  exec(sqlText: string): Promise<void>;
  /** Runs one parameterised statement and returns its rows. */
  query<T = Record<string, unknown>>(sqlText: string, params?: unknown[]): Promise<T[]>;
  /** Runs `fn` in one transaction on one session: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Querier) => Promise<T>): Promise<T>;
  /** Round-trip time of `SELECT 1`, or a rejection. */
  ping(): Promise<number>;
  /** Idempotent. */
  close(): Promise<void>;
}

export interface DatabaseSettings {
  url: string | undefined;
  schema: string;
  poolSize: number;
  /** `transaction`: reached through a pooler in transaction mode (see {@link openPostgres}). Default `session`. */
  poolMode?: 'session' | 'transaction';
  /** Directory for the embedded database; `memory://` keeps it in memory (tests). */
  dataDir: string;
}

export async function openDatabase(settings: DatabaseSettings): Promise<Database> {
  return settings.url ? openPostgres(settings.url, settings) : openPglite(settings);
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * A `pg` client that sends every statement unnamed. Behind a pooler in transaction mode consecutive statements may run
 * on different server sessions, so a statement prepared under a name on one is unknown on the next (PgBouncer before
 * 1.21 forwards the name as is). The unnamed statement lives for one Parse/Bind/Execute, which the pooler keeps on one
 * session: the prepared queries of the hot paths still skip the query builder, only the server plans them each time.
 */
class UnnamedStatementClient extends pg.Client {
  override query(...args: unknown[]): any {
    const [config, ...rest] = args;
    if (config && typeof config === 'object' && 'name' in config && typeof (config as { submit?: unknown }).submit !== 'function') {
      const { name: _name, ...unnamed } = config as Record<string, unknown>;
      return (super.query as (...a: unknown[]) => unknown)(unnamed, ...rest);
    }
    return (super.query as (...a: unknown[]) => unknown)(...args);
  }
}

/**
 * PostgreSQL through a `pg` pool. In `session` mode (direct, or a pooler in session mode) each connection is told the
 * schema by a startup option and hot statements are prepared by name once per connection. In `transaction` mode (PgBouncer
 * `pool_mode = transaction`) there is no session state to rely on: no startup options (the pooler does not pass them), so
 * the schema must be the role's own `search_path` (checked here), and statements go unnamed. Everything else the
 * service does already fits that mode: a transaction runs on one checked-out client from BEGIN to COMMIT, the migrator's
 * lock is transaction-scoped, and no statement uses LISTEN, session advisory locks or session SETs.
 */
async function openPostgres(url: string, settings: DatabaseSettings): Promise<Database> {
  const pooled = settings.poolMode === 'transaction';
  const pool = new pg.Pool({
    connectionString: url,
    max: settings.poolSize,
    connectionTimeoutMillis: 3000,
    idleTimeoutMillis: 30_000,
    // Every session sees our schema first; the schema itself is created by the migrator.
    ...(pooled ? { Client: UnnamedStatementClient } : { options: `-c search_path=${quoteIdent(settings.schema)},public` }),
    application_name: 'smsblossom',
  });
  if (pooled) await assertPooledSchema(pool, settings.schema);
  // A dropped idle connection must not crash the process; the pool replaces it on next use.
  pool.on('error', () => undefined);
  // Nor may a dropped connection that is checked out (a transaction in progress when PostgreSQL restarts): the pool only
  // listens on idle clients, and an 'error' event with no listener is an uncaught exception. The query in flight still
  // rejects, so the caller sees the failure.
  // Such a client is handed back (and so destroyed) as soon as it dies. Drizzle's
  // transaction runs BEGIN before its try/finally: when BEGIN fails on a dead connection it never releases the client,
  // and each such leak shrinks the pool for good, until `pool.end()` waits forever. pg-pool assigns `client.release` at
  // each checkout; it is captured here and made idempotent, since the owner may still call it afterwards.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
    let poolRelease: ((err?: Error | boolean) => void) | undefined;
    const releaseOnce = (err?: Error | boolean) => {
      const release = poolRelease;
      if (!release) return;
      poolRelease = undefined;
      client.off('error', onDead);
      client.off('end', onDead);
      release(err);
    };
    const onDead = (err?: unknown) => releaseOnce(err instanceof Error ? err : new Error('database connection ended'));
    Object.defineProperty(client, 'release', {
      configurable: true,
      get: () => releaseOnce,
      set: (fn: (err?: Error | boolean) => void) => {
        poolRelease = fn;
        client.once('error', onDead);
        client.once('end', onDead);
      },
    });
  });
  let closed: Promise<void> | undefined;
  return {
    db: drizzlePg({ client: pool, schema }) as unknown as Db,
    kind: 'postgres',
    schema: settings.schema,
    async exec(sqlText) {
      await pool.query(sqlText);
    },
    async query<T>(sqlText: string, params: unknown[] = []) {
      return (await pool.query(sqlText, params)).rows as T[];
    },
    async transaction(fn) {
      const conn = await pool.connect();
      // A session whose ROLLBACK failed may still be inside the transaction; back in the pool it would fail every
      // statement of its next user ("current transaction is aborted"), so it is destroyed instead.
      let broken = false;
      try {
        await conn.query('BEGIN');
        const result = await fn({
          exec: async (text) => void (await conn.query(text)),
          query: async <T>(text: string, params: unknown[] = []) => (await conn.query(text, params)).rows as T[],
        });
        await conn.query('COMMIT');
        return result;
      } catch (err) {
        await conn.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw err;
      } finally {
        conn.release(broken);
      }
    },
    async ping() {
      const started = performance.now();
      await pool.query('SELECT 1');
      return performance.now() - started;
    },
    close() {
      closed ??= pool.end();
      return closed;
    },
  };
}

/** Behind a transaction-mode pooler the schema comes from the role's `search_path`: refuse to start on another one. */
async function assertPooledSchema(pool: pg.Pool, schema: string): Promise<void> {
  let row: { current: string | null; path: string };
  try {
    row = (await pool.query<{ current: string | null; path: string }>(`SELECT current_schema() AS current, current_setting('search_path') AS path`)).rows[0]!;
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  const explicit = row.path
    .split(',')
    .map((p) => p.trim().replace(/^"(.*)"$/, '$1'))
    .find((p) => p !== '$user' && p !== '');
  if (row.current === schema || explicit === schema) return;
  await pool.end().catch(() => undefined);
  throw new Error(
    `DATABASE_POOL_MODE=transaction: the pooler's sessions use search_path "${row.path}", not DATABASE_SCHEMA=${schema}. A pooler in ` +
      `transaction mode passes no startup options, so set the schema on the role: ALTER ROLE <user> SET search_path = ${quoteIdent(schema)}, public`,
  );
}

async function openPglite(settings: DatabaseSettings): Promise<Database> {
  let location: string | undefined;
  if (settings.dataDir !== 'memory://') {
    location = path.join(settings.dataDir, 'pglite');
    await fs.mkdir(location, { recursive: true });
  }
  // One process per embedded database: another one's writes would be lost (see pgliteLock.ts).
  const unlock = location ? lockPgliteDirectory(settings.dataDir) : () => undefined;
  const client = location ? new PGlite(location) : new PGlite();
  await client.waitReady.catch((err: unknown) => {
    unlock();
    throw err;
  });
  await client.exec(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(settings.schema)}; SET search_path TO ${quoteIdent(settings.schema)}, public;`);
  let closed: Promise<void> | undefined;
  return {
    db: drizzlePglite({ client, schema }) as unknown as Db,
    kind: 'pglite',
    schema: settings.schema,
    async exec(sqlText) {
      await client.exec(sqlText);
    },
    async query<T>(sqlText: string, params: unknown[] = []) {
      return (await client.query<T>(sqlText, params)).rows;
    },
    transaction(fn) {
      return client.transaction((tx) =>
        fn({
          exec: async (text) => void (await tx.exec(text)),
          query: async <T>(text: string, params: unknown[] = []) => (await tx.query<T>(text, params)).rows,
        }),
      );
    },
    async ping() {
      const started = performance.now();
      await client.query('SELECT 1');
      return performance.now() - started;
    },
    close() {
      closed ??= (client.closed ? Promise.resolve() : client.close()).finally(unlock);
      return closed;
    },
  };
}

/** The SQLSTATE of a database error; Drizzle wraps the driver's error in `DrizzleQueryError`, so look at causes too. */
export function sqlStateOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}
