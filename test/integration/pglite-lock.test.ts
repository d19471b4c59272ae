/**
 * Issue 15 item 3: the embedded database (PGlite) is one process's. A second process (`smsblossom contacts import`
 * beside the running service) used to open its own copy of the files, report its rows imported and lose them; it is
 * refused now, naming the process that holds the database, and works once that process has closed it.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.js';
import { searchContacts } from '../../src/db/contacts.js';
import { migrate } from '../../src/db/migrate.js';
import { LOCK_FILE, lockPgliteDirectory } from '../../src/db/pgliteLock.js';
import { getShopByDomain, upsertShop } from '../../src/db/shops.js';
import { isAppError } from '../../src/errors.js';
import { run } from '../helpers/spawn.js';
import { deleteRedisPrefix, TEST_REDIS_URL, uniqueName } from '../helpers/system.js';

const SHOP = 'lock-blooms.myshopify.com';
const prefix = `smsblossom-test:${uniqueName('lock')}`;

describe('the embedded database is one process\'s', () => {
  const tmp = fs.mkdtemp(path.join(os.tmpdir(), 'smsblossom-lock-'));
  afterAll(async () => {
    await fs.rm(await tmp, { recursive: true, force: true });
    await deleteRedisPrefix(prefix);
  });

  const open = async (dataDir: string) => openDatabase({ url: undefined, schema: 'smsblossom', poolSize: 1, dataDir });
  const contactNames = async (db: Database) => {
    const shop = (await getShopByDomain(db.db, SHOP))!;
    return (await searchContacts(db.db, shop.id, { limit: 10 })).map((c) => c.firstName).sort();
  };

  it('refuses a CLI import while another process holds it, writing nothing; the import works once it is closed', async () => {
    const dataDir = path.join(await tmp, 'data');
    const csv = path.join(await tmp, 'contacts.csv');
    await fs.writeFile(csv, 'phone,first_name\n+14155550141,Ada\n+14155550142,Grace\n');
    const env = { DATA_DIR: dataDir, DATABASE_SCHEMA: 'smsblossom', REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix, REDIS_EMBEDDED: 'false' };
    const cliImport = () => run(process.execPath, ['bin/smsblossom.js', 'contacts', 'import', csv, '--shop', SHOP], env, 60_000);

    // This test process is the service: it has the database open.
    let holder = await open(dataDir);
    await migrate(holder);
    await upsertShop(holder.db, SHOP);
    const refused = await cliImport();
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(`DATABASE_IN_USE: the embedded database in ${dataDir} is in use by process ${process.pid}`);
    expect(refused.stderr).toContain('stop it, or use the HTTP API, or set DATABASE_URL to a PostgreSQL server');
    expect(refused.stdout).not.toContain('Imported');
    expect(await contactNames(holder)).toEqual([]);

    await holder.close();
    await expect(fs.access(path.join(dataDir, LOCK_FILE))).rejects.toThrow();
    const imported = await cliImport();
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stdout).toContain('Imported 2 of 2 rows');

    // What the CLI wrote is what the service reads when it opens the database again.
    holder = await open(dataDir);
    try {
      expect(await contactNames(holder)).toEqual(['Ada', 'Grace']);
    } finally {
      await holder.close();
    }
  }, 240_000);

  it('takes over a lock left by a process that is gone, and shares one lock within a process', async () => {
    const dir = path.join(await tmp, 'stale');
    await fs.mkdir(dir, { recursive: true });
    const gone = spawn(process.execPath, ['-e', '']);
    const pid = gone.pid!;
    await new Promise((resolve) => gone.once('exit', resolve));
    await fs.writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid, command: 'smsblossom start' }));

    const release = lockPgliteDirectory(dir);
    expect(JSON.parse(await fs.readFile(path.join(dir, LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    const again = lockPgliteDirectory(dir);
    release();
    expect(JSON.parse(await fs.readFile(path.join(dir, LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    again();
    again();
    await expect(fs.access(path.join(dir, LOCK_FILE))).rejects.toThrow();

    // A live process's lock is not taken over.
    await fs.writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid: process.ppid, command: 'smsblossom start' }));
    let caught: unknown;
    try {
      lockPgliteDirectory(dir);
    } catch (err) {
      caught = err;
    }
    expect(isAppError(caught, 'DATABASE_IN_USE')).toBe(true);
    expect((caught as Error).message).toContain(`in use by process ${process.ppid} (smsblossom start)`);
  });
});
