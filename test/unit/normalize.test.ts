import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { AppError } from '../../src/errors.js';
import { normalizeEventContext, topicKind, type EventContext } from '../../src/shopify/normalize.js';
import { toE164 } from '../../src/shopify/phone.js';

const SHOP = 'shop_7f3a';

type Obj = Record<string, unknown>;

function fixture(name: string): Obj {
  return JSON.parse(readFileSync(new URL(`../fixtures/shopify/${name}.json`, import.meta.url), 'utf8')) as Obj;
}

function norm<K extends EventContext['kind']>(topic: string, raw: unknown, kind: K): Extract<EventContext, { kind: K }> {
  const ctx = normalizeEventContext(topic, raw, SHOP);
  expect(ctx.kind).toBe(kind);
  return ctx as Extract<EventContext, { kind: K }>;
}

function thrown(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an AppError');
}

const NO_CONTACT = { firstName: null, lastName: null, email: null, phone: null, countryCode: null, provinceCode: null };

describe('orders', () => {
  it('normalises orders/paid with customer, addresses, line items and consent', () => {
    const ctx = norm('orders/paid', fixture('orders-paid'), 'order');
    expect(ctx).toEqual({
      kind: 'order',
      topic: 'orders/paid',
      shopId: SHOP,
      objectId: '5812345678901',
      order: {
        id: '5812345678901',
        graphqlId: 'gid://shopify/Order/5812345678901',
        name: '#1042',
        number: 1042,
        totalPrice: '79.43',
        subtotalPrice: '68.00',
        currency: 'USD',
        financialStatus: 'paid',
        fulfillmentStatus: null,
        statusUrl:
          'https://blossom-demo.myshopify.com/64512345678/orders/0a1b2c3d4e5f60718293a4b5c6d7e8f9/authenticate?key=3e4f5a6b7c8d9e0f',
        checkoutToken: '7f3a9c2e41b84d5f9e6a0b1c2d3e4f50',
        cartToken: 'Z2NwLXVzLWVhc3QxOjAxSEY0WkJRUDdLM1JKWUs5V1dGNVFYUzhO',
        createdAt: '2024-05-14T10:21:07-04:00',
        cancelledAt: null,
        lineItems: [
          {
            title: 'Lavender Candle',
            quantity: 2,
            price: '24.00',
            sku: 'CNDL-LAV-L',
            variantTitle: 'Large',
            productId: '8812345678901',
            variantId: '46012345678901',
          },
          {
            title: 'Matchbox',
            quantity: 1,
            price: '20.00',
            sku: null,
            variantTitle: null,
            productId: '8812345678902',
            variantId: '46012345678902',
          },
        ],
      },
      customer: {
        shopifyId: '7234567890123',
        firstName: 'Jane',
        lastName: 'Doe',
        email: 'jane.doe@example.com',
        phone: '+1 (201) 555-0123',
        countryCode: 'US',
        provinceCode: 'NJ',
        tags: ['VIP', 'newsletter'],
        smsConsent: {
          state: 'subscribed',
          optInLevel: 'single_opt_in',
          updatedAt: '2024-05-14T10:20:58-04:00',
          collectedFrom: 'SHOPIFY',
        },
      },
      fulfillment: null,
    });
  });

  it('does not carry raw payload fields into the context', () => {
    const json = JSON.stringify(normalizeEventContext('orders/paid', fixture('orders-paid'), SHOP));
    for (const leaked of ['203.0.113.24', 'browser_ip', 'shipping_lines', 'Example Street', 'price_set', 'vip-order']) {
      expect(json).not.toContain(leaked);
    }
  });

  it('orders/fulfilled takes the last fulfillment and falls back to order phone and shipping country', () => {
    const ctx = norm('orders/fulfilled', fixture('orders-fulfilled'), 'order');
    expect(ctx.objectId).toBe('5812345679902');
    expect(ctx.order.fulfillmentStatus).toBe('fulfilled');
    expect(ctx.order.currency).toBe('EUR');
    expect(ctx.order.cartToken).toBeNull();
    expect(ctx.fulfillment).toEqual({
      id: '4912345678002',
      orderId: '5812345679902',
      status: 'success',
      shipmentStatus: 'in_transit',
      trackingNumber: '00340434161234567890',
      trackingNumbers: ['00340434161234567890'],
      trackingCompany: 'DHL Paket',
      trackingUrl: 'https://www.dhl.de/de/privatkunden/pakete-empfangen/verfolgen.html?piececode=00340434161234567890',
      trackingUrls: ['https://www.dhl.de/de/privatkunden/pakete-empfangen/verfolgen.html?piececode=00340434161234567890'],
    });
    expect(ctx.customer).toEqual({
      shopifyId: '7234567891234',
      firstName: 'Lukas',
      lastName: 'Schmidt',
      email: 'lukas.schmidt@example.com',
      phone: '+4915123456789',
      countryCode: 'DE',
      provinceCode: null,
      tags: [],
      smsConsent: null,
    });
  });

  it('orders/partially_fulfilled also gets a fulfillment; other order topics do not', () => {
    const raw = fixture('orders-fulfilled');
    expect(norm('orders/partially_fulfilled', raw, 'order').fulfillment?.id).toBe('4912345678002');
    expect(norm('orders/paid', raw, 'order').fulfillment).toBeNull();
    expect(norm('orders/updated', raw, 'order').fulfillment).toBeNull();
    expect(norm('orders/fulfilled', { ...raw, fulfillments: [] }, 'order').fulfillment).toBeNull();
    expect(norm('orders/fulfilled', { ...raw, fulfillments: 'nope' }, 'order').fulfillment).toBeNull();
    expect(norm('orders/fulfilled', { ...raw, fulfillments: [{ status: 'success' }] }, 'order').fulfillment).toBeNull();
  });

  it('a fulfillment without order_id inherits the order id', () => {
    const ctx = norm('orders/fulfilled', { id: 11, fulfillments: [{ id: 22, tracking_number: 'TN1' }] }, 'order');
    expect(ctx.fulfillment).toMatchObject({ id: '22', orderId: '11', trackingNumber: 'TN1', trackingNumbers: ['TN1'] });
  });

  it.each(['orders/create', 'orders/paid', 'orders/updated', 'orders/fulfilled', 'orders/cancelled', 'orders/partially_fulfilled', 'orders/edited'])(
    '%s is an order topic',
    (topic) => {
      expect(topicKind(topic)).toBe('order');
      expect(norm(topic, { id: 1 }, 'order').objectId).toBe('1');
    },
  );

  it('orders/cancelled keeps cancelled_at', () => {
    const raw = { ...fixture('orders-paid'), cancelled_at: '2024-05-15T09:00:00-04:00', financial_status: 'refunded' };
    const ctx = norm('orders/cancelled', raw, 'order');
    expect(ctx.order.cancelledAt).toBe('2024-05-15T09:00:00-04:00');
    expect(ctx.order.financialStatus).toBe('refunded');
  });

  it('orders/edited accepts the {order_edit} payload shape', () => {
    const raw = {
      order_edit: {
        id: 78912345,
        app_id: null,
        created_at: '2024-05-14T12:00:00-04:00',
        notify_customer: false,
        order_id: 5812345678901,
        staff_note: '',
        user_id: null,
        line_items: { additions: [{ id: 1, delta: 1 }], removals: [] },
      },
    };
    const ctx = norm('orders/edited', raw, 'order');
    expect(ctx.objectId).toBe('5812345678901');
    expect(ctx.order).toMatchObject({ id: '5812345678901', name: null, totalPrice: null, lineItems: [] });
    expect(ctx.customer).toBeNull();
    const err = thrown(() => normalizeEventContext('orders/edited', { order_edit: { id: 1 } }, SHOP));
    expect(err.message).toMatch(/^order_edit\.order_id: /);
  });

  it('builds a guest customer from order contact fields and billing country when there is no customer', () => {
    const raw = {
      id: 99,
      email: 'guest@example.com',
      phone: null,
      customer: null,
      shipping_address: { phone: '06 12 34 56 78', country_code: null },
      billing_address: { country_code: 'fr', province_code: null, phone: '01 23 45 67 89' },
    };
    expect(norm('orders/create', raw, 'order').customer).toEqual({
      shopifyId: null,
      ...NO_CONTACT,
      email: 'guest@example.com',
      phone: '06 12 34 56 78',
      countryCode: 'FR',
      tags: [],
      smsConsent: null,
    });
  });

  it('customer is null when the order has no customer, email or phone', () => {
    expect(norm('orders/create', { id: 5 }, 'order').customer).toBeNull();
    expect(norm('orders/create', { id: 5, customer: 'bob' }, 'order').customer).toBeNull();
  });

  it('prefers the customer default_address over the shipping address for country', () => {
    const raw = {
      id: 1,
      customer: { id: 2, default_address: { country_code: 'GB', province_code: 'ENG' } },
      shipping_address: { country_code: 'US', province_code: 'NY' },
    };
    expect(norm('orders/paid', raw, 'order').customer).toMatchObject({ countryCode: 'GB', provinceCode: 'ENG' });
  });

  it('turns wrong-typed optional fields into null and skips junk line items', () => {
    const raw = {
      id: '5812345678901',
      name: 1042,
      order_number: '1042',
      total_price: { amount: '1.00' },
      subtotal_price: 12.5,
      currency: ['USD'],
      financial_status: true,
      order_status_url: '',
      created_at: 1715696467,
      line_items: [null, 'x', 7, { name: 'Gift card', quantity: 'many', price: null, product_id: 'abc', variant_id: -1 }],
      customer: { id: { nested: true }, first_name: 42, tags: 17, sms_marketing_consent: 'subscribed' },
      shipping_address: 'nowhere',
    };
    const ctx = norm('orders/paid', raw, 'order');
    expect(ctx.order).toEqual({
      id: '5812345678901',
      graphqlId: null,
      name: null,
      number: 1042,
      totalPrice: null,
      subtotalPrice: '12.5',
      currency: null,
      financialStatus: null,
      fulfillmentStatus: null,
      statusUrl: null,
      checkoutToken: null,
      cartToken: null,
      createdAt: null,
      cancelledAt: null,
      lineItems: [
        { title: 'Gift card', quantity: 0, price: null, sku: null, variantTitle: null, productId: 'abc', variantId: null },
      ],
    });
    expect(ctx.customer).toBeNull();
  });
});

