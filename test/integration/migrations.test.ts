/**
 * The numbered SQL migrations on both databases: applied once, matching the Drizzle schema column for column,
 * guarded against edits and partial application, serialised by the advisory lock, and runnable as `npm run migrate`.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { getTableColumns, getTableName } from 'drizzle-orm';
import pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.js';
import { migrate, MIGRATIONS_DIR, readMigrations } from '../../src/db/migrate.js';
import { schema as drizzleTables } from '../../src/db/schema.js';
import { run } from '../helpers/spawn.js';
import { DB_KINDS, dropSchema, TEST_DATABASE_URL, uniqueName } from '../helpers/system.js';

interface DbColumn {
  table_name: string;
  column_name: string;
  is_nullable: 'YES' | 'NO';
  data_type: string;
  udt_name: string;
  column_default: string | null;
  character_maximum_length: number | null;
  numeric_precision: number | null;
  numeric_scale: number | null;
}

/** A column as both sides can describe it. */
interface ColumnShape {
  type: string;
  nullable: boolean;
  hasDefault: boolean;
}

/** The migrator's own bookkeeping; not part of the application schema. */
const MIGRATOR_TABLES = new Set(['schema_migrations']);

/** Array element types as `udt_name` spells them, in Drizzle's words. */
const UDT_NAMES: Record<string, string> = { int2: 'smallint', int4: 'integer', int8: 'bigint', bool: 'boolean', float8: 'double precision' };

/** A column type as information_schema describes it, spelled the way Drizzle's `getSQLType()` does. */
function typeFromInformationSchema(c: DbColumn): string {
  switch (c.data_type) {
    case 'ARRAY': {
      const element = c.udt_name.replace(/^_/, '');
      return `${UDT_NAMES[element] ?? element}[]`;
    }
    case 'numeric':
      return c.numeric_precision === null ? 'numeric' : `numeric(${c.numeric_precision}, ${c.numeric_scale ?? 0})`;
    case 'character varying':
      return c.character_maximum_length === null ? 'varchar' : `varchar(${c.character_maximum_length})`;
    case 'character':
      return `char(${c.character_maximum_length})`;
    case 'USER-DEFINED':
      return c.udt_name;
    default:
      return c.data_type;
  }
}

function typeFromDrizzle(sqlType: string): string {
  if (sqlType === 'bigserial') return 'bigint';
  if (sqlType === 'serial') return 'integer';
  if (sqlType === 'smallserial') return 'smallint';
  // Fractional-second precision is not compared; `timestamp` alone means without time zone.
  const t = sqlType.replace(/^(timestamp|time) \(\d+\)/, '$1');
  return t === 'timestamp' || t === 'time' ? `${t} without time zone` : t;
}

function drizzleShape(): Map<string, Map<string, ColumnShape>> {
  const tables = new Map<string, Map<string, ColumnShape>>();
  for (const table of Object.values(drizzleTables)) {
    const columns = new Map<string, ColumnShape>();
    for (const col of Object.values(getTableColumns(table))) {
      const sqlType = col.getSQLType();
      columns.set(col.name, {
        type: typeFromDrizzle(sqlType),
        nullable: !col.notNull,
        hasDefault: col.hasDefault || sqlType.endsWith('serial'),
      });
    }
    tables.set(getTableName(table), columns);
  }
  return tables;
}

async function databaseShape(db: Database): Promise<Map<string, Map<string, ColumnShape>>> {
  const tables = new Map<string, Map<string, ColumnShape>>();
  const names = await db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'`,
    [db.schema],
  );
  for (const { table_name } of names) if (!MIGRATOR_TABLES.has(table_name)) tables.set(table_name, new Map());
  const columns = await db.query<DbColumn>(
    `SELECT table_name, column_name, is_nullable, data_type, udt_name, column_default,
            character_maximum_length, numeric_precision, numeric_scale
       FROM information_schema.columns WHERE table_schema = $1`,
    [db.schema],
  );
  for (const c of columns) {
    tables.get(c.table_name)?.set(c.column_name, {
      type: typeFromInformationSchema(c),
      nullable: c.is_nullable === 'YES',
      hasDefault: c.column_default !== null,
    });
  }
  return tables;
}

