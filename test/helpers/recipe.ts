/**
 * The "Scaling out" recipe of the README as separate processes, for the scale-out suite and its benchmark: where Redis
 * and PostgreSQL are (one Redis and PostgreSQL reached directly, or a 3-master Redis Cluster and PostgreSQL behind
 * PgBouncer in transaction mode), and the service started on them as API and worker processes of given roles, with
 * the Mitto-compatible sandbox as the provider.
 */
import pg from 'pg';
import type { RedisSettings } from '../../src/queue/redis.js';
import { createSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { freePort } from '../faults/lib/services.js';
import { SHOPIFY_API_KEY } from './merchant.js';
import { isAlive, spawnLogged, type LoggedProcess } from './spawn.js';
import { ADMIN_TOKEN, deleteRedisPrefix, dropSchema, SHOPIFY_SECRET, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from './system.js';
import { startPgBouncer, startRedisCluster, type PgBouncerHandle, type RedisClusterHandle } from './topology.js';

const MITTO_KEY = 'scaleout-mitto-key';

/** Where the processes find Redis and PostgreSQL, what the test reads them with, and how it cleans up. */
export interface Topology {
  env: Record<string, string>;
  redis: RedisSettings;
  prefix: string;
  /** PostgreSQL as the test reads it: directly, with the schema the service uses first. */
  databaseUrl: string;
  schema: string;
  stop(): Promise<void>;
}

export async function singleNode(): Promise<Topology> {
  const name = uniqueName('scale');
  const prefix = `smsblossom-test:${name}`;
  return {
    env: { REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix, DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: name },
    redis: { url: TEST_REDIS_URL },
    prefix,
    databaseUrl: TEST_DATABASE_URL,
    schema: name,
    async stop() {
      await dropSchema(name);
      await deleteRedisPrefix(prefix);
    },
  };
}

/** A Redis Cluster of three masters and a database of its own behind PgBouncer (transaction mode, schema `public`). */
export async function scaledOut(): Promise<Topology> {
  const name = uniqueName('scale');
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  let cluster: RedisClusterHandle | undefined;
  let bouncer: PgBouncerHandle | undefined;
  const direct = new URL(TEST_DATABASE_URL);
  direct.pathname = `/${name}`;
  const stop = async () => {
    await bouncer?.stop();
    await cluster?.stop();
    const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  };
  try {
    cluster = await startRedisCluster({ masters: 3 });
    bouncer = await startPgBouncer({ database: name, poolSize: 20 });
  } catch (err) {
    await stop();
    throw err;
  }
  const prefix = `{${name}}`;
  return {
    env: { REDIS_CLUSTER_NODES: cluster.nodesEnv, REDIS_PREFIX: prefix, DATABASE_URL: bouncer.url, DATABASE_POOL_MODE: 'transaction', DATABASE_SCHEMA: 'public' },
    redis: { url: TEST_REDIS_URL, cluster: { nodes: cluster.nodes.map((n) => ({ host: n.split(':')[0]!, port: Number(n.split(':')[1]) })), tls: false } },
    prefix,
    databaseUrl: direct.toString(),
    schema: 'public',
    stop,
  };
}

export interface LogLine {
  msg?: string;
  pid?: number;
  url?: string;
  queue?: string;
  schedulers?: number;
}

export const TOPOLOGIES: Array<[string, () => Promise<Topology>]> = [
  ['one Redis and PostgreSQL reached directly', singleNode],
  ['a 3-master Redis Cluster and PostgreSQL behind PgBouncer in transaction mode', scaledOut],
];

export interface RecipeOptions {
  apis?: number;
  /** `worker --queues events,automations` processes. */
  eventsWorkers?: number;
  /** `worker --queues delivery,campaigns` processes. */
  deliveryWorkers?: number;
  /** `worker --queues housekeeping,sync` processes with the schedules on. */
  housekeepingWorkers?: number;
  env?: Record<string, string>;
}

export interface Recipe {
  apis: string[];
  sandbox: Sandbox;
  processes: Array<LoggedProcess<LogLine>>;
  /** SIGTERM to every process, then the sandbox; the topology is the caller's. */
  stop(): Promise<void>;
}

/** Migrates once, then starts the API and worker processes on `topology` and waits until each one serves. */
export async function startRecipe(topology: Topology, o: RecipeOptions = {}): Promise<Recipe> {
  const sandbox = await createSandbox({ apiKey: MITTO_KEY });
  const providerUrl = await sandbox.listen(0, '127.0.0.1');
  const apiPorts: number[] = [];
  for (let i = 0; i < (o.apis ?? 2); i++) apiPorts.push(await freePort());
  const common = {
    ...topology.env,
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    SHOPIFY_API_SECRET: SHOPIFY_SECRET,
    SHOPIFY_API_KEY,
    ADMIN_TOKEN,
    SMS_PROVIDER: 'mitto',
    MITTO_API_URL: providerUrl,
    MITTO_API_KEY: MITTO_KEY,
    // Delivery reports come back to the first API process, whichever worker sent the message.
    PUBLIC_URL: `http://127.0.0.1:${apiPorts[0]}`,
    REDIS_EMBEDDED: 'false',
    HOUSEKEEPING_SCHEDULES: 'false',
    CAMPAIGN_BATCH_SIZE: '250',
    DATABASE_POOL_SIZE: '5',
    ...o.env,
  };
  const processes: Array<LoggedProcess<LogLine>> = [];
  const start = (args: string[], vars: Record<string, string> = {}) => {
    const p = spawnLogged<LogLine>(process.execPath, ['dist/cli.js', ...args], { ...common, ...vars });
    processes.push(p);
    return p;
  };
  const stop = async () => {
    for (const p of processes) if (p.proc.pid && isAlive(p.proc.pid)) p.proc.kill('SIGTERM');
    await Promise.all(processes.map((p) => p.exited));
    await sandbox.close();
  };
  try {
    // The schema first, once, as a deploy step would; every process then finds it up to date.
    const migrate = start(['migrate']);
    const migrated = await migrate.exited;
    if (migrated.code !== 0) throw new Error(`migrate exited ${JSON.stringify(migrated)}: ${migrate.stderr()}`);
    const api = apiPorts.map((port) => start(['api'], { PORT: String(port) }));
    const workers = [
      ...Array.from({ length: o.eventsWorkers ?? 1 }, () => start(['worker', '--queues', 'events,automations'])),
      ...Array.from({ length: o.deliveryWorkers ?? 2 }, () => start(['worker', '--queues', 'delivery,campaigns'])),
      ...Array.from({ length: o.housekeepingWorkers ?? 2 }, () => start(['worker', '--queues', 'housekeeping,sync'], { HOUSEKEEPING_SCHEDULES: 'true' })),
    ];
    const apis: string[] = [];
    for (const p of api) apis.push((await p.waitForLine('listening', (l) => l.msg === 'SMS Blossom is listening')).url!);
    for (const p of workers) await p.waitForLine('workers started', (l) => l.msg === 'Workers started');
    return { apis, sandbox, processes, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A pool on the topology's database as the service sees it (its schema first), for checks and seeding. */
export function inspectDatabase(topology: Topology): pg.Pool {
  return new pg.Pool({ connectionString: topology.databaseUrl, max: 3, options: `-c search_path=${topology.schema},public` });
}

/** A shop with quiet hours and the cap off (counts must not depend on the hour) and `n` subscribed contacts tagged `fan`. */
export async function seedCampaignShop(db: pg.Pool, shop: string, n: number, phonePrefix: string): Promise<number> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO shops (domain, country_code, settings) VALUES ($1, 'CH', '{"quietHours": {"enabled": false}, "frequencyCap": null, "sender": "Blossom"}'::jsonb) RETURNING id`,
    [shop],
  );
  await db.query(
    `INSERT INTO contacts (shop_id, phone, first_name, country_code, sms_consent, tags)
     SELECT $1::bigint, $3 || lpad(g::text, 7, '0'), 'Fan' || g, 'CH', 'subscribed', ARRAY['fan'] FROM generate_series(1, $2::int) AS g`,
    [rows[0]!.id, n, phonePrefix],
  );
  return Number(rows[0]!.id);
}

/** A shop domain of its own for a run. */
export const uniqueShopDomain = (kind: string) => `${uniqueName(kind)}.myshopify.com`.replace(/_/g, '-');
