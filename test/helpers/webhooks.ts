/** Builds Shopify webhook requests signed the way Shopify signs them. */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { signWebhook } from '../../src/shopify/hmac.js';
import { SHOPIFY_SECRET } from './system.js';

export function fixture(name: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(new URL(`../fixtures/shopify/${name}.json`, import.meta.url), 'utf8'));
}

export interface SignedWebhook {
  topic: string;
  shop?: string;
  body: Record<string, unknown> | string | Buffer;
  webhookId?: string;
  eventId?: string;
  secret?: string;
  headers?: Record<string, string | undefined>;
  url?: string;
}

export function webhookRequest(w: SignedWebhook) {
  const payload = Buffer.isBuffer(w.body) ? w.body : Buffer.from(typeof w.body === 'string' ? w.body : JSON.stringify(w.body));
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-shopify-topic': w.topic,
    'x-shopify-shop-domain': w.shop ?? 'blossom-demo.myshopify.com',
    'x-shopify-hmac-sha256': signWebhook(payload, w.secret ?? SHOPIFY_SECRET),
    'x-shopify-webhook-id': w.webhookId ?? randomUUID(),
    'x-shopify-event-id': w.eventId ?? randomUUID(),
    'x-shopify-triggered-at': new Date().toISOString(),
    'x-shopify-api-version': '2025-07',
  };
  for (const [k, v] of Object.entries(w.headers ?? {})) {
    if (v === undefined) delete headers[k];
    else headers[k] = v;
  }
  return { method: 'POST' as const, url: w.url ?? '/webhooks/shopify', headers, payload };
}

export function postWebhook(app: FastifyInstance, w: SignedWebhook): Promise<LightMyRequestResponse> {
  return app.inject(webhookRequest(w));
}