/** A temporary directory holding a copy of the real migrations, to edit or extend. */
async function copyOfMigrations(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smsblossom-migrations-'));
  for (const m of await readMigrations()) await fs.copyFile(path.join(MIGRATIONS_DIR, m.file), path.join(dir, m.file));
  return dir;
}

const toObject = (shape: Map<string, Map<string, ColumnShape>>) =>
  Object.fromEntries([...shape].map(([table, cols]) => [table, Object.fromEntries(cols)]));

describe.each(DB_KINDS)('migrations on %s', (kind) => {
  const opened: Database[] = [];
  afterEach(async () => {
    const schemas = new Set(opened.map((db) => db.schema));
    await Promise.all(opened.splice(0).map((db) => db.close()));
    if (kind === 'postgres') for (const schema of schemas) await dropSchema(schema);
  });

  async function open(schema = uniqueName('m')): Promise<Database> {
    const db = await openDatabase({ url: kind === 'postgres' ? TEST_DATABASE_URL : undefined, schema, poolSize: 2, dataDir: 'memory://' });
    opened.push(db);
    return db;
  }

  it('applies each migration once, then reports nothing to do, and builds exactly the Drizzle schema', async () => {
    const files = await readMigrations();
    expect(files[0]).toMatchObject({ version: 1, name: 'foundation' });
    const db = await open();

    expect(await migrate(db)).toEqual(files.map((m) => m.version));
    expect(await migrate(db)).toEqual([]);

    const recorded = await db.query<{ version: number; name: string; checksum: string }>(
      `SELECT version, name, checksum FROM "${db.schema}".schema_migrations ORDER BY version`,
    );
    expect(recorded).toEqual(files.map(({ version, name, checksum }) => ({ version, name, checksum })));

    // Every table and column Drizzle declares exists with the same type, nullability and presence of a default,
    // and the database holds no table or column Drizzle does not know of.
    expect(toObject(await databaseShape(db))).toEqual(toObject(drizzleShape()));
  });

  it('refuses a migration whose file changed after it was applied', async () => {
    const db = await open();
    await migrate(db);
    const dir = await copyOfMigrations();
    try {
      const original = await fs.readFile(path.join(dir, '0001_foundation.sql'), 'utf8');
      const edited = original.replace('CREATE INDEX dead_letters_shop_idx', 'CREATE INDEX dead_letters_shop2_idx');
      expect(edited).not.toBe(original);
      await fs.writeFile(path.join(dir, '0001_foundation.sql'), edited);
      const before = await db.query(`SELECT version, checksum FROM "${db.schema}".schema_migrations ORDER BY version`);

      await expect(migrate(db, dir)).rejects.toThrow(/^migration 0001_foundation\.sql was changed after it was applied/);

      expect(await db.query(`SELECT version, checksum FROM "${db.schema}".schema_migrations ORDER BY version`)).toEqual(before);
      expect(await migrate(db)).toEqual([]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('applies pending migrations all or nothing, and picks up where it stopped once fixed', async () => {
    const db = await open();
    await migrate(db);
    const dir = await copyOfMigrations();
    const tableExists = async (name: string) =>
      (await db.query(`SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2`, [db.schema, name])).length === 1;
    try {
      const next = Math.max(...(await readMigrations()).map((m) => m.version)) + 1;
      const file = (version: number, name: string) => `${String(version).padStart(4, '0')}_${name}.sql`;
      await fs.writeFile(path.join(dir, file(next, 'scratch')), 'CREATE TABLE scratch_two (id integer PRIMARY KEY);\n');
      await fs.writeFile(path.join(dir, file(next + 1, 'broken')), 'CREATE TABLE scratch_three (id integer);\nSELECT * FROM no_such_table;\n');

      await expect(migrate(db, dir)).rejects.toThrow(/no_such_table/);
      expect(await tableExists('scratch_two')).toBe(false);
      expect(await tableExists('scratch_three')).toBe(false);

      await fs.rm(path.join(dir, file(next + 1, 'broken')));
      expect(await migrate(db, dir)).toEqual([next]);
      expect(await tableExists('scratch_two')).toBe(true);
      // Unqualified names in a migration land in the configured schema, not in public.
      expect((await db.query(`SELECT 1 FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'scratch_two'`)).length).toBe(0);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it.runIf(kind === 'postgres')('two processes migrating at once apply each migration once', async () => {
    const schema = uniqueName('m');
    const [a, b] = [await open(schema), await open(schema)];

    const results = await Promise.all([migrate(a), migrate(b)]);

    const versions = (await readMigrations()).map((m) => m.version);
    expect(results.sort((x, y) => x.length - y.length)).toEqual([[], versions]);
    expect(await a.query(`SELECT count(*)::int AS n FROM "${schema}".schema_migrations`)).toEqual([{ n: versions.length }]);
  });

  it.runIf(kind === 'postgres')('the advisory lock serialises migrators that are waiting at the same moment', async () => {
    const schema = uniqueName('m');
    const [a, b] = [await open(schema), await open(schema)];
    // Hold the migrator's lock from a third session so both migrators are provably inside migrate() together.
    const holder = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock(hashtext($1))', [`smsblossom-migrate:${schema}`]);
      const [held] = (await holder.query(`SELECT classid, objid FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`)).rows;

      const both = Promise.all([migrate(a), migrate(b)]);
      both.catch(() => undefined); // awaited below; keeps a failure while waiting from surfacing as unhandled
      await vi.waitFor(
        async () => {
          const { rows } = await holder.query(
            `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2`,
            [held.classid, held.objid],
          );
          if (rows[0].n !== 2) throw new Error(`${rows[0].n} migrators waiting on the lock`);
        },
        { timeout: 10_000, interval: 20 },
      );
      await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [`smsblossom-migrate:${schema}`]);
      const results = await both;

      const versions = (await readMigrations()).map((m) => m.version);
      expect(results.sort((x, y) => x.length - y.length)).toEqual([[], versions]);
      expect(await a.query(`SELECT count(*)::int AS n FROM "${schema}".schema_migrations`)).toEqual([{ n: versions.length }]);
    } finally {
      await holder.end();
    }
  });
});

// Each test starts the CLI twice through tsx: on two shared cores busy with the rest of the suite one start took 21 s.
// The bounds are there to end a hung process, not to time one.
describe('npm run migrate', { timeout: 180_000 }, () => {
  const migrateCli = (vars: Record<string, string>) => run('npx', ['tsx', 'src/cli.ts', 'migrate'], vars, 80_000);

  it('applies the migrations to PostgreSQL, prints the versions and exits 0; a second run has nothing to do', async () => {
    const schema = uniqueName('cli');
    try {
      const first = await migrateCli({ DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema });
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      const versions = (await readMigrations()).map((m) => m.version);
      expect(first.stdout).toBe(`Applied migrations: ${versions.join(', ')}\n`);

      const second = await migrateCli({ DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema });
      expect(second.code).toBe(0);
      expect(second.stdout).toBe('Database is up to date\n');
    } finally {
      await dropSchema(schema);
    }
  });

  it('applies the migrations to the embedded database under DATA_DIR, which keeps them', async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'smsblossom-data-'));
    try {
      const first = await migrateCli({ DATA_DIR: dataDir });
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      expect(first.stdout).toBe(`Applied migrations: ${(await readMigrations()).map((m) => m.version).join(', ')}\n`);

      const db = await openDatabase({ url: undefined, schema: 'public', poolSize: 1, dataDir });
      try {
        expect(await migrate(db)).toEqual([]);
      } finally {
        await db.close();
      }
    } finally {
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  });

  it('exits 2 with one line naming the variable when DATABASE_URL is invalid', async () => {
    const res = await migrateCli({ DATABASE_URL: 'mysql://localhost/test' });
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toContain('DATABASE_URL');
  });
});
