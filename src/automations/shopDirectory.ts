/**
 * The shop rows and automations the pipeline reads for every event, held in memory for a short while: each event
 * would otherwise read its shop twice and an automation once, three of the sixteen statements an order confirmation
 * costs.
 *
 * A change written by this process (settings, automations, install state, Shopify's shop facts: everything in
 * src/db/shops.ts and src/db/automations.ts) drops the shop's entries at once (src/db/changes.ts). A change written
 * by another process is seen when the entry expires, after at most {@link SHOP_CACHE_TTL_MS}. Nothing that protects a
 * customer depends on this: delivery reads the shop's install state, consent and STOPs afresh at send time.
 */
import { onShopChange, type ShopChange } from '../db/changes.js';
import type { Db } from '../db/client.js';
import { getAutomationByTrigger } from '../db/automations.js';
import type { Automation, AutomationTrigger, Shop } from '../db/schema.js';
import { getShopByDomain, upsertShop } from '../db/shops.js';

/** How long another process's change may go unseen here. */
export const SHOP_CACHE_TTL_MS = 5_000;

interface Entry<T> {
  value: T;
  expires: number;
}

export class ShopDirectory {
  private readonly shops = new Map<string, Entry<Shop>>();
  /** By shop id, then trigger; a shop's automations are dropped together. */
  private readonly automations = new Map<number, Map<AutomationTrigger, Entry<Automation>>>();
  private readonly stop: () => void;
  /** Bumped by every change: a read that began before one is not remembered (it may hold the old row). */
  private generation = 0;

  constructor(
    private readonly db: Db,
    private readonly ttlMs = SHOP_CACHE_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {
    this.stop = onShopChange((change) => this.forget(change));
  }

  /** The shop with this domain, or undefined when there is none. */
  async shop(domain: string): Promise<Shop | undefined> {
    const cached = this.fresh(this.shops.get(domain));
    if (cached) return cached;
    const began = this.generation;
    const shop = await getShopByDomain(this.db, domain);
    if (shop && began === this.generation) this.remember(shop);
    return shop;
  }

  /** The shop with this domain, created on first sight (see {@link upsertShop}). */
  async ensureShop(domain: string): Promise<Shop> {
    const cached = this.fresh(this.shops.get(domain));
    if (cached) return cached;
    const began = this.generation;
    const { shop } = await upsertShop(this.db, domain);
    if (began === this.generation) this.remember(shop);
    return shop;
  }

  /**
   * The shop's automation for a trigger. Only a found one is kept: a shop's missing automations are about to be
   * created (by this process or another), and a remembered absence would drop the events in between.
   */
  async automation(shopId: number, trigger: AutomationTrigger): Promise<Automation | undefined> {
    const cached = this.automations.get(shopId)?.get(trigger);
    if (cached && cached.expires > this.now()) return cached.value;
    const began = this.generation;
    const automation = await getAutomationByTrigger(this.db, shopId, trigger);
    if (!automation || began !== this.generation) return automation;
    let byTrigger = this.automations.get(shopId);
    if (!byTrigger) this.automations.set(shopId, (byTrigger = new Map()));
    byTrigger.set(trigger, { value: automation, expires: this.now() + this.ttlMs });
    return automation;
  }

  /** Idempotent. */
  close(): void {
    this.stop();
    this.shops.clear();
    this.automations.clear();
  }

  private fresh(entry: Entry<Shop> | undefined): Shop | undefined {
    return entry && entry.expires > this.now() ? entry.value : undefined;
  }

  private remember(shop: Shop): void {
    this.shops.set(shop.domain, { value: shop, expires: this.now() + this.ttlMs });
  }

  private forget(change: ShopChange): void {
    this.generation++;
    if ('domain' in change) {
      const entry = this.shops.get(change.domain);
      this.shops.delete(change.domain);
      if (entry) this.automations.delete(entry.value.id);
      return;
    }
    this.automations.delete(change.shopId);
    for (const [domain, entry] of this.shops) if (entry.value.id === change.shopId) this.shops.delete(domain);
  }
}
