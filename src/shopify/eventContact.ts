/**
 * What an event says about its customer, in the two shapes the pipeline passes on: the contact row to bring up to date
 * (consent included, timed by Shopify's own clock), and the context handed to automations (no raw phone or e-mail:
 * the contact row holds those). Pure; used by the events processor and by the simulator.
 */
import type { ContactInput, ContactUpsertResult } from '../db/contacts.js';
import type { Shop } from '../db/schema.js';
import type { CustomerContext, EventContext } from './normalize.js';
import { pickCountry, toE164 } from './phone.js';

/** The customer as the event describes it, mapped to what the contacts table keeps. */
export function contactInputFrom(context: EventContext, shop: Pick<Shop, 'countryCode'>, triggeredAt: Date | null): ContactInput | null {
  const customer: CustomerContext | null = 'customer' in context ? context.customer : null;
  const checkoutSms = context.kind === 'checkout' ? context.smsMarketing : null;
  const rawPhone = checkoutSms?.phone ?? customer?.phone ?? null;
  if (!customer && !rawPhone) return null;
  const country = pickCountry(customer?.countryCode, shop.countryCode);
  let consent: ContactInput['consent'] = null;
  if (customer?.smsConsent) {
    // The consent topic, or the embedded field of API versions before 2025-01: Shopify's record, timed by its own
    // clock (the webhook's trigger time when the record carries none).
    consent = {
      state: customer.smsConsent.state,
      optInLevel: customer.smsConsent.optInLevel,
      updatedAt: validDate(customer.smsConsent.updatedAt) ?? triggeredAt,
      source: `shopify:${context.topic}`,
      origin: 'shopify',
    };
  } else if (checkoutSms?.accepts === true && context.kind === 'checkout') {
    // Ticking the SMS box at checkout is an opt-in; leaving it unticked is not an opt-out. It was given when the
    // checkout was, not when a later update of it was delivered: a STOP sent after the checkout began stands.
    const c = context.checkout;
    consent = {
      state: 'subscribed',
      optInLevel: 'single_opt_in',
      updatedAt: validDate(c.createdAt) ?? validDate(c.updatedAt) ?? triggeredAt,
      source: `shopify:${context.topic}`,
      origin: 'shopify',
    };
  }
  return {
    shopifyCustomerId: customer?.shopifyId ?? null,
    phone: toE164(rawPhone, country),
    firstName: customer?.firstName ?? null,
    lastName: customer?.lastName ?? null,
    email: customer?.email ?? null,
    tags: customer && customer.tags.length ? customer.tags : null,
    countryCode: customer?.countryCode ?? null,
    provinceCode: customer?.provinceCode ?? null,
    consent,
  };
}

/** A timestamp from a payload as a Date; null when missing or unreadable. */
export function validDate(iso: string | null | undefined): Date | null {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/**
 * The context handed to `automations`: the normalised event plus the contact id, without the raw phone and email
 * (the contact row holds those), so job payloads carry no more personal data than the next step needs.
 */
export function forwardedContext(context: EventContext, sync: ContactUpsertResult | null): Record<string, unknown> {
  const forwarded: Record<string, unknown> = { ...context };
  if ('customer' in context && context.customer) forwarded.customer = { ...context.customer, phone: null, email: null };
  if (context.kind === 'checkout') forwarded.smsMarketing = { ...context.smsMarketing, phone: null };
  forwarded.contactId = sync ? sync.contact.id : null;
  forwarded.consentChange = sync?.consentChange ?? null;
  return forwarded;
}
