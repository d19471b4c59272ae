/**
 * The `smsblossom` command as scripts use it: spawned through bin/smsblossom.js against the real PostgreSQL and Redis,
 * checking `--help` on every command and the exit codes (0 ok, 1 failure, 2 usage or configuration).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.js';
import { searchContacts } from '../../src/db/contacts.js';
import { getShopByDomain, upsertShop } from '../../src/db/shops.js';
import { migrate } from '../../src/db/migrate.js';
import { SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { run } from '../helpers/spawn.js';
import { deleteRedisPrefix, dropSchema, SHOPIFY_SECRET, startTestSystem, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from '../helpers/system.js';

const schema = uniqueName('cli');
const prefix = `smsblossom-test:${uniqueName('cli')}`;
const ENV = { DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema, REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix, REDIS_EMBEDDED: 'false' };
const cli = (args: string[], vars: Record<string, string> = ENV) => run(process.execPath, ['bin/smsblossom.js', ...args], vars, 60_000);

describe('smsblossom CLI', () => {
  const tmp = fs.mkdtemp(path.join(os.tmpdir(), 'smsblossom-cli-'));
  afterAll(async () => {
    await fs.rm(await tmp, { recursive: true, force: true });
    await dropSchema(schema);
    await deleteRedisPrefix(prefix);
  });

  it('prints help for the program and every command, exit 0, without reading the configuration', async () => {
    // PORT is invalid: help must not need a valid configuration.
    const vars = { PORT: 'not-a-port' };
    const top = await cli(['--help'], vars);
    expect(top.code).toBe(0);
    for (const command of ['start', 'api', 'worker', 'migrate', 'sandbox', 'dlq', 'contacts', 'campaign']) expect(top.stdout).toContain(command);
    expect(top.stdout).toContain('Exit codes: 0 success, 1 failure, 2 bad usage or configuration');
    const sub = await cli(['contacts', 'import', '--help'], vars);
    expect(sub.code, sub.stderr).toBe(0);
    expect(sub.stdout).toContain('--shop <domain>');
  });

  it('exits 2 on bad usage and bad configuration, naming the problem', async () => {
    const [unknown, badQueue, config] = [await cli(['bloom']), await cli(['worker', '--queues', 'events,nope']), await cli(['migrate'], { ...ENV, PORT: 'not-a-port' })];
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'bloom'");
    expect(badQueue.code).toBe(2);
    expect(badQueue.stderr).toContain('unknown queue "nope"');
    expect(config.code).toBe(2);
    expect(config.stderr).toMatch(/^smsblossom: invalid configuration: PORT: /);
  });

  /** A shop of this service, as its first webhook or API request would have added it. */
  const addShop = async (domain: string) => {
    const db = await openDatabase({ url: TEST_DATABASE_URL, schema, poolSize: 1, dataDir: 'memory://' });
    try {
      await migrate(db);
      await upsertShop(db.db, domain);
    } finally {
      await db.close();
    }
  };

  it('refuses to import into a shop the service does not know, exit 1, creating nothing (issue 15)', async () => {
    const file = path.join(await tmp, 'typo.csv');
    await fs.writeFile(file, 'phone,first_name\n+14155550131,Ada\n');
    const res = await cli(['contacts', 'import', file, '--shop', 'nope.myshopify.com']);
    expect(res.code, res.stderr).toBe(1);
    expect(res.stderr).toContain('smsblossom: NOT_FOUND: --shop: nope.myshopify.com is not a shop of this service');
    const db = await openDatabase({ url: TEST_DATABASE_URL, schema, poolSize: 1, dataDir: 'memory://' });
    try {
      expect(await getShopByDomain(db.db, 'nope.myshopify.com')).toBeFalsy();
    } finally {
      await db.close();
    }
  });

  it('imports contacts with a progress bar: exit 1 and each bad line when some rows are rejected, 0 when all are good', async () => {
    const dir = await tmp;
    await addShop('cli-blooms.myshopify.com');
    const mixed = path.join(dir, 'mixed.csv');
    await fs.writeFile(mixed, 'phone,first_name,consent\n+14155550121,Ada,subscribed\nnope,Bad,\n+14155550122,Grace,\n');
    const first = await cli(['contacts', 'import', mixed, '--shop', 'cli-blooms.myshopify.com']);
    expect(first.code, first.stderr).toBe(1);
    expect(first.stdout).toContain('Imported 2 of 3 rows (2 new, 0 updated); 1 rejected');
    expect(first.stdout).toContain('line 3: phone: not a valid phone number');

    const good = path.join(dir, 'good.csv');
    await fs.writeFile(good, 'phone,first_name\n+14155550123,Hedy\n');
    const second = await cli(['contacts', 'import', good, '--shop', 'cli-blooms.myshopify.com', '--json']);
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ rows: 1, imported: 1, created: 1, errors: [] });

    const missing = await cli(['contacts', 'import', path.join(dir, 'absent.csv'), '--shop', 'cli-blooms.myshopify.com']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('ENOENT');

    const db = await openDatabase({ url: TEST_DATABASE_URL, schema, poolSize: 1, dataDir: 'memory://' });
    try {
      const shop = (await getShopByDomain(db.db, 'cli-blooms.myshopify.com'))!;
      const rows = await searchContacts(db.db, shop.id, { limit: 10 });
      expect(rows.map((c) => c.firstName).sort()).toEqual(['Ada', 'Grace', 'Hedy']);
    } finally {
      await db.close();
    }
  });

  it('dev token prints a session token the merchant API accepts; refused in production (issue 15)', async () => {
    const keys = { SHOPIFY_API_SECRET: SHOPIFY_SECRET, SHOPIFY_API_KEY };
    const res = await cli(['dev', 'token', '--shop', 'cli-dev.myshopify.com', '--ttl', '120'], { ...keys, NODE_ENV: 'development' });
    expect(res.code, res.stderr).toBe(0);
    const token = res.stdout.trim();
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const sys = await startTestSystem('pglite', { env: keys });
    try {
      const accepted = await sys.app!.inject({ method: 'GET', url: '/api/contacts', headers: { authorization: `Bearer ${token}` } });
      expect(accepted.statusCode, accepted.body).toBe(200);
      const forged = await sys.app!.inject({ method: 'GET', url: '/api/contacts', headers: { authorization: `Bearer ${token.slice(0, -2)}xx` } });
      expect(forged.statusCode).toBe(401);
    } finally {
      await sys.teardown();
    }
    const production = { ...keys, NODE_ENV: 'production', MITTO_API_KEY: 'k', PUBLIC_URL: 'https://sms.example', TOKEN_ENCRYPTION_KEY: 'a'.repeat(64) };
    const refused = await cli(['dev', 'token', '--shop', 'cli-dev.myshopify.com'], production);
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain('DEVELOPMENT_ONLY');
  });

  it('exits 1 when the thing asked for does not exist', async () => {
    const show = await cli(['dlq', 'show', '999999']);
    expect(show.code).toBe(1);
    expect(show.stderr).toContain('dead letter 999999 does not exist');
  });
});