describe('checkouts', () => {
  it('normalises an abandoned checkouts/update', () => {
    const ctx = norm('checkouts/update', fixture('checkouts-update-abandoned'), 'checkout');
    expect(ctx).toEqual({
      kind: 'checkout',
      topic: 'checkouts/update',
      shopId: SHOP,
      objectId: '9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a',
      checkout: {
        id: '35123456789012',
        token: '9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a',
        cartToken: 'Z2NwLWV1cm9wZS13ZXN0MTowMUhGNlBROFhEWUs1UTNNOFpBN0pUWjJSNw',
        recoveryUrl:
          'https://blossom-demo.myshopify.com/64512345678/checkouts/9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a/recover?key=5a6b7c8d9e0f1a2b',
        totalPrice: '26.99',
        currency: 'GBP',
        completed: false,
        completedAt: null,
        createdAt: '2024-07-19T18:03:41+01:00',
        updatedAt: '2024-07-19T18:09:12+01:00',
        locale: 'en-GB',
        lineItems: [
          {
            title: 'Lavender Candle',
            quantity: 1,
            price: '22.00',
            sku: 'CNDL-LAV-L',
            variantTitle: 'Large',
            productId: '8812345678901',
            variantId: '46012345678901',
          },
        ],
      },
      customer: {
        shopifyId: '7234567892345',
        firstName: 'Amelia',
        lastName: 'Clarke',
        email: 'amelia.clarke@example.com',
        phone: '07400 123456',
        countryCode: 'GB',
        provinceCode: 'ENG',
        tags: [],
        smsConsent: {
          state: 'pending',
          optInLevel: 'confirmed_opt_in',
          updatedAt: '2024-07-19T18:08:55+01:00',
          collectedFrom: 'SHOPIFY',
        },
      },
      smsMarketing: { phone: '07400 123456', accepts: true },
    });
  });

  it('normalises a completed checkout without id or customer object', () => {
    const ctx = norm('checkouts/update', fixture('checkouts-update-completed'), 'checkout');
    expect(ctx.objectId).toBe('e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6');
    expect(ctx.checkout).toMatchObject({
      id: null,
      token: 'e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6',
      completed: true,
      completedAt: '2024-08-02T11:55:38+02:00',
      totalPrice: '31.50',
      currency: 'EUR',
      locale: 'fr',
    });
    expect(ctx.checkout.lineItems).toHaveLength(1);
    expect(ctx.customer).toEqual({
      shopifyId: null,
      ...NO_CONTACT,
      email: 'camille.martin@example.com',
      phone: '06 12 34 56 78',
      countryCode: 'FR',
      tags: [],
      smsConsent: null,
    });
    expect(ctx.smsMarketing).toEqual({ phone: '06 12 34 56 78', accepts: false });
  });

  it('customer phone falls back to phone, then sms_marketing_phone, then shipping phone', () => {
    const base = { token: 't1', customer: { id: 3, phone: null } };
    const phoneOf = (extra: Obj) => norm('checkouts/create', { ...base, ...extra }, 'checkout').customer?.phone;
    expect(phoneOf({ phone: '+12015550123', sms_marketing_phone: '+12015550188' })).toBe('+12015550123');
    expect(phoneOf({ sms_marketing_phone: '+12015550188', shipping_address: { phone: '201-555-0147' } })).toBe('+12015550188');
    expect(phoneOf({ shipping_address: { phone: '201-555-0147' } })).toBe('201-555-0147');
    expect(phoneOf({})).toBeNull();
  });

  it('smsMarketing prefers sms_marketing_phone and keeps accepts null when absent or not boolean', () => {
    const ctx = norm('checkouts/create', { token: 't', phone: '+1', sms_marketing_phone: '+2' }, 'checkout');
    expect(ctx.smsMarketing).toEqual({ phone: '+2', accepts: null });
    const ctx2 = norm('checkouts/create', { token: 't', buyer_accepts_sms_marketing: 'yes' }, 'checkout');
    expect(ctx2.smsMarketing).toEqual({ phone: null, accepts: null });
    expect(ctx2.customer).toBeNull();
  });

  it('accepts checkout_token when token is absent and handles checkouts/delete', () => {
    const ctx = norm('checkouts/delete', { id: 35123456789012, checkout_token: 'abc123' }, 'checkout');
    expect(ctx.objectId).toBe('abc123');
    expect(ctx.checkout).toMatchObject({ id: '35123456789012', token: 'abc123', completed: false, lineItems: [] });
  });
});

