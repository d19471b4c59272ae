/**
 * The shop's offline Admin API access token: obtained by token exchange on the merchant's first authenticated
 * request, stored encrypted (src/shopify/tokens.ts), renewed when Shopify issued an expiring one, and handed to the
 * sync in plain text only in memory.
 */
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import { getShopToken, saveShopToken, type StoredShopToken } from '../db/shopTokens.js';
import { AppError } from '../errors.js';
import { exchangeSessionToken, refreshAccessToken, type FetchLike, type TokenGrant } from '../shopify/adminClient.js';
import { decryptToken, encryptToken, type TokenKeys } from '../shopify/tokens.js';

export interface AccessTokenDeps {
  db: Db;
  config: Pick<Config, 'shopify' | 'shopifyAdmin'>;
  fetch?: FetchLike;
}

/** An expiring token this close to its end is renewed before use, so a request never starts with a dying token. */
const REFRESH_MARGIN_MS = 5 * 60_000;

function keysOf(config: AccessTokenDeps['config']): TokenKeys {
  return { current: config.shopifyAdmin.tokenKey, previous: config.shopifyAdmin.previousTokenKey };
}

function appOf(config: AccessTokenDeps['config']) {
  const { apiKey, apiSecret } = config.shopify;
  if (!apiKey) throw new AppError('MERCHANT_API_DISABLED', 'SHOPIFY_API_KEY is required to obtain access tokens');
  return { apiKey, apiSecret };
}

async function store(shopId: number, grant: TokenGrant, deps: AccessTokenDeps): Promise<void> {
  const keys = keysOf(deps.config);
  const row: StoredShopToken = {
    shopId,
    accessToken: encryptToken(grant.accessToken, keys),
    scope: grant.scope,
    expiresAt: grant.expiresAt,
    refreshToken: grant.refreshToken === null ? null : encryptToken(grant.refreshToken, keys),
    refreshExpiresAt: grant.refreshExpiresAt,
  };
  await saveShopToken(deps.db, row);
}

/** Exchanges a verified session token for an offline access token and stores it. */
export async function obtainOfflineToken(shop: { id: number; domain: string }, sessionToken: string, deps: AccessTokenDeps): Promise<void> {
  const grant = await exchangeSessionToken(shop.domain, sessionToken, appOf(deps.config), { baseUrl: deps.config.shopifyAdmin.baseUrl, fetch: deps.fetch });
  await store(shop.id, grant, deps);
}

/**
 * The shop's access token, renewed first when it expires within {@link REFRESH_MARGIN_MS}. Throws NO_ACCESS_TOKEN when
 * the shop has none (or its refresh token has expired too: the next merchant request exchanges a new one).
 */
export async function accessTokenFor(shop: { id: number; domain: string }, deps: AccessTokenDeps, now = new Date()): Promise<string> {
  const stored = await getShopToken(deps.db, shop.id);
  if (!stored) throw new AppError('NO_ACCESS_TOKEN', `shop ${shop.domain} has no access token yet (it is obtained when the merchant first opens the app)`);
  const keys = keysOf(deps.config);
  if (!stored.expiresAt || stored.expiresAt.getTime() - now.getTime() > REFRESH_MARGIN_MS) return decryptToken(stored.accessToken, keys);
  if (!stored.refreshToken || (stored.refreshExpiresAt && stored.refreshExpiresAt.getTime() <= now.getTime())) {
    throw new AppError('NO_ACCESS_TOKEN', `shop ${shop.domain}: the access token expired and cannot be refreshed (the next merchant request exchanges a new one)`);
  }
  const grant = await refreshAccessToken(shop.domain, decryptToken(stored.refreshToken, keys), appOf(deps.config), {
    baseUrl: deps.config.shopifyAdmin.baseUrl,
    fetch: deps.fetch,
    now,
  });
  await store(shop.id, grant, deps);
  return grant.accessToken;
}
