/**
 * The pipeline's in-memory shops and automations (src/automations/shopDirectory.ts) on a real database: a change made
 * through the data layer is seen at once, one made behind its back (another process) once the entry expires, and an
 * expired entry is read again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShopDirectory } from '../../src/automations/shopDirectory.js';
import { ensureDefaultAutomations, getAutomationByTrigger, updateAutomation } from '../../src/db/automations.js';
import { markShopUninstalled, updateShopSettings, upsertShop } from '../../src/db/shops.js';
import { uniqueShop } from '../helpers/messages.js';
import { DB_KINDS, startTestSystem, type TestSystem } from '../helpers/system.js';

describe.each(DB_KINDS)('shop directory on %s', (kind) => {
  let sys: TestSystem;
  let clock = 0;
  let directory: ShopDirectory;
  const TTL = 5_000;

  beforeAll(async () => {
    sys = await startTestSystem(kind, { workers: [] });
    directory = new ShopDirectory(sys.db.db, TTL, () => clock);
  });
  afterAll(async () => {
    directory?.close();
    await sys?.teardown();
  });

  /** A change made by another process: straight to the table, past the data layer. */
  const behindItsBack = (shopId: number, name: string) => sys.db.query('UPDATE shops SET name = $1 WHERE id = $2', [name, shopId]);

  it('keeps a shop until it expires, then reads it again', async () => {
    const domain = uniqueShop('dir');
    const first = await directory.ensureShop(domain);
    await behindItsBack(first.id, 'Renamed elsewhere');
    clock += TTL - 1;
    expect((await directory.shop(domain))!.name).toBe(first.name);
    clock += 2;
    expect((await directory.shop(domain))!.name).toBe('Renamed elsewhere');
  });

  it('sees a change written through the data layer at once: settings, install state', async () => {
    const domain = uniqueShop('dir');
    const shop = await directory.ensureShop(domain);
    await updateShopSettings(sys.db.db, shop.id, { set: { sender: 'Blossom' } });
    expect((await directory.shop(domain))!.settings).toMatchObject({ sender: 'Blossom' });
    await markShopUninstalled(sys.db.db, domain, new Date());
    expect((await directory.shop(domain))!.uninstalledAt).toBeInstanceOf(Date);
  });

  it('keeps an automation until the shop changes, and never the lack of one', async () => {
    const { shop } = await upsertShop(sys.db.db, uniqueShop('dir'));
    expect(await directory.automation(shop.id, 'order_paid')).toBeUndefined();
    // Another process gives the shop its automations: the next event here must find them, not a remembered absence
    // (an order confirmation would be dropped).
    await sys.db.query(
      `INSERT INTO automations (shop_id, trigger, name, enabled, template) VALUES ($1, 'order_paid', 'Order paid', true, 'Thanks!')`,
      [shop.id],
    );
    const automation = await directory.automation(shop.id, 'order_paid');
    expect(automation).toMatchObject({ trigger: 'order_paid', enabled: true });
    await ensureDefaultAutomations(sys.db.db, shop.id);
    await updateAutomation(sys.db.db, shop.id, automation!.id, { enabled: false });
    expect(await directory.automation(shop.id, 'order_paid')).toMatchObject({ enabled: false });
    expect(await getAutomationByTrigger(sys.db.db, shop.id, 'order_paid')).toMatchObject({ enabled: false });
  });
});