describe('fulfillments', () => {
  it('normalises fulfillments/update with tracking and destination', () => {
    const ctx = norm('fulfillments/update', fixture('fulfillments-update'), 'fulfillment');
    expect(ctx).toEqual({
      kind: 'fulfillment',
      topic: 'fulfillments/update',
      shopId: SHOP,
      objectId: '4912345678123',
      fulfillment: {
        id: '4912345678123',
        orderId: '5812345678901',
        status: 'success',
        shipmentStatus: 'out_for_delivery',
        trackingNumber: '1Z999AA10123456784',
        trackingNumbers: ['1Z999AA10123456784', '1Z999AA10123456795'],
        trackingCompany: 'UPS',
        trackingUrl: 'https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums=1Z999AA10123456784',
        trackingUrls: [
          'https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums=1Z999AA10123456784',
          'https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums=1Z999AA10123456795',
        ],
      },
      customer: {
        shopifyId: null,
        firstName: 'Jane',
        lastName: 'Doe',
        email: 'jane.doe@example.com',
        phone: '(201) 555-0147',
        countryCode: 'US',
        provinceCode: 'NJ',
        tags: [],
        smsConsent: null,
      },
    });
  });

  it('has no customer without a destination, and prefers tracking_number', () => {
    const ctx = norm(
      'fulfillments/create',
      { id: 7, order_id: 8, tracking_number: 'A1', tracking_numbers: ['B2', 42, ''], destination: null },
      'fulfillment',
    );
    expect(ctx.customer).toBeNull();
    expect(ctx.fulfillment).toEqual({
      id: '7',
      orderId: '8',
      status: null,
      shipmentStatus: null,
      trackingNumber: 'A1',
      trackingNumbers: ['B2'],
      trackingCompany: null,
      trackingUrl: null,
      trackingUrls: [],
    });
  });
});

