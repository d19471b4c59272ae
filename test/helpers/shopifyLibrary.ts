/**
 * Shopify's own library as a reference for webhook signatures.
 *
 * `verifyLikeShopifyLibrary` runs `shopifyApi({...}).webhooks.validate({ rawBody, rawRequest })` from
 * `@shopify/shopify-api` (v13, the newest line whose `engines` allow Node 20) with its Node adapter. The adapter
 * only reads `headers`, `method` and `url` from `rawRequest`, so a plain object stands in for the IncomingMessage.
 *
 * The library takes the body as a **string** and HMACs its UTF-8 encoding. So a raw Buffer is decoded as UTF-8
 * first, which is what an app on the library does with the body it received. For valid UTF-8 that gives back the
 * same bytes. For invalid UTF-8 it does not: the library then signs other bytes than Shopify did (see the
 * self-check test).
 */
import '@shopify/shopify-api/adapters/node';
import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ApiVersion, LogSeverity, shopifyApi, type WebhookValidation } from '@shopify/shopify-api';

/** Shopify's algorithm: base64 of HMAC-SHA256 over the raw body bytes, keyed with the app's API secret. */
export function signLikeShopify(body: Buffer | string, secret: string): string {
  return createHmac('sha256', secret).update(body).digest('base64');
}

/** The headers Shopify sends with every webhook. `validate` reports `missing_headers` unless all of them are there. */
export function shopifyWebhookHeaders(
  body: Buffer | string,
  secret: string,
  overrides: Record<string, string | undefined> = {},
): Record<string, string> {
  const headers: Record<string, string | undefined> = {
    'content-type': 'application/json',
    'x-shopify-topic': 'orders/paid',
    'x-shopify-shop-domain': 'blossom-test.myshopify.com',
    'x-shopify-api-version': '2025-01',
    'x-shopify-webhook-id': 'b54557e4-bdd9-4b37-8a5f-bf7d70bcd043',
    'x-shopify-event-id': '98880550-7158-44d4-b7cd-2c97c8a091b5',
    'x-shopify-triggered-at': '2025-01-15T12:00:00.000000Z',
    'x-shopify-hmac-sha256': signLikeShopify(body, secret),
    ...overrides,
  };
  // An override of `undefined` removes the header.
  return Object.fromEntries(Object.entries(headers).filter((e): e is [string, string] => e[1] !== undefined));
}

const libraries = new Map<string, ReturnType<typeof shopifyApi>>();

/** A `shopifyApi` instance per secret; only `apiSecretKey` matters for webhook validation. */
function libraryFor(secret: string): ReturnType<typeof shopifyApi> {
  let shopify = libraries.get(secret);
  if (!shopify) {
    shopify = shopifyApi({
      apiKey: 'sms-blossom-test',
      apiSecretKey: secret,
      hostName: 'localhost',
      apiVersion: ApiVersion.January25,
      isEmbeddedApp: true,
      logger: { level: LogSeverity.Error, log: async () => {} },
    });
    libraries.set(secret, shopify);
  }
  return shopify;
}

/** The library's full answer (`valid`, and `reason` when invalid, or the parsed webhook headers when valid). */
export async function validateWithShopifyLibrary(
  rawBody: Buffer,
  secret: string,
  headers: Record<string, string>,
): Promise<WebhookValidation> {
  const rawRequest = { method: 'POST', url: '/webhooks/shopify', headers } as unknown as IncomingMessage;
  return libraryFor(secret).webhooks.validate({ rawBody: rawBody.toString('utf8'), rawRequest });
}

/**
 * Does Shopify's library accept this body under this `X-Shopify-Hmac-Sha256` value? The other required
 * webhook headers are filled in, so the answer depends on the signature alone.
 */
export async function verifyLikeShopifyLibrary(
  rawBody: Buffer,
  hmacHeader: string | undefined,
  secret: string,
): Promise<boolean> {
  const headers = shopifyWebhookHeaders(rawBody, secret, { 'x-shopify-hmac-sha256': hmacHeader });
  const result = await validateWithShopifyLibrary(rawBody, secret, headers);
  return result.valid;
}
