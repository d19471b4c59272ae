/** Shopify webhook signatures: base64 HMAC-SHA256 of the raw body, keyed with the app's API secret. */
import { createHmac, timingSafeEqual } from 'node:crypto';

export function signWebhook(rawBody: Buffer | string, secret: string): string {
  return createHmac('sha256', secret).update(rawBody).digest('base64');
}

/** A SHA-256 MAC in canonical base64: 43 characters of the standard alphabet and one `=` of padding. */
const BASE64_SHA256 = /^[A-Za-z0-9+/]{43}=$/;

/**
 * Constant-time check of `X-Shopify-Hmac-Sha256` against the raw bytes as received. The header is decoded strictly:
 * Node's base64 decoder skips characters outside the alphabet and takes base64url too, so `<sig>!!` or a URL-safe
 * spelling would otherwise pass; Shopify sends canonical padded base64 and nothing else is accepted.
 */
export function verifyWebhookHmac(rawBody: Buffer, header: string | undefined, secret: string): boolean {
  if (!header || !BASE64_SHA256.test(header)) return false;
  const expected = createHmac('sha256', secret).update(rawBody).digest();
  const given = Buffer.from(header, 'base64');
  // timingSafeEqual throws on a length mismatch; a wrong length is simply a wrong signature.
  return given.length === expected.length && timingSafeEqual(given, expected);
}