describe('customers', () => {
  it('normalises customers/update with string tags and unsubscribed consent', () => {
    const ctx = norm('customers/update', fixture('customers-update'), 'customer');
    expect(ctx).toEqual({
      kind: 'customer',
      topic: 'customers/update',
      shopId: SHOP,
      objectId: '7234567893456',
      customer: {
        shopifyId: '7234567893456',
        firstName: 'Noah',
        lastName: 'Williams',
        email: 'noah.williams@example.com',
        phone: '+14155552671',
        countryCode: 'US',
        provinceCode: 'CA',
        tags: ['wholesale', 'repeat-buyer', 'sms-club'],
        smsConsent: {
          state: 'unsubscribed',
          optInLevel: 'single_opt_in',
          updatedAt: '2024-09-10T08:44:18-04:00',
          collectedFrom: 'OTHER',
        },
      },
    });
  });

  it('normalises customers_marketing_consent/update', () => {
    const ctx = norm('customers_marketing_consent/update', fixture('customers-marketing_consent_update'), 'customer');
    expect(ctx.objectId).toBe('7234567894567');
    expect(ctx.customer).toEqual({
      shopifyId: '7234567894567',
      ...NO_CONTACT,
      phone: '+33612345678',
      tags: [],
      smsConsent: {
        state: 'subscribed',
        optInLevel: 'confirmed_opt_in',
        updatedAt: '2024-09-21T16:02:33+02:00',
        collectedFrom: 'OTHER',
      },
    });
  });

  it('accepts customer_id in a consent update that has no id', () => {
    const ctx = norm('customers_marketing_consent/update', { customer_id: 55, phone: '+33612345678' }, 'customer');
    expect(ctx.objectId).toBe('55');
    expect(ctx.customer.shopifyId).toBe('55');
  });

  it.each(['customers/create', 'customers/update', 'customers/enable', 'customers/disable', 'customers/delete'])(
    '%s is a customer topic',
    (topic) => {
      const ctx = norm(topic, { id: 9 }, 'customer');
      expect(ctx.customer).toEqual({ shopifyId: '9', ...NO_CONTACT, tags: [], smsConsent: null });
    },
  );

  it('uses the default entry of addresses[] when default_address is missing', () => {
    const raw = {
      id: 1,
      addresses: [
        { country_code: 'US', province_code: 'NY', default: false },
        { country_code: 'DE', province_code: 'BE', default: true },
      ],
    };
    expect(norm('customers/create', raw, 'customer').customer).toMatchObject({ countryCode: 'DE', provinceCode: 'BE' });
  });

  describe('consent', () => {
    const consentOf = (c: unknown) => norm('customers/update', { id: 1, sms_marketing_consent: c }, 'customer').customer.smsConsent;

    it.each(['not_subscribed', 'pending', 'subscribed', 'unsubscribed', 'redacted'] as const)('keeps state %s', (state) => {
      expect(consentOf({ state, opt_in_level: 'unknown', consent_updated_at: null, consent_collected_from: null })).toEqual({
        state,
        optInLevel: 'unknown',
        updatedAt: null,
        collectedFrom: null,
      });
    });

    it('treats an unknown or missing state as no consent record', () => {
      expect(consentOf({ state: 'maybe_later', opt_in_level: 'single_opt_in' })).toBeNull();
      expect(consentOf({ opt_in_level: 'single_opt_in' })).toBeNull();
      expect(consentOf({ state: 7 })).toBeNull();
    });

    it('is null when absent, null or not an object', () => {
      expect(norm('customers/update', { id: 1 }, 'customer').customer.smsConsent).toBeNull();
      expect(consentOf(null)).toBeNull();
      expect(consentOf('subscribed')).toBeNull();
      expect(consentOf(['subscribed'])).toBeNull();
    });

    it('accepts upper-case (GraphQL-style) values and nulls an unknown opt-in level', () => {
      expect(consentOf({ state: 'SUBSCRIBED', opt_in_level: 'CONFIRMED_OPT_IN' })).toEqual({
        state: 'subscribed',
        optInLevel: 'confirmed_opt_in',
        updatedAt: null,
        collectedFrom: null,
      });
      expect(consentOf({ state: 'subscribed', opt_in_level: 'triple_opt_in' })?.optInLevel).toBeNull();
    });
  });

  describe('tags', () => {
    const tagsOf = (tags: unknown) => norm('customers/update', { id: 1, tags }, 'customer').customer.tags;

    it('splits a comma-separated string, trimming and dropping empties', () => {
      expect(tagsOf(' vip ,, newsletter,  ,sms-club ')).toEqual(['vip', 'newsletter', 'sms-club']);
      expect(tagsOf('')).toEqual([]);
      expect(tagsOf('single')).toEqual(['single']);
    });

    it('accepts an array, ignoring non-strings', () => {
      expect(tagsOf(['vip', ' newsletter ', '', 5, null])).toEqual(['vip', 'newsletter']);
    });

    it('drops duplicates and ignores other types', () => {
      expect(tagsOf('vip, vip')).toEqual(['vip']);
      expect(tagsOf(12)).toEqual([]);
      expect(tagsOf(null)).toEqual([]);
    });
  });
});

