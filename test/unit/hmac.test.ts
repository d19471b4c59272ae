import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhookHmac } from '../../src/shopify/hmac.js';

const secret = 'hush';
const body = Buffer.from('{"id":1,"name":"#1001"}');

describe('Shopify webhook HMAC', () => {
  it('accepts the base64 HMAC-SHA256 of the raw bytes', () => {
    const sig = createHmac('sha256', secret).update(body).digest('base64');
    expect(signWebhook(body, secret)).toBe(sig);
    expect(verifyWebhookHmac(body, sig, secret)).toBe(true);
  });

  it('rejects a missing, empty, wrong-length, wrong-key or tampered signature', () => {
    const sig = signWebhook(body, secret);
    expect(verifyWebhookHmac(body, undefined, secret)).toBe(false);
    expect(verifyWebhookHmac(body, '', secret)).toBe(false);
    expect(verifyWebhookHmac(body, 'abc', secret)).toBe(false);
    expect(verifyWebhookHmac(body, signWebhook(body, 'other'), secret)).toBe(false);
    expect(verifyWebhookHmac(Buffer.from('{"id":1,"name":"#1002"}'), sig, secret)).toBe(false);
  });

  it('is computed over bytes, not over re-serialised JSON', () => {
    const spaced = Buffer.from('{ "id": 1, "name": "#1001" }');
    expect(verifyWebhookHmac(spaced, signWebhook(body, secret), secret)).toBe(false);
    expect(verifyWebhookHmac(spaced, signWebhook(spaced, secret), secret)).toBe(true);
  });
});
