/**
 * An automation's message as the customer gets it: its template rendered with the event, the shop and the contact,
 * then composed (footer, encoding, parts, cost). The real evaluation, the simulation and the preview all render here,
 * so a merchant previews exactly what is sent.
 */
import type { Contact, Shop } from '../db/schema.js';
import { composeSms, type ComposedSms } from '../messages/compose.js';
import { withUtm } from '../messages/links.js';
import type { Renderer } from '../messages/render.js';
import type { AutomationContext } from './rules.js';
import { shopDisplayName, shopSettings } from './settings.js';

/** Template variables: the event context plus shop and contact, in the names templates use (never phone or email). */
export function templateVars(shop: Shop, contact: Pick<Contact, 'firstName' | 'lastName'> | null, ctx: AutomationContext): Record<string, unknown> {
  return {
    ...ctx,
    shop: { name: shopDisplayName(shop), domain: shop.domain, currency: shop.currency },
    customer: {
      ...(ctx.customer ?? {}),
      firstName: ctx.customer?.firstName ?? contact?.firstName ?? null,
      lastName: ctx.customer?.lastName ?? contact?.lastName ?? null,
      phone: null,
      email: null,
    },
    checkout: ctx.checkout ? { ...ctx.checkout, recoveryUrl: withUtm(ctx.checkout.recoveryUrl, 'abandoned_checkout') } : undefined,
  };
}

export interface AutomationMessageInput {
  template: string;
  shop: Shop;
  /** The stored contact, for the names an event lacks; null when there is none (previews, simulations). */
  contact: Pick<Contact, 'firstName' | 'lastName'> | null;
  ctx: AutomationContext;
  /** Zone of the `date` filter: the recipient's when known. */
  timezone: string | null;
  /** Transactional messages carry no opt-out footer. */
  transactional: boolean;
  /** What `"now"` means to the template; default the current time. */
  now?: Date;
}

export interface AutomationMessage extends ComposedSms {
  /** Render warnings (missing variables and the like). */
  warnings: string[];
}

export async function renderAutomationMessage(
  input: AutomationMessageInput,
  deps: { renderer: Renderer; costPerSegment: number },
): Promise<AutomationMessage> {
  const { shop, ctx } = input;
  const settings = shopSettings(shop);
  const rendered = await deps.renderer.render(input.template, templateVars(shop, input.contact, ctx), {
    timezone: input.timezone,
    currency: ctx.order?.currency ?? ctx.checkout?.currency ?? shop.currency,
    locale: settings.locale,
    ...(input.now ? { now: input.now } : {}),
  });
  const sms = composeSms(rendered.text, { marketing: !input.transactional, shop: settings, costPerSegment: deps.costPerSegment });
  return { ...sms, warnings: rendered.warnings };
}