describe('inventory', () => {
  it('normalises inventory_levels/update', () => {
    expect(normalizeEventContext('inventory_levels/update', fixture('inventory_levels-update'), SHOP)).toEqual({
      kind: 'inventory',
      topic: 'inventory_levels/update',
      shopId: SHOP,
      objectId: '48123456789012',
      inventory: {
        inventoryItemId: '48123456789012',
        locationId: '71234567890',
        available: 3,
        updatedAt: '2024-09-22T10:15:04-04:00',
      },
    });
  });

  it('connect/disconnect payloads without available', () => {
    for (const topic of ['inventory_levels/connect', 'inventory_levels/disconnect']) {
      const ctx = norm(topic, { inventory_item_id: 48123456789012, location_id: 71234567890, available: null }, 'inventory');
      expect(ctx.inventory).toEqual({ inventoryItemId: '48123456789012', locationId: '71234567890', available: null, updatedAt: null });
    }
  });

  it('keeps negative stock and rejects fractional', () => {
    expect(norm('inventory_levels/update', { inventory_item_id: 1, available: -2 }, 'inventory').inventory.available).toBe(-2);
    expect(norm('inventory_levels/update', { inventory_item_id: 1, available: 1.5 }, 'inventory').inventory.available).toBeNull();
  });
});

