/**
 * Session-token clock leeway, checked against Shopify's own library: a token its `decodeSessionToken` accepts (10 s
 * of skew on `nbf` and `exp`) is accepted here, one it refuses is refused here.
 */
import '@shopify/shopify-api/adapters/node';
import { ApiVersion, LogSeverity, shopifyApi } from '@shopify/shopify-api';
import { describe, expect, it } from 'vitest';
import { SESSION_TOKEN_LEEWAY_SECONDS, verifySessionToken } from '../../src/http/merchantAuth.js';
import { sessionToken, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { SHOPIFY_SECRET } from '../helpers/system.js';

const SHOP = 'skewed-clock.myshopify.com';
const keys = { apiKey: SHOPIFY_API_KEY, apiSecret: SHOPIFY_SECRET };
const shopify = shopifyApi({
  apiKey: SHOPIFY_API_KEY,
  apiSecretKey: SHOPIFY_SECRET,
  hostName: 'localhost',
  apiVersion: ApiVersion.January25,
  isEmbeddedApp: true,
  logger: { level: LogSeverity.Error, log: async () => {} },
});

const ours = (token: string) => verifySessionToken(token, keys).then(
  (s) => s.shopDomain === SHOP,
  () => false,
);
const shopifys = (token: string) => shopify.session.decodeSessionToken(token).then(
  () => true,
  () => false,
);

describe('session token clock leeway', () => {
  it("is Shopify's 10 s", () => {
    expect(SESSION_TOKEN_LEEWAY_SECONDS).toBe(10);
  });

  it.each([
    ['not valid for another 8 s (nbf)', { notBeforeIn: 8 }, true],
    ['expired 8 s ago (exp)', { expiresIn: -8 }, true],
    ['not valid for another 12 s (nbf)', { notBeforeIn: 12 }, false],
    ['expired 12 s ago (exp)', { expiresIn: -12 }, false],
  ])('a token %s: accepted = %s, as by @shopify/shopify-api', async (_name, options, accepted) => {
    const token = await sessionToken(SHOP, options);
    expect(await shopifys(token)).toBe(accepted);
    expect(await ours(token)).toBe(accepted);
  });

  it('names the claim of a token outside the leeway', async () => {
    await expect(verifySessionToken(await sessionToken(SHOP, { expiresIn: -12 }), keys)).rejects.toMatchObject({ code: 'UNAUTHORIZED', message: expect.stringContaining('exp') });
    await expect(verifySessionToken(await sessionToken(SHOP, { notBeforeIn: 12 }), keys)).rejects.toMatchObject({ code: 'UNAUTHORIZED', message: expect.stringContaining('nbf') });
  });
});
