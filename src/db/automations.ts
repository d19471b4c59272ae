/** Named database operations on `automations`. */
import { and, asc, eq, sql } from 'drizzle-orm';
import { DEFAULT_AUTOMATIONS } from '../automations/defaults.js';
import type { Db } from './client.js';
import { automations, type Automation, type AutomationRules, type AutomationTrigger } from './schema.js';

/** Gives a shop the default automations it does not have yet; returns how many were created. */
export async function ensureDefaultAutomations(db: Db, shopId: number): Promise<number> {
  const rows = await db
    .insert(automations)
    .values(DEFAULT_AUTOMATIONS.map((a) => ({ shopId, ...a })))
    .onConflictDoNothing({ target: [automations.shopId, automations.trigger] })
    .returning({ id: automations.id });
  return rows.length;
}

export async function getAutomationByTrigger(db: Db, shopId: number, trigger: AutomationTrigger): Promise<Automation | undefined> {
  const [row] = await db
    .select()
    .from(automations)
    .where(and(eq(automations.shopId, shopId), eq(automations.trigger, trigger)));
  return row;
}

export async function listAutomations(db: Db, shopId: number): Promise<Automation[]> {
  return db.select().from(automations).where(eq(automations.shopId, shopId)).orderBy(asc(automations.id));
}

export interface AutomationPatch {
  enabled?: boolean;
  template?: string;
  delayMinutes?: number;
  transactional?: boolean;
  rules?: AutomationRules;
}

export async function updateAutomation(db: Db, shopId: number, id: number, patch: AutomationPatch): Promise<Automation | undefined> {
  const [row] = await db
    .update(automations)
    .set({ ...patch, updatedAt: sql`now()` })
    .where(and(eq(automations.shopId, shopId), eq(automations.id, id)))
    .returning();
  return row;
}