describe('privacy', () => {
  it('normalises customers/redact', () => {
    expect(normalizeEventContext('customers/redact', fixture('customers-redact'), SHOP)).toEqual({
      kind: 'privacy',
      topic: 'customers/redact',
      shopId: SHOP,
      objectId: '7234567893456',
      privacy: {
        customerId: '7234567893456',
        email: 'noah.williams@example.com',
        phone: '+14155552671',
        ordersToRedact: ['5812345680001', '5812345680002', '5812345680003'],
        ordersRequested: [],
        dataRequestId: null,
      },
    });
  });

  it('normalises customers/data_request', () => {
    const ctx = norm('customers/data_request', fixture('customers-data_request'), 'privacy');
    expect(ctx.objectId).toBe('7234567890123');
    expect(ctx.privacy).toEqual({
      customerId: '7234567890123',
      email: 'jane.doe@example.com',
      phone: '+12015550123',
      ordersToRedact: [],
      ordersRequested: ['5812345678901', '5812345681234'],
      dataRequestId: '9912345',
    });
  });

  it('tolerates a missing customer and junk order ids', () => {
    const ctx = norm('customers/redact', { shop_id: 1, customer: null, orders_to_redact: [1, null, 'x2', {}] }, 'privacy');
    expect(ctx.objectId).toBeNull();
    expect(ctx.privacy).toEqual({
      customerId: null,
      email: null,
      phone: null,
      ordersToRedact: ['1', 'x2'],
      ordersRequested: [],
      dataRequestId: null,
    });
  });
});

