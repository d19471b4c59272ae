/** Raw SQL through Drizzle on either driver: node-postgres and PGlite both answer `{ rows }`. */
import type { SQL } from 'drizzle-orm';
import type { Db } from './client.js';

/** Runs one statement and returns its rows. */
export async function rowsOf<T>(db: Pick<Db, 'execute'>, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown as { rows?: T[] };
  return result.rows ?? [];
}
