/**
 * The topology harness (test/helpers/topology.ts) brings up what it promises: a 3-master Redis Cluster that an ioredis
 * `Cluster` reads and writes across slots on every master, and a PgBouncer in transaction pooling mode in front of the
 * test PostgreSQL — transactions go through, one server connection is shared by two clients (session state such as a
 * SQL PREPARE leaks from one to the other), and a client sending the `options` startup parameter is refused. Both stop
 * cleanly, and stopping twice is harmless.
 */
import { sql } from 'drizzle-orm';
import { Cluster } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.js';
import { param } from '../../src/db/prepared.js';
import { portAccepts } from '../helpers/spawn.js';
import { pgbouncerPath, startPgBouncer, startRedisCluster, type PgBouncerHandle, type RedisClusterHandle } from '../helpers/topology.js';

describe('Redis Cluster harness', () => {
  let cluster: RedisClusterHandle;
  let client: Cluster;

  beforeAll(async () => {
    cluster = await startRedisCluster();
    client = new Cluster(
      cluster.nodes.map((node) => {
        const [host, port] = node.split(':');
        return { host: host!, port: Number(port) };
      }),
    );
  }, 120_000);
  afterAll(async () => {
    await client?.quit().catch(() => undefined);
    await cluster?.stop();
  });

  it('has three masters, all slots served, and stores keys on each of them', async () => {
    expect(cluster.nodes).toHaveLength(3);
    expect(cluster.nodesEnv).toBe(cluster.nodes.join(','));

    const info = (await client.cluster('INFO')) as string;
    expect(info).toContain('cluster_state:ok');
    expect(info).toMatch(/cluster_known_nodes:3\r?\n/);
    expect(info).toMatch(/cluster_size:3\r?\n/);
    const nodesText = (await client.cluster('NODES')) as string;
    const masters = nodesText.trim().split('\n').filter((line) => line.split(' ')[2]?.split(',').includes('master'));
    expect(masters).toHaveLength(3);

    // One key per master: keys whose slots fall in each master's slot ranges (CLUSTER SLOTS).
    const slots = await client.cluster('SLOTS');
    const keyFor = new Map<number, string>();
    for (let i = 0; keyFor.size < 3 && i < 1000; i++) {
      const key = `topology:${i}`;
      const slot = (await client.cluster('KEYSLOT', key)) as number;
      const owner = slots.find(([from, to]) => slot >= from && slot <= to)?.[2]?.[1];
      if (owner !== undefined && !keyFor.has(owner)) keyFor.set(owner, key);
    }
    expect(keyFor.size).toBe(3);

    for (const [port, key] of keyFor) await client.set(key, `on ${port}`);
    for (const [port, key] of keyFor) expect(await client.get(key)).toBe(`on ${port}`);
    const sizes = await Promise.all(client.nodes('master').map((node) => node.dbsize()));
    expect(sizes).toEqual([1, 1, 1]);
  });

  it('stop() ends every node and can be called again', async () => {
    const extra = await startRedisCluster();
    const ports = extra.nodes.map((node) => Number(node.split(':')[1]));
    await extra.stop();
    await extra.stop();
    expect(await Promise.all(ports.map((port) => portAccepts(port)))).toEqual([false, false, false]);
  }, 120_000);
});

describe('PgBouncer harness', () => {
  let bouncer: PgBouncerHandle;

  beforeAll(async () => {
    if (!pgbouncerPath()) throw new Error('pgbouncer is not installed: run `apt-get install pgbouncer` (CI installs it)');
    // One server connection: what two clients share shows the pooling mode.
    bouncer = await startPgBouncer({ database: 'test', poolSize: 1 });
  }, 120_000);
  afterAll(async () => {
    await bouncer?.stop();
  });

  const connect = async (extra: pg.ClientConfig = {}) => {
    const client = new pg.Client({ connectionString: bouncer.url, connectionTimeoutMillis: 10_000, ...extra });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  };

  it('answers queries and runs a transaction', async () => {
    expect(bouncer.url).toBe(`postgres://postgres@127.0.0.1:${bouncer.port}/test`);
    const client = await connect();
    try {
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await client.query('BEGIN');
      await client.query('CREATE TEMP TABLE topology_probe (n int) ON COMMIT DROP');
      await client.query('INSERT INTO topology_probe VALUES (1), (2)');
      expect((await client.query('SELECT sum(n)::int AS total FROM topology_probe')).rows).toEqual([{ total: 3 }]);
      await client.query('COMMIT');
    } finally {
      await client.end();
    }
  });

  it('pools by transaction: two connected clients share the one server connection', async () => {
    const a = await connect();
    const b = await connect();
    try {
      // In session mode b would wait for a to disconnect; here both are answered, by the same backend.
      const pidA = (await a.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      const pidB = (await b.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      expect(pidA).toBeTypeOf('number');
      expect(pidB).toBe(pidA);
      // Session state is the server connection's, not the client's: a's SQL PREPARE is b's too.
      await a.query('PREPARE topology_shared AS SELECT 42 AS answer');
      try {
        expect((await b.query('EXECUTE topology_shared')).rows).toEqual([{ answer: 42 }]);
      } finally {
        await a.query('DEALLOCATE topology_shared');
      }
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('refuses the options startup parameter', async () => {
    await expect(connect({ options: '-c statement_timeout=5000' })).rejects.toThrow(/unsupported/i);
  });

  it('stop() ends pgbouncer and can be called again', async () => {
    const extra = await startPgBouncer({ database: 'test' });
    expect(await portAccepts(extra.port)).toBe(true);
    await extra.stop();
    await extra.stop();
    expect(await portAccepts(extra.port)).toBe(false);
  }, 60_000);
});

describe('the service database behind PgBouncer in transaction mode (DATABASE_POOL_MODE)', () => {
  let bouncer: PgBouncerHandle;
  beforeAll(async () => {
    // Two server connections for four clients: consecutive statements of one client land on either.
    bouncer = await startPgBouncer({ database: 'test', poolSize: 2 });
  }, 120_000);
  afterAll(async () => {
    await bouncer?.stop();
  });

  const open = (poolMode: 'session' | 'transaction', schema = 'public') =>
    openDatabase({ url: bouncer.url, schema, poolSize: 4, poolMode, dataDir: 'memory://' });

  it('session mode sends the schema as a startup option, which the pooler refuses: the setting is needed', async () => {
    const db = await open('session');
    try {
      await expect(db.ping()).rejects.toThrow(/unsupported startup parameter/i);
    } finally {
      await db.close();
    }
  });

  it('transaction mode runs prepared hot-path queries from many clients at once: statements go unnamed', async () => {
    const db = await open('transaction');
    try {
      const probe = db.db
        .select({ n: sql<number>`${param('n')}::int + 1` })
        .from(sql`(SELECT 1) AS one`)
        .prepare('topology_probe');
      const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => probe.execute({ n: i })));
      expect(answers.map((rows) => Number(rows[0]!.n))).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      expect(await db.transaction(async (tx) => (await tx.query<{ n: number }>('SELECT 2 AS n'))[0]!.n)).toBe(2);
    } finally {
      await db.close();
    }
  });

  it('refuses a schema other than the role search_path, saying what to set', async () => {
    await expect(open('transaction', 'elsewhere')).rejects.toThrow(/DATABASE_POOL_MODE=transaction: .*not DATABASE_SCHEMA=elsewhere.*ALTER ROLE <user> SET search_path = "elsewhere", public/);
  });
});
