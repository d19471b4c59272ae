/**
 * Compliance — a message's kind is fixed by its trigger (issue 11, item 6): abandoned-checkout reminders and welcomes
 * are marketing whatever a merchant patches, so they always need marketing consent, respect quiet hours and carry the
 * opt-out footer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newShop, startCompliance, type Compliance } from './harness.js';

let h: Compliance;
beforeAll(async () => {
  h = await startCompliance();
});
afterAll(async () => {
  await h?.close();
});

async function automation(shop: string, trigger: string) {
  const list = await h.api(shop, 'GET', '/api/automations');
  return (list.body.items as Array<{ id: number; trigger: string; transactional: boolean }>).find((a) => a.trigger === trigger)!;
}

describe('marketing automations stay marketing', () => {
  it.each(['abandoned_checkout', 'welcome'])('%s cannot be made transactional, nor bypass consent or quiet hours', async (trigger) => {
    const shop = newShop('kind');
    const a = await automation(shop, trigger);
    for (const [patch, field] of [
      [{ transactional: true }, 'transactional'],
      [{ rules: { consent: 'transactional' } }, 'rules.consent'],
      [{ rules: { quietHours: { bypass: true } } }, 'rules.quietHours.bypass'],
    ] as const) {
      const res = await h.api(shop, 'PATCH', `/api/automations/${a.id}`, patch);
      expect(res.status, JSON.stringify(patch)).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'AUTOMATION_KIND_FIXED', details: { field } });
    }
    expect(await automation(shop, trigger)).toMatchObject({ transactional: false });
  });

  it('an order confirmation may still be made marketing (stricter is allowed)', async () => {
    const shop = newShop('kind-order');
    const a = await automation(shop, 'order_paid');
    const res = await h.api(shop, 'PATCH', `/api/automations/${a.id}`, { transactional: false });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ transactional: false });
  });
});