describe('shop and unknown topics', () => {
  it('shop/redact and app/uninstalled carry no object id', () => {
    expect(normalizeEventContext('shop/redact', fixture('shop-redact'), SHOP)).toMatchObject({
      kind: 'shop',
      topic: 'shop/redact',
      shopId: SHOP,
      shop: null,
    });
    expect(normalizeEventContext('app/uninstalled', fixture('app-uninstalled'), SHOP)).toMatchObject({
      kind: 'shop',
      topic: 'app/uninstalled',
      shopId: SHOP,
      shop: null,
    });
  });

  it('shop/update carries the shop\'s name, IANA zone, country and currency', () => {
    const raw = { id: 548380009, name: 'Super Toys', iana_timezone: 'America/New_York', country_code: 'us', currency: 'USD' };
    expect(normalizeEventContext('shop/update', raw, SHOP)).toEqual({
      kind: 'shop',
      topic: 'shop/update',
      shopId: SHOP,
      objectId: '548380009',
      shop: { name: 'Super Toys', timezone: 'America/New_York', countryCode: 'US', currency: 'USD' },
    });
  });

  it('unknown topics keep raw.id when present', () => {
    expect(normalizeEventContext('products/update', { id: 8812345678901, title: 'Candle' }, SHOP)).toEqual({
      kind: 'unknown',
      topic: 'products/update',
      shopId: SHOP,
      objectId: '8812345678901',
    });
    expect(normalizeEventContext('orders/delete', { id: '42' }, SHOP).objectId).toBe('42');
    expect(normalizeEventContext('bulk_operations/finish', { admin_graphql_api_id: 'gid://x' }, SHOP).objectId).toBeNull();
    expect(normalizeEventContext('products/update', { id: true }, SHOP).objectId).toBeNull();
  });

  it('normalises topic case and whitespace', () => {
    const ctx = normalizeEventContext(' ORDERS/Paid ', { id: 1 }, SHOP);
    expect(ctx.kind).toBe('order');
    expect(ctx.topic).toBe('orders/paid');
  });
});

