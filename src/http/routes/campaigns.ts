/**
 * Merchant API for campaigns, under `/api/campaigns`: a Shopify session token, like every merchant route; the shop is
 * the token's, and another shop's campaign is not found. The operator's CLI (`smsblossom campaign …`) calls the same
 * service functions directly, not these routes.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  campaignProgress,
  cancelCampaign,
  createCampaign,
  estimateCampaign,
  pauseCampaign,
  requireCampaign,
  resumeCampaign,
  scheduleCampaign,
  sendCampaign,
  testSendCampaign,
  updateCampaign,
  type CampaignServiceDeps,
} from '../../campaigns/service.js';
import { listCampaigns } from '../../db/campaigns.js';
import { appRenderer, type AppDeps } from '../deps.js';
import { merchantAuth, requireShop } from '../merchantAuth.js';
import { routeSchema, useZodValidation, type RouteDoc } from './docs.js';
import { parseInput, segmentFilter } from './segments.js';

const idParams = z.object({ id: z.coerce.number().int().min(1) });
const settings = z
  .object({
    frequencyCap: z.object({ max: z.number().int().min(1).max(100), windowHours: z.number().gt(0).max(720) }).nullable().optional(),
    quietHours: z.object({ enabled: z.boolean().optional(), start: z.string().optional(), end: z.string().optional() }).optional(),
  })
  .strict();
/**
 * A campaign link goes into every recipient's text: `https:` only (`http:` too outside production, for local shops).
 * `javascript:`, `data:` and the like are refused.
 */
function linkUrl(production: boolean) {
  const allowed = production ? ['https:'] : ['https:', 'http:'];
  return z
    .string()
    .url()
    .max(2000)
    .refine((u) => allowed.includes(new URL(u).protocol), `must be an ${allowed.join(' or ')} URL`);
}

function bodies(production: boolean) {
  const fields = {
    name: z.string().trim().min(1).max(200),
    body: z.string().min(1).max(5000),
    segmentId: z.number().int().min(1).nullable().optional(),
    filter: segmentFilter.optional(),
    discountCode: z.string().trim().min(1).max(100).nullable().optional(),
    linkUrl: linkUrl(production).nullable().optional(),
    settings: settings.optional(),
  };
  // Strict: a field not listed here (a top-level `quietHours` instead of `settings.quietHours`) is a 400 naming it, not dropped.
  return {
    createBody: z.object(fields).strict(),
    patchBody: z.object({ ...fields, name: fields.name.optional(), body: fields.body.optional() }).strict(),
  };
}
const scheduleBody = z.object({ at: z.string().min(10).max(64) });
const testBody = z.object({ phone: z.string().min(3).max(32) });

export async function registerCampaignRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const svc: CampaignServiceDeps = {
    database: deps.db,
    queues: deps.queues,
    logger: deps.logger,
    renderer: appRenderer(deps),
    sms: deps.config.sms,
    pacing: deps.config.campaigns,
  };

  const { createBody, patchBody } = bodies(deps.config.env === 'production');

  useZodValidation(app);
  app.addHook('onRequest', merchantAuth(deps));
  const doc = (d: Omit<RouteDoc, 'tags' | 'auth'>) => routeSchema({ ...d, tags: ['campaigns'], auth: 'merchant' });
  /** A route on one campaign: its id in the path, 404 when the shop has no such campaign. */
  const onCampaign = (d: Omit<RouteDoc, 'tags' | 'auth' | 'params'>) => doc({ ...d, params: idParams, errors: [404, ...(d.errors ?? [])] });
  const idOf = (req: { params: unknown }) => (req.params as z.output<typeof idParams>).id;

  app.get('/api/campaigns', doc({ operationId: 'listCampaigns', summary: "The shop's campaigns" }), async (req) => ({
    items: await listCampaigns(deps.db.db, requireShop(req).id),
  }));

  app.post(
    '/api/campaigns',
    doc({ operationId: 'createCampaign', summary: 'Create a draft campaign: text, audience (a segment or a filter), discount code, link', body: createBody, answers: { 201: 'The draft campaign' } }),
    async (req, reply) => reply.status(201).send(await createCampaign(svc, requireShop(req), req.body as z.output<typeof createBody>)),
  );

  app.get('/api/campaigns/:id', onCampaign({ operationId: 'getCampaign', summary: 'One campaign' }), async (req) => requireCampaign(svc, requireShop(req), idOf(req)));

  app.patch(
    '/api/campaigns/:id',
    onCampaign({ operationId: 'updateCampaign', summary: 'Change a draft or scheduled campaign', body: patchBody, errors: [409] }),
    async (req) => updateCampaign(svc, requireShop(req), idOf(req), req.body as z.output<typeof patchBody>),
  );

  app.get(
    '/api/campaigns/:id/estimate',
    onCampaign({ operationId: 'estimateCampaign', summary: 'Recipients, message parts and cost of sending the campaign now', errors: [422] }),
    async (req) => estimateCampaign(svc, requireShop(req), idOf(req)),
  );

  app.get(
    '/api/campaigns/:id/progress',
    onCampaign({ operationId: 'campaignProgress', summary: 'How far a campaign is: counts by message status' }),
    async (req) => campaignProgress(svc, await requireCampaign(svc, requireShop(req), idOf(req))),
  );

  app.post(
    '/api/campaigns/:id/test',
    onCampaign({ operationId: 'testSendCampaign', summary: "Send the campaign's text to one phone number, now", body: testBody, errors: [422], answers: { 202: 'Queued' } }),
    async (req, reply) => {
      const shop = requireShop(req);
      const { phone } = parseInput(testBody, req.body, 'body');
      return reply.status(202).send(await testSendCampaign(svc, shop, parseInput(idParams, req.params, 'params').id, phone));
    },
  );

  app.post(
    '/api/campaigns/:id/send',
    onCampaign({ operationId: 'sendCampaign', summary: 'Start sending the campaign now', errors: [409], answers: { 202: 'Sending' } }),
    async (req, reply) => reply.status(202).send(await sendCampaign(svc, requireShop(req), idOf(req))),
  );

  app.post(
    '/api/campaigns/:id/schedule',
    onCampaign({
      operationId: 'scheduleCampaign',
      summary: "Send the campaign at a time: ISO 8601, or local date-time in the shop's time zone (2026-05-01T09:00)",
      body: scheduleBody,
      errors: [409],
    }),
    async (req) => scheduleCampaign(svc, requireShop(req), idOf(req), (req.body as z.output<typeof scheduleBody>).at),
  );

  app.post('/api/campaigns/:id/pause', onCampaign({ operationId: 'pauseCampaign', summary: 'Pause a sending campaign', errors: [409] }), async (req) =>
    pauseCampaign(svc, requireShop(req), idOf(req)),
  );

  app.post('/api/campaigns/:id/resume', onCampaign({ operationId: 'resumeCampaign', summary: 'Resume a paused campaign', errors: [409] }), async (req) =>
    resumeCampaign(svc, requireShop(req), idOf(req)),
  );

  app.post(
    '/api/campaigns/:id/cancel',
    onCampaign({ operationId: 'cancelCampaign', summary: 'Cancel a campaign; messages not yet sent are not sent', errors: [409] }),
    async (req) => cancelCampaign(svc, requireShop(req), idOf(req)),
  );
}
