/** Named database operations on `automations`. */
import { and, asc, eq, sql } from 'drizzle-orm';
import { DEFAULT_AUTOMATIONS } from './defaultAutomations.js';
import type { Db } from './client.js';
import { shopChanged } from './changes.js';
import { param, perHandle } from './prepared.js';
import { automations, type Automation, type AutomationRules, type AutomationTrigger } from './schema.js';

/** Gives a shop the default automations it does not have yet; returns how many were created. */
export async function ensureDefaultAutomations(db: Db, shopId: number): Promise<number> {
  const rows = await db
    .insert(automations)
    .values(DEFAULT_AUTOMATIONS.map((a) => ({ shopId, ...a })))
    .onConflictDoNothing({ target: [automations.shopId, automations.trigger] })
    .returning({ id: automations.id });
  if (rows.length > 0) shopChanged({ shopId });
  return rows.length;
}

const automationByTrigger = perHandle((db) =>
  db
    .select()
    .from(automations)
    .where(and(eq(automations.shopId, param('shopId')), eq(automations.trigger, param('trigger'))))
    .prepare('automation_by_trigger'),
);

export async function getAutomationByTrigger(db: Db, shopId: number, trigger: AutomationTrigger): Promise<Automation | undefined> {
  const [row] = await automationByTrigger(db).execute({ shopId, trigger });
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
  shopChanged({ shopId });
  return row;
}