describe('ids', () => {
  it('stringifies numeric ids up to 2^53 exactly', () => {
    const max = Number.MAX_SAFE_INTEGER;
    expect(norm('orders/paid', { id: max }, 'order').objectId).toBe('9007199254740991');
    expect(norm('orders/paid', JSON.parse('{"id": 9007199254740991}'), 'order').objectId).toBe('9007199254740991');
  });

  it('keeps string ids and accepts bigint ids from a lossless parser', () => {
    expect(norm('orders/paid', { id: ' 820982911946154508 ' }, 'order').objectId).toBe('820982911946154508');
    expect(norm('orders/paid', { id: 820982911946154508n }, 'order').objectId).toBe('820982911946154508');
  });
});

describe('bad input', () => {
  it.each([
    ['null', null],
    ['undefined', undefined],
    ['an array', [{ id: 1 }]],
    ['a string', '{"id":1}'],
    ['a number', 42],
    ['a Date', new Date()],
  ])('rejects %s as raw', (_label, raw) => {
    for (const topic of ['orders/paid', 'shop/redact', 'products/update']) {
      const err = thrown(() => normalizeEventContext(topic, raw, SHOP));
      expect(err.code).toBe('INVALID_PAYLOAD');
      expect(err.message).toMatch(/^\(root\): expected a JSON object/);
      expect(err.details).toEqual({ topic, field: '(root)' });
    }
  });

  it.each([
    ['orders/paid', { name: '#1001' }, 'id'],
    ['orders/fulfilled', { id: null }, 'id'],
    ['checkouts/update', { id: 35123456789012, cart_token: 'c1' }, 'token'],
    ['checkouts/create', { token: '' }, 'token'],
    ['fulfillments/update', { order_id: 1, tracking_number: 'x' }, 'id'],
    ['customers/update', { email: 'a@example.com' }, 'id'],
    ['customers_marketing_consent/update', { phone: '+33612345678', sms_marketing_consent: { state: 'subscribed' } }, 'id'],
    ['inventory_levels/update', { location_id: 1, available: 3 }, 'inventory_item_id'],
  ])('%s without its identifier names the field', (topic, raw, field) => {
    const err = thrown(() => normalizeEventContext(topic, raw, SHOP));
    expect(err.code).toBe('INVALID_PAYLOAD');
    expect(err.statusCode).toBe(400);
    expect(err.message).toBe(`${field}: required identifier is missing`);
    expect(err.details).toEqual({ topic, field });
  });

  it.each([
    [{ id: true }, 'boolean'],
    [{ id: { value: 1 } }, 'object'],
    [{ id: [1] }, 'array'],
    [{ id: 1.5 }, 'number'],
    [{ id: -3 }, 'number'],
  ])('rejects a wrong-typed order id %j', (raw, type) => {
    const err = thrown(() => normalizeEventContext('orders/create', raw, SHOP));
    expect(err.code).toBe('INVALID_PAYLOAD');
    expect(err.message).toBe(`id: expected a numeric or string id, got ${type}`);
  });

  it('rejects a wrong-typed inventory_item_id', () => {
    const err = thrown(() => normalizeEventContext('inventory_levels/update', { inventory_item_id: {} }, SHOP));
    expect(err.message).toMatch(/^inventory_item_id: /);
  });
});

describe('fixture phones', () => {
  it('normalise to E.164 with the context country', () => {
    const cases: Array<[string, string, string]> = [
      ['orders/paid', 'orders-paid', '+12015550123'],
      ['orders/fulfilled', 'orders-fulfilled', '+4915123456789'],
      ['checkouts/update', 'checkouts-update-abandoned', '+447400123456'],
      ['checkouts/update', 'checkouts-update-completed', '+33612345678'],
      ['fulfillments/update', 'fulfillments-update', '+12015550147'],
      ['customers/update', 'customers-update', '+14155552671'],
    ];
    for (const [topic, name, e164] of cases) {
      const ctx = normalizeEventContext(topic, fixture(name), SHOP);
      const customer = 'customer' in ctx ? ctx.customer : null;
      expect(toE164(customer?.phone, customer?.countryCode), name).toBe(e164);
    }
  });
});
