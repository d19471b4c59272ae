/**
 * Applies the numbered SQL files in `./migrations` (`0001_name.sql`, ...) in order, each once, recording them in
 * `schema_migrations`. All pending files run in one transaction under an advisory lock, so two processes starting
 * together apply each migration once, and a failed migration leaves nothing half-applied.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Database } from './client.js';

/** Beside this module: src/db/migrations, or dist/db/migrations where the build copies them. */
export const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

export interface Migration {
  version: number;
  name: string;
  /** The file it was read from, e.g. `0001_foundation.sql`. */
  file: string;
  sql: string;
  checksum: string;
}

export async function readMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(file);
    if (!match) throw new Error(`migration file "${file}" must be named NNNN_name.sql`);
    const text = await fs.readFile(path.join(dir, file), 'utf8');
    const version = Number(match[1]);
    if (migrations.some((m) => m.version === version)) throw new Error(`two migrations share version ${version}`);
    migrations.push({ version, name: match[2]!, file, sql: text, checksum: createHash('sha256').update(text).digest('hex') });
  }
  return migrations;
}

/** Returns the versions applied by this call (empty when the database was up to date). */
export async function migrate(database: Database, dir = MIGRATIONS_DIR): Promise<number[]> {
  const migrations = await readMigrations(dir);
  const schema = `"${database.schema}"`;
  return database.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`smsblossom-migrate:${database.schema}`]);
    await tx.exec(
      `CREATE SCHEMA IF NOT EXISTS ${schema};
       CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (
         version integer PRIMARY KEY,
         name text NOT NULL,
         checksum text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       );`,
    );
    const applied = new Map(
      (await tx.query<{ version: number; checksum: string }>(`SELECT version, checksum FROM ${schema}.schema_migrations`)).map(
        (r) => [r.version, r.checksum],
      ),
    );
    const done: number[] = [];
    for (const m of migrations) {
      const previous = applied.get(m.version);
      if (previous !== undefined) {
        if (previous !== m.checksum) {
          throw new Error(`migration ${m.file} was changed after it was applied; restore it and add a new migration instead`);
        }
        continue;
      }
      await tx.exec(`SET LOCAL search_path TO ${schema}, public;\n${m.sql}`);
      await tx.query(`INSERT INTO ${schema}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`, [
        m.version,
        m.name,
        m.checksum,
      ]);
      done.push(m.version);
    }
    return done;
  });
}
