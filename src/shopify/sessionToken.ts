/**
 * Session tokens signed here, the way Shopify's App Bridge gets them for an embedded app: a JWT, HS256 with
 * SHOPIFY_API_SECRET, `aud` SHOPIFY_API_KEY, `dest` and `iss` naming the shop. For trying the merchant API outside
 * Shopify (`smsblossom dev token`); never in production, where only Shopify issues them.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { isShopDomain } from './shopDomain.js';

export interface DevTokenOptions {
  shop: string;
  /** Lifetime in seconds. Default 60, like App Bridge's tokens. */
  ttlSeconds?: number;
  /** The staff member the token names (`sub`). Default `1`. */
  userId?: string;
  now?: Date;
}

export const DEV_TOKEN_DEFAULT_TTL_SECONDS = 60;
/** A day: long enough for an afternoon with curl, short enough that a leaked one does not last. */
export const DEV_TOKEN_MAX_TTL_SECONDS = 86_400;

/** Signs a session token the service's merchant auth accepts. Throws DEVELOPMENT_ONLY in production. */
export async function signDevSessionToken(config: Pick<Config, 'env' | 'shopify'>, o: DevTokenOptions): Promise<string> {
  if (config.env === 'production') {
    throw new AppError('DEVELOPMENT_ONLY', 'dev token: not in production (NODE_ENV=production); there only Shopify issues session tokens');
  }
  if (!config.shopify.apiKey) throw new AppError('VALIDATION_FAILED', 'dev token: SHOPIFY_API_KEY is not set (the token\'s aud)');
  const shop = o.shop.toLowerCase();
  if (!isShopDomain(shop)) throw new AppError('VALIDATION_FAILED', `--shop: "${o.shop}" is not a *.myshopify.com domain`);
  const ttl = o.ttlSeconds ?? DEV_TOKEN_DEFAULT_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > DEV_TOKEN_MAX_TTL_SECONDS) {
    throw new AppError('VALIDATION_FAILED', `--ttl: must be whole seconds from 1 to ${DEV_TOKEN_MAX_TTL_SECONDS}`);
  }
  const now = Math.floor((o.now ?? new Date()).getTime() / 1000);
  return new SignJWT({ dest: `https://${shop}`, sid: randomUUID() })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(`https://${shop}/admin`)
    .setAudience(config.shopify.apiKey)
    .setSubject(o.userId ?? '1')
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + ttl)
    .setJti(randomUUID())
    .sign(new TextEncoder().encode(config.shopify.apiSecret));
}
