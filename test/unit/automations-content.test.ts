/**
 * The automations' pure parts: pipeline rules from the automation and its shop, the object a message is keyed on, the
 * template variables, and a rendered message composed (footer, encoding, parts, cost).
 */
import { describe, expect, it } from 'vitest';
import { renderAutomationMessage, templateVars } from '../../src/automations/content.js';
import { objectKeyFor, pipelineRules } from '../../src/automations/rules.js';
import { shopDisplayName, shopSender } from '../../src/automations/settings.js';
import type { Automation, Shop } from '../../src/db/schema.js';
import { withUtm } from '../../src/messages/links.js';
import { createRenderer } from '../../src/messages/render.js';

const shop = (over: Partial<Shop> = {}): Shop => ({
  id: 1,
  domain: 'blossom-demo.myshopify.com',
  name: null,
  timezone: 'America/New_York',
  countryCode: 'US',
  currency: 'USD',
  settings: {},
  installedAt: new Date(0),
  uninstalledAt: null,
  createdAt: new Date(0),
  updatedAt: new Date(0),
  planName: null,
  ...over,
});

const automation = (over: Partial<Automation> = {}): Automation => ({
  id: 7,
  shopId: 1,
  trigger: 'order_paid',
  name: 'Order confirmation',
  enabled: true,
  template: '{{ shop.name }}: thanks {{ customer.firstName }}!',
  delayMinutes: 0,
  transactional: true,
  rules: {},
  createdAt: new Date(0),
  updatedAt: new Date(0),
  ...over,
});

const renderer = createRenderer();
const PRICE = 0.03;

describe('shop settings', () => {
  it('display name: the chosen name, else Shopify name, else the domain handle', () => {
    expect(shopDisplayName(shop({ settings: { name: 'Blossom' }, name: 'Shopify Name' }))).toBe('Blossom');
    expect(shopDisplayName(shop({ name: 'Shopify Name' }))).toBe('Shopify Name');
    expect(shopDisplayName(shop())).toBe('blossom-demo');
  });

  it("sender: the shop's own, else the platform's", () => {
    expect(shopSender(shop({ settings: { sender: 'BLOSSOM' } }), 'SMSBlossom')).toBe('BLOSSOM');
    expect(shopSender(shop(), 'SMSBlossom')).toBe('SMSBlossom');
  });
});

describe('pipelineRules', () => {
  it("the automation's own rules win over the shop's, which win over the defaults", () => {
    const s = shop({ settings: { quietHours: { start: '22:00' }, frequencyCap: { max: 3, windowHours: 24 } } });
    const r = pipelineRules(automation({ trigger: 'order_paid', rules: { quietHours: { end: '07:00' } } }), s);
    expect(r.quietHours).toEqual({ enabled: true, window: { start: '22:00', end: '07:00' } });
    expect(r.frequencyCap).toEqual({ max: 3, windowHours: 24 });
    expect(pipelineRules(automation({ rules: { frequencyCap: null } }), s).frequencyCap).toBeNull();
  });

  it('a marketing trigger stays marketing whatever the stored row says', () => {
    const r = pipelineRules(automation({ trigger: 'welcome', transactional: true, rules: { consent: 'transactional', quietHours: { bypass: true } } }), shop());
    expect(r).toMatchObject({ transactional: false, consent: 'marketing', quietHoursBypass: undefined });
  });
});

describe('objectKeyFor', () => {
  it('keys each trigger on its object, and none when the event lacks it', () => {
    expect(objectKeyFor('order_paid', { order: { id: '5' } }, 1)).toBe('order-5');
    expect(objectKeyFor('abandoned_checkout', { checkout: { token: 'abc' } }, 1)).toBe('checkout-abc');
    expect(objectKeyFor('fulfillment_update', { fulfillment: { id: '9', shipmentStatus: 'delivered' } }, 1)).toBe('fulfillment-9-delivered');
    expect(objectKeyFor('welcome', {}, 42)).toBe('contact-42');
    expect(objectKeyFor('order_paid', {}, 1)).toBeNull();
    expect(objectKeyFor('welcome', {}, null)).toBeNull();
  });
});

describe('templateVars', () => {
  it('never exposes phone or email, fills names from the contact, and tags the recovery link', () => {
    const vars = templateVars(shop(), { firstName: 'Ada', lastName: 'Lovelace' }, {
      customer: { phone: '+15555550100', email: 'ada@example.com' },
      checkout: { recoveryUrl: 'https://example.com/recover?key=1' },
    }) as Record<string, any>;
    expect(vars.customer).toEqual({ firstName: 'Ada', lastName: 'Lovelace', phone: null, email: null });
    expect(vars.checkout.recoveryUrl).toBe('https://example.com/recover?key=1&utm_source=sms&utm_medium=sms&utm_campaign=abandoned_checkout');
    expect(vars.shop).toEqual({ name: 'blossom-demo', domain: 'blossom-demo.myshopify.com', currency: 'USD' });
  });

  it('withUtm leaves a malformed link as it is and no link as none', () => {
    expect(withUtm('not a url', 'x')).toBe('not a url');
    expect(withUtm(null, 'x')).toBeNull();
  });
});

describe('renderAutomationMessage', () => {
  const ctx = { customer: { firstName: 'Ada' } };

  it('a transactional message is the rendered text, priced', async () => {
    const m = await renderAutomationMessage(
      { template: automation().template, shop: shop({ settings: { optOutFooter: 'Text STOP to quit' } }), contact: null, ctx, timezone: null, transactional: true },
      { renderer, costPerSegment: PRICE },
    );
    expect(m).toEqual({ text: 'blossom-demo: thanks Ada!', encoding: 'GSM-7', segments: 1, costEstimate: 0.03, warnings: [] });
  });

  it("a marketing message ends with the shop's footer, and render warnings are kept", async () => {
    const m = await renderAutomationMessage(
      {
        template: 'Hi {{ customer.firstName }} {{ customer.nickname }}',
        shop: shop({ settings: { optOutFooter: 'Text STOP to quit' } }),
        contact: null,
        ctx,
        timezone: 'America/New_York',
        transactional: false,
      },
      { renderer, costPerSegment: PRICE },
    );
    expect(m.text).toBe('Hi Ada\nText STOP to quit');
    expect(m.warnings).toEqual(['missing variable: customer.nickname']);
  });
});
