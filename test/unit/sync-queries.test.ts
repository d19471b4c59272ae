/** The sync's GraphQL documents hold to Shopify's published Admin schema, and a JSONL line maps to a contact (issue 17). */
import { describe, expect, it } from 'vitest';
import { validateAgainstAdminSchema } from '../../src/sandbox/shopify/server.js';
import { contactFromCustomer, CUSTOMERS_BULK_QUERY, SYNC_DOCUMENTS } from '../../src/sync/customers.js';

describe('sync GraphQL documents', () => {
  it.each(Object.entries(SYNC_DOCUMENTS))('%s is valid against the Admin API 2025-07 schema', (_name, document) => {
    expect(validateAgainstAdminSchema(document).map((e) => e.message)).toEqual([]);
  });

  it('the bulk query reads every field the sync stores', () => {
    for (const field of ['firstName', 'lastName', 'email', 'phone', 'tags', 'numberOfOrders', 'amountSpent', 'countryCodeV2', 'provinceCode', 'marketingState', 'marketingOptInLevel', 'consentUpdatedAt', 'consentCollectedFrom']) {
      expect(CUSTOMERS_BULK_QUERY).toContain(field);
    }
  });
});

describe('contactFromCustomer', () => {
  const line = {
    id: 'gid://shopify/Customer/7',
    firstName: 'Ava',
    lastName: 'Rossi',
    email: 'ava@example.com',
    phone: '(212) 201-0001',
    tags: ['vip'],
    numberOfOrders: '3',
    amountSpent: { amount: '24.50', currencyCode: 'USD' },
    defaultAddress: { countryCodeV2: 'US', provinceCode: 'NY' },
    smsMarketingConsent: { marketingState: 'SUBSCRIBED', marketingOptInLevel: 'SINGLE_OPT_IN', consentUpdatedAt: '2025-05-14T03:25:52Z', consentCollectedFrom: 'SHOPIFY' },
  };

  it("maps a customer to a contact whose consent is Shopify's, dated by Shopify", () => {
    expect(contactFromCustomer(line)).toEqual({
      shopifyCustomerId: '7',
      phone: '+12122010001',
      firstName: 'Ava',
      lastName: 'Rossi',
      email: 'ava@example.com',
      tags: ['vip'],
      countryCode: 'US',
      provinceCode: 'NY',
      consent: { state: 'subscribed', optInLevel: 'single_opt_in', updatedAt: new Date('2025-05-14T03:25:52Z'), source: 'shopify:sync', origin: 'shopify' },
    });
  });

  it('an undated record is older than anything stored; no consent record leaves consent alone; no valid phone, no contact', () => {
    const undated = contactFromCustomer({ ...line, smsMarketingConsent: { marketingState: 'NOT_SUBSCRIBED', marketingOptInLevel: 'UNKNOWN', consentUpdatedAt: null, consentCollectedFrom: null } });
    expect(undated?.consent).toMatchObject({ state: 'not_subscribed', updatedAt: new Date(0) });
    expect(contactFromCustomer({ ...line, smsMarketingConsent: null })?.consent).toBeNull();
    expect(contactFromCustomer({ ...line, phone: null })).toBeNull();
    expect(contactFromCustomer({ ...line, phone: '12' })).toBeNull();
  });
});
