/**
 * Merchant automations: list, get, update (template and rules validated on save), preview a template against a
 * sample event, and simulate an event end to end without sending (see src/automations/simulate.ts).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { renderAutomationMessage } from '../../automations/content.js';
import { isTransactional, MARKETING_TRIGGERS } from '../../automations/defaults.js';
import { simulateEvent } from '../../automations/simulate.js';
import { ensureDefaultAutomations, listAutomations, updateAutomation, type AutomationPatch } from '../../db/automations.js';
import type { Automation, AutomationRules, AutomationTrigger, Shop } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import type { Renderer } from '../../messages/render.js';
import { parseCondition } from '../../rules/conditions.js';
import { normalizeEventContext } from '../../shopify/normalize.js';
import { appRenderer, type AppDeps } from '../deps.js';
import { merchantAuth, requireShop } from '../merchantAuth.js';
import { takePreview } from '../previewLimit.js';
import { routeSchema, useZodValidation } from './docs.js';
import { frequencyCapSchema, quietHoursSchema } from './settings.js';

const idParams = z.object({ id: z.coerce.number().int().min(1) });

const rulesSchema = z
  .object({
    quietHours: quietHoursSchema.extend({ bypass: z.boolean().optional() }).strict(),
    frequencyCap: frequencyCapSchema.nullable(),
    dedupeWindowHours: z.number().positive().max(8760).nullable(),
    conditions: z.unknown(),
    consent: z.enum(['marketing', 'transactional']),
  })
  .partial()
  .strict();

const automationPatch = z
  .object({
    enabled: z.boolean(),
    template: z.string().min(1).max(10_000),
    delayMinutes: z.number().int().min(0).max(10_080),
    transactional: z.boolean(),
    rules: rulesSchema,
  })
  .partial()
  .strict()
  .refine((p) => Object.keys(p).length > 0, 'name at least one field');

const sampleEvent = z.object({
  topic: z.string().regex(/^[a-z_]+\/[a-z_]+$/, 'must be a Shopify topic such as orders/paid'),
  payload: z.record(z.string(), z.unknown()),
});

const simulateBody = sampleEvent
  .extend({
    /** Evaluate as of this time (quiet hours, caps), e.g. "what if it came in at 23:00"; default now. */
    at: z.iso.datetime({ offset: true }).optional(),
  })
  .strict();

const previewBody = z
  .object({
    /** Defaults to the automation's stored template. */
    template: z.string().min(1).max(10_000).optional(),
    /** A Shopify webhook (topic + body); defaults to a built-in sample for the automation's trigger. */
    event: sampleEvent.optional(),
  })
  .strict();

/** A built-in sample event per trigger, so a merchant can preview without pasting a payload. */
const SAMPLE_CONTEXTS: Record<string, Record<string, unknown>> = {
  order: {
    kind: 'order',
    order: { id: '1001', name: '#1001', number: 1001, totalPrice: '49.90', currency: 'USD', statusUrl: 'https://example.com/orders/1001' },
    customer: { firstName: 'Ada', lastName: 'Lovelace' },
  },
  checkout: {
    kind: 'checkout',
    checkout: { token: 'sample-token', recoveryUrl: 'https://example.com/checkouts/sample/recover', totalPrice: '49.90', currency: 'USD' },
    customer: { firstName: 'Ada', lastName: 'Lovelace' },
  },
  fulfillment: {
    kind: 'fulfillment',
    order: { id: '1001', name: '#1001' },
    fulfillment: { id: '2001', status: 'success', trackingNumber: '1Z999AA10123456784', trackingUrl: 'https://example.com/track/1Z999' },
    customer: { firstName: 'Ada', lastName: 'Lovelace' },
  },
  customer: { kind: 'customer', customer: { firstName: 'Ada', lastName: 'Lovelace' } },
};
const SAMPLE_FOR_TRIGGER: Record<Automation['trigger'], string> = {
  order_paid: 'order',
  order_created: 'order',
  abandoned_checkout: 'checkout',
  fulfillment_update: 'fulfillment',
  welcome: 'customer',
};

/**
 * Validates what an automation is about to become; throws TEMPLATE_INVALID, CONDITION_INVALID, VALIDATION_FAILED, or
 * AUTOMATION_KIND_FIXED when a marketing automation would lose its consent, quiet hours or footer.
 */
export function validateAutomationPatch(patch: AutomationPatch, renderer: Renderer, trigger: AutomationTrigger): void {
  if (MARKETING_TRIGGERS.has(trigger)) {
    const fixed = (field: string) =>
      new AppError('AUTOMATION_KIND_FIXED', `${field}: ${trigger} messages are marketing; they need marketing consent and respect quiet hours`, {
        details: { field },
      });
    if (patch.transactional === true) throw fixed('transactional');
    if (patch.rules?.consent === 'transactional') throw fixed('rules.consent');
    if (patch.rules?.quietHours?.bypass === true) throw fixed('rules.quietHours.bypass');
  }
  if (patch.template !== undefined) renderer.validate(patch.template);
  const rules = patch.rules;
  if (rules?.conditions !== undefined && rules.conditions !== null) parseCondition(rules.conditions);
}

