/** shopify.app.toml subscribes to exactly the topics the service handles, at the API version it is written against. */
import fs from 'node:fs';
import { parse } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { normalizeEventContext, topicKind } from '../../src/shopify/normalize.js';
import { BULK_OPERATIONS_FINISH_TOPIC, PRIVACY_TOPICS, SHOPIFY_API_VERSION, SUBSCRIBED_TOPICS } from '../../src/shopify/topics.js';

interface Subscription {
  topics?: string[];
  compliance_topics?: string[];
  uri: string;
}
const app = parse(fs.readFileSync(new URL('../../shopify.app.toml', import.meta.url), 'utf8')) as unknown as {
  webhooks: { api_version: string; subscriptions: Subscription[] };
};
const subs = app.webhooks.subscriptions;

describe('shopify.app.toml', () => {
  it('declares the API version the normalisers are written against', () => {
    expect(app.webhooks.api_version).toBe(SHOPIFY_API_VERSION);
  });

  it('subscribes to exactly the handled topics, each once', () => {
    const topics = subs.flatMap((s) => s.topics ?? []);
    expect(new Set(topics).size).toBe(topics.length);
    expect([...topics].sort()).toEqual([...SUBSCRIBED_TOPICS].sort());
  });

  it('declares the three compliance topics', () => {
    const compliance = subs.flatMap((s) => s.compliance_topics ?? []);
    expect([...compliance].sort()).toEqual([...PRIVACY_TOPICS].sort());
  });

  it('sends every subscription to the webhook intake', () => {
    for (const s of subs) expect(s.uri).toBe('/webhooks/shopify');
  });

  it('names SMS consent with Shopify\'s spelling, and every subscribed topic about the shop\'s data has a normaliser', () => {
    expect(SUBSCRIBED_TOPICS).toContain('customers_marketing_consent/update');
    expect(SUBSCRIBED_TOPICS).not.toContain('customers/marketing_consent_update');
    // bulk_operations/finish is about the app's own bulk operation: the events processor takes it before normalising.
    expect(SUBSCRIBED_TOPICS).toContain(BULK_OPERATIONS_FINISH_TOPIC);
    for (const topic of SUBSCRIBED_TOPICS.filter((t) => t !== BULK_OPERATIONS_FINISH_TOPIC)) expect(topicKind(topic), topic).not.toBe('unknown');
    expect(normalizeEventContext('customers/marketing_consent_update', { id: 1 }, 'x.myshopify.com').kind).toBe('unknown');
  });
});
