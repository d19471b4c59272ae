/** Named database operations on `dead_letters`. */
import { and, count, desc, eq, lt, sql, type SQL } from 'drizzle-orm';
import type { Db } from './client.js';
import { deadLetters, type DeadLetter } from './schema.js';

export type NewDeadLetter = Omit<typeof deadLetters.$inferInsert, 'id' | 'replayCount' | 'replayedAt' | 'replayJobId'>;

/** Records a dead letter once per job instance; recording the same failure again changes nothing. */
export async function insertDeadLetter(db: Db, row: NewDeadLetter): Promise<{ id: number; created: boolean }> {
  const [inserted] = await db
    .insert(deadLetters)
    .values(row)
    .onConflictDoNothing({ target: [deadLetters.queue, deadLetters.jobId, deadLetters.jobCreatedAt] })
    .returning({ id: deadLetters.id });
  if (inserted) return { id: inserted.id, created: true };
  const [existing] = await db
    .select({ id: deadLetters.id })
    .from(deadLetters)
    .where(and(eq(deadLetters.queue, row.queue), eq(deadLetters.jobId, row.jobId), eq(deadLetters.jobCreatedAt, row.jobCreatedAt)));
  return { id: existing!.id, created: false };
}

export interface DeadLetterFilter {
  queue?: string;
  shopId?: string;
  /** Only entries that failed before this time. */
  before?: Date;
  /** Include entries already replayed (default true). */
  includeReplayed?: boolean;
}

function whereOf(filter: DeadLetterFilter): SQL | undefined {
  const parts: SQL[] = [];
  if (filter.queue) parts.push(eq(deadLetters.queue, filter.queue));
  if (filter.shopId) parts.push(eq(deadLetters.shopId, filter.shopId));
  if (filter.before) parts.push(lt(deadLetters.failedAt, filter.before));
  if (filter.includeReplayed === false) parts.push(sql`${deadLetters.replayedAt} IS NULL`);
  return parts.length ? and(...parts) : undefined;
}

/** Newest first, keyset-paginated by id (`afterId` is the last id of the previous page). */
export async function listDeadLetters(
  db: Db,
  filter: DeadLetterFilter & { limit?: number; afterId?: number },
): Promise<DeadLetter[]> {
  const where = and(whereOf(filter), filter.afterId ? lt(deadLetters.id, filter.afterId) : undefined);
  return db
    .select()
    .from(deadLetters)
    .where(where)
    .orderBy(desc(deadLetters.id))
    .limit(Math.min(Math.max(filter.limit ?? 50, 1), 500));
}

export async function getDeadLetter(db: Db, id: number): Promise<DeadLetter | undefined> {
  const [row] = await db.select().from(deadLetters).where(eq(deadLetters.id, id));
  return row;
}

export async function countDeadLetters(db: Db, filter: DeadLetterFilter = {}): Promise<number> {
  const [row] = await db.select({ n: count() }).from(deadLetters).where(whereOf(filter));
  return Number(row?.n ?? 0);
}

export async function markDeadLetterReplayed(db: Db, id: number, jobId: string): Promise<void> {
  await db
    .update(deadLetters)
    .set({ replayCount: sql`${deadLetters.replayCount} + 1`, replayedAt: sql`now()`, replayJobId: jobId })
    .where(eq(deadLetters.id, id));
}

export async function deleteDeadLetter(db: Db, id: number): Promise<boolean> {
  const rows = await db.delete(deadLetters).where(eq(deadLetters.id, id)).returning({ id: deadLetters.id });
  return rows.length > 0;
}

/** Deletes matching entries; returns how many. */
export async function purgeDeadLetters(db: Db, filter: DeadLetterFilter): Promise<number> {
  const rows = await db.delete(deadLetters).where(whereOf(filter)).returning({ id: deadLetters.id });
  return rows.length;
}