function publicAutomation(a: Automation) {
  return {
    id: a.id,
    trigger: a.trigger,
    name: a.name,
    enabled: a.enabled,
    transactional: isTransactional(a),
    delayMinutes: a.delayMinutes,
    template: a.template,
    rules: a.rules,
    updatedAt: a.updatedAt,
  };
}

async function findAutomation(deps: AppDeps, shop: Shop, id: number): Promise<Automation> {
  const found = (await listAutomations(deps.db.db, shop.id)).find((a) => a.id === id);
  // Another shop's automation is "not found", exactly like one that does not exist.
  if (!found) throw new AppError('NOT_FOUND', `automation ${id} does not exist`);
  return found;
}

export async function registerAutomationRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  useZodValidation(app);
  app.addHook('onRequest', merchantAuth(deps));
  const renderer = appRenderer(deps);
  const sms = { sender: deps.config.sms.sender, costPerSegment: deps.config.sms.costPerSegment };

  app.get('/api/automations', routeSchema({ operationId: 'listAutomations', summary: "The shop's automations", tags: ['automations'], auth: 'merchant' }), async (req) => {
    const shop = requireShop(req);
    let rows = await listAutomations(deps.db.db, shop.id);
    if (rows.length === 0) {
      await ensureDefaultAutomations(deps.db.db, shop.id);
      rows = await listAutomations(deps.db.db, shop.id);
    }
    return { items: rows.map(publicAutomation) };
  });

  app.get(
    '/api/automations/:id',
    routeSchema({ operationId: 'getAutomation', summary: 'One automation', tags: ['automations'], auth: 'merchant', params: idParams, errors: [404] }),
    async (req) => {
      const { id } = req.params as z.output<typeof idParams>;
      return publicAutomation(await findAutomation(deps, requireShop(req), id));
    },
  );

  app.patch(
    '/api/automations/:id',
    routeSchema({
      operationId: 'updateAutomation',
      summary: 'Update an automation; the template is checked on save (TEMPLATE_INVALID), conditions too (CONDITION_INVALID)',
      tags: ['automations'],
      auth: 'merchant',
      params: idParams,
      body: automationPatch,
      errors: [404],
    }),
    async (req) => {
      const shop = requireShop(req);
      const { id } = req.params as z.output<typeof idParams>;
      const body = req.body as z.output<typeof automationPatch>;
      const current = await findAutomation(deps, shop, id);
      const patch: AutomationPatch = {
        ...body,
        // Rules are merged key by key, so changing the cap does not drop the conditions.
        ...(body.rules ? { rules: { ...current.rules, ...(body.rules as AutomationRules) } } : {}),
      };
      validateAutomationPatch(patch, renderer, current.trigger);
      const updated = await updateAutomation(deps.db.db, shop.id, id, patch);
      if (!updated) throw new AppError('NOT_FOUND', `automation ${id} does not exist`);
      req.log.info({ automationId: id, fields: Object.keys(body) }, 'Automation updated');
      return publicAutomation(updated);
    },
  );

  app.post(
    '/api/automations/:id/preview',
    routeSchema({
      operationId: 'previewAutomation',
      summary: 'Render a template (the stored one, or one given) against a sample event; nothing is saved or sent',
      tags: ['automations'],
      auth: 'merchant',
      params: idParams,
      body: previewBody,
      errors: [404, 422],
    }),
    async (req) => {
      const shop = requireShop(req);
      // Each preview renders merchant-written Liquid: a tight per-shop budget, and the render goes to a thread.
      await takePreview(deps, shop.id);
      const { id } = req.params as z.output<typeof idParams>;
      const body = (req.body ?? {}) as z.output<typeof previewBody>;
      const automation = await findAutomation(deps, shop, id);
      const template = body.template ?? automation.template;
      renderer.validate(template);
      const ctx: Record<string, any> = body.event
        ? normalizeEventContext(body.event.topic, body.event.payload, shop.domain)
        : SAMPLE_CONTEXTS[SAMPLE_FOR_TRIGGER[automation.trigger]]!;
      if (ctx.kind === 'unknown') throw new AppError('VALIDATION_FAILED', `body.event.topic: "${body.event!.topic}" is not a topic SMS Blossom handles`);
      if (ctx.customer) ctx.customer = { ...ctx.customer, phone: null, email: null };
      const transactional = isTransactional(automation);
      const message = await renderAutomationMessage(
        { template, shop, contact: null, ctx, timezone: shop.timezone, transactional },
        { renderer, costPerSegment: sms.costPerSegment },
      );
      return {
        text: message.text,
        warnings: message.warnings,
        encoding: message.encoding,
        segments: message.segments,
        costEstimate: message.costEstimate,
        footer: !transactional,
      };
    },
  );

  app.post(
    '/api/automations/simulate',
    routeSchema({
      operationId: 'simulateEvent',
      summary: "Dry run: what each automation would decide for a Shopify event, and the text it would send. Sends nothing, writes nothing",
      tags: ['automations'],
      auth: 'merchant',
      body: simulateBody,
      errors: [422],
    }),
    async (req) => {
      const shop = requireShop(req);
      const body = req.body as z.output<typeof simulateBody>;
      // A simulation renders the merchant's stored template: on a render thread, within the same per-shop budget.
      await takePreview(deps, shop.id);
      return simulateEvent(shop, body, { db: deps.db.db, renderer, sms }, body.at ? new Date(body.at) : new Date());
    },
  );
}
