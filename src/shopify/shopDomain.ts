/**
 * A shop is `<name>.myshopify.com` and nothing else: Shopify's permanent domain, the only one in webhook headers and
 * session tokens. A custom domain, an IP address or `x.myshopify.com.evil.com` is not a shop.
 */
const SHOP_DOMAIN = /^[a-z0-9][a-z0-9-]{0,99}\.myshopify\.com$/;

export function isShopDomain(value: string): boolean {
  return SHOP_DOMAIN.test(value);
}
