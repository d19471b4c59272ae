/**
 * A shop's own settings (`shops.settings`, edited through `PATCH /api/settings`), as the automations, campaigns and
 * replies read them. Pure.
 */
import type { Shop } from '../db/schema.js';

export interface ShopSettings {
  name?: string;
  sender?: string;
  optOutFooter?: string;
  quietHours?: { enabled?: boolean; start?: string; end?: string };
  frequencyCap?: { max: number; windowHours: number } | null;
  locale?: string;
  /** First sentence of the HELP auto-reply. */
  helpText?: string;
}

export function shopSettings(shop: Shop): ShopSettings {
  return (shop.settings ?? {}) as ShopSettings;
}

/** The name messages call the shop by: the merchant's chosen name, else Shopify's, else the domain's handle. */
export function shopDisplayName(shop: Shop): string {
  return shopSettings(shop).name ?? shop.name ?? shop.domain.replace(/\.myshopify\.com$/, '');
}

/** The sender a shop's messages go from: its own, else the platform's (SMS_SENDER). */
export function shopSender(shop: Shop, platformSender: string): string {
  return shopSettings(shop).sender ?? platformSender;
}
