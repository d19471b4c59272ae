/** Named database operations on `events`, the durable record of every webhook taken in. */
import { and, eq, sql } from 'drizzle-orm';
import { safeErrorMessage } from '../errors.js';
import type { Db } from './client.js';
import { nullable, param, perHandle } from './prepared.js';
import { events, type EventRow } from './schema.js';

export interface NewEvent {
  shopDomain: string;
  topic: string;
  objectId: string | null;
  webhookId: string;
  eventId: string | null;
  apiVersion: string | null;
  triggeredAt: Date | null;
  payload: Record<string, unknown>;
  requestId: string;
}

/** What intake needs back from an insert: everything but the payload (reading it back would parse it again). */
const stored = {
  id: events.id,
  shopDomain: events.shopDomain,
  topic: events.topic,
  objectId: events.objectId,
  webhookId: events.webhookId,
  eventId: events.eventId,
  triggeredAt: events.triggeredAt,
  requestId: events.requestId,
  status: events.status,
};
export type StoredEvent = Pick<EventRow, keyof typeof stored>;

const eventInsert = perHandle((db) =>
  db
    .insert(events)
    .values({
      shopDomain: param('shopDomain'),
      topic: param('topic'),
      objectId: nullable('objectId', 'text'),
      webhookId: param('webhookId'),
      eventId: nullable('eventId', 'text'),
      apiVersion: nullable('apiVersion', 'text'),
      triggeredAt: nullable('triggeredAt', 'timestamptz'),
      payload: param('payload'),
      requestId: param('requestId'),
    })
    .onConflictDoNothing()
    .returning(stored)
    .prepare('event_insert'),
);

/**
 * Inserts the event unless one with the same webhook id (or the same event id for the topic) exists.
 * Returns the new row, or `existing` with the row that made it a duplicate.
 */
export async function insertEvent(
  db: Db,
  event: NewEvent,
): Promise<{ inserted: StoredEvent; existing?: undefined } | { inserted?: undefined; existing: StoredEvent }> {
  const [inserted] = await eventInsert(db).execute({ ...event, triggeredAt: event.triggeredAt?.toISOString() ?? null });
  if (inserted) return { inserted };
  const [existing] = await db
    .select(stored)
    .from(events)
    .where(
      and(
        eq(events.shopDomain, event.shopDomain),
        event.eventId
          ? sql`(${events.webhookId} = ${event.webhookId} OR (${events.topic} = ${event.topic} AND ${events.eventId} = ${event.eventId}))`
          : eq(events.webhookId, event.webhookId),
      ),
    )
    .limit(1);
  if (!existing) throw new Error('event conflicted on insert but no matching row was found');
  return { existing };
}

/**
 * Records a signed webhook whose body could not be taken: `failed`, outcome `rejected`, the reason, no payload. A
 * retry of the same delivery finds the row and changes nothing.
 */
export async function insertRejectedEvent(db: Db, event: Omit<NewEvent, 'payload' | 'objectId'> & { error: string }): Promise<void> {
  const { error, ...rest } = event;
  await db
    .insert(events)
    .values({ ...rest, objectId: null, payload: null, status: 'failed', outcome: 'rejected', error, processedAt: sql`now()` })
    .onConflictDoNothing();
}

const eventQueued = perHandle((db) =>
  db
    .update(events)
    .set({ status: 'queued', queuedAt: sql`now()` })
    .where(and(eq(events.id, param('id')), eq(events.status, 'received')))
    .prepare('event_queued'),
);

export async function markEventQueued(db: Db, id: number): Promise<void> {
  await eventQueued(db).execute({ id });
}

/** Removes an event that could not be handed to the queue, so a retry by Shopify is not taken for a duplicate. */
export async function deleteUnqueuedEvent(db: Db, id: number): Promise<void> {
  await db.delete(events).where(and(eq(events.id, id), eq(events.status, 'received')));
}

export async function markEventDone(
  db: Db,
  shopDomain: string,
  webhookId: string,
  result: { status: 'processed' | 'ignored' | 'failed'; outcome: string; error?: string | null },
): Promise<void> {
  // The error text outlives the payload (erasure clears only the payload): it must not quote a failed query's values.
  await eventDone(db).execute({ shopDomain, webhookId, status: result.status, outcome: result.outcome, error: result.error ? safeErrorMessage(result.error) : null });
}

const eventDone = perHandle((db) =>
  db
    .update(events)
    .set({
      status: sql`${param('status')}`,
      outcome: sql`${param('outcome')}`,
      error: sql`${param('error')}`,
      processedAt: sql`now()`,
    })
    .where(and(eq(events.shopDomain, param('shopDomain')), eq(events.webhookId, param('webhookId'))))
    .prepare('event_done'),
);

export async function getEvent(db: Db, shopDomain: string, webhookId: string): Promise<EventRow | undefined> {
  const [row] = await db
    .select()
    .from(events)
    .where(and(eq(events.shopDomain, shopDomain), eq(events.webhookId, webhookId)));
  return row;
}

/** The stored event an `events` job names (`storedEventId`). */
const eventById = perHandle((db) => db.select().from(events).where(eq(events.id, param('id'))).prepare('event_by_id'));

export async function getEventById(db: Db, id: number): Promise<EventRow | undefined> {
  const [row] = await eventById(db).execute({ id });
  return row;
}
