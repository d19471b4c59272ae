/**
 * Statements of the hot paths, built by the query builder once per database handle and prepared on the server.
 *
 * Drizzle builds a query's SQL on every call (about half the service's CPU per message before this); a prepared query
 * keeps the built text and, through `pg`, a named statement that PostgreSQL parses and plans once per connection.
 * PgBouncer (1.21+) keeps protocol-level prepared statements working in transaction mode. A transaction's handle is
 * a handle of its own, so a statement used inside one is built for that transaction only: keep prepared statements to
 * the reads and single-statement writes of the hot paths.
 */
import { Placeholder, sql, type SQL } from 'drizzle-orm';
import type { Db } from './client.js';

/** `build(db)` once per handle; the same prepared query for every later call on that handle. */
export function perHandle<T>(build: (db: Db) => T): (db: Db) => T {
  const built = new WeakMap<Db, T>();
  return (db) => {
    let query = built.get(db);
    if (query === undefined) {
      query = build(db);
      built.set(db, query);
    }
    return query;
  };
}

/** A prepared query's parameter, bound by name at each `execute({ name: value })`. */
export function param<const N extends string>(name: N): Placeholder<N> {
  return new Placeholder(name);
}

/**
 * A list of row ids as a PostgreSQL array literal (`{1,2,3}`), bound as one text parameter and cast in the statement:
 * the same on `pg` and PGlite, and one parameter however long the list. Ids are integers, so nothing needs quoting.
 */
export function idArray(ids: readonly number[]): string {
  for (const id of ids) if (!Number.isSafeInteger(id)) throw new TypeError(`not a row id: ${id}`);
  return `{${ids.join(',')}}`;
}

/**
 * A parameter that may be null, bound as it is and cast in the statement. (In an insert's values a bare `param()`
 * goes through its column's encoder, and a timestamp's calls `toISOString()` on null.)
 */
export function nullable(name: string, type: 'bigint' | 'text' | 'timestamptz'): SQL {
  return sql`${param(name)}::${sql.raw(type)}`;
}
