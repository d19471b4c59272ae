/**
 * Merchant API for campaigns, under `/api/campaigns` (auth and shop resolution: `apiGuard` and `requestShop` in
 * ./segments.ts).
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
import { createRenderer } from '../../messages/render.js';
import type { AppDeps } from '../app.js';
import { apiGuard, parseInput, requestShop } from './segments.js';

const idParams = z.object({ id: z.coerce.number().int().min(1) });
const settings = z
  .object({
    frequencyCap: z.object({ max: z.number().int().min(1).max(100), windowHours: z.number().gt(0).max(720) }).nullable().optional(),
    quietHours: z.object({ enabled: z.boolean().optional(), start: z.string().optional(), end: z.string().optional() }).optional(),
  })
  .strict();
const fields = {
  name: z.string().trim().min(1).max(200),
  body: z.string().min(1).max(5000),
  segmentId: z.number().int().min(1).nullable().optional(),
  filter: z.unknown().optional(),
  discountCode: z.string().trim().min(1).max(100).nullable().optional(),
  linkUrl: z.string().url().max(2000).nullable().optional(),
  settings: settings.optional(),
};
const createBody = z.object(fields);
const patchBody = z.object({ ...fields, name: fields.name.optional(), body: fields.body.optional() });
const scheduleBody = z.object({ at: z.string().min(10).max(64) });
const testBody = z.object({ phone: z.string().min(3).max(32) });

export async function registerCampaignRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const svc: CampaignServiceDeps = {
    database: deps.db,
    queues: deps.queues,
    logger: deps.logger,
    renderer: createRenderer(),
    sms: deps.config.sms,
    pacing: deps.config.campaigns,
  };

  app.register(async (api) => {
    api.addHook('onRequest', apiGuard(deps));

    api.get('/api/campaigns', async (req) => ({ items: await listCampaigns(deps.db.db, (await requestShop(req, deps)).id) }));

    api.post('/api/campaigns', async (req, reply) => {
      const shop = await requestShop(req, deps);
      return reply.status(201).send(await createCampaign(svc, shop, parseInput(createBody, req.body, 'body')));
    });

    api.get('/api/campaigns/:id', async (req) => {
      const shop = await requestShop(req, deps);
      return requireCampaign(svc, shop, parseInput(idParams, req.params, 'params').id);
    });

    api.patch('/api/campaigns/:id', async (req) => {
      const shop = await requestShop(req, deps);
      return updateCampaign(svc, shop, parseInput(idParams, req.params, 'params').id, parseInput(patchBody, req.body, 'body'));
    });

    api.get('/api/campaigns/:id/estimate', async (req) => {
      const shop = await requestShop(req, deps);
      return estimateCampaign(svc, shop, parseInput(idParams, req.params, 'params').id);
    });

    api.get('/api/campaigns/:id/progress', async (req) => {
      const shop = await requestShop(req, deps);
      return campaignProgress(svc, await requireCampaign(svc, shop, parseInput(idParams, req.params, 'params').id));
    });

    api.post('/api/campaigns/:id/test', async (req, reply) => {
      const shop = await requestShop(req, deps);
      const { phone } = parseInput(testBody, req.body, 'body');
      return reply.status(202).send(await testSendCampaign(svc, shop, parseInput(idParams, req.params, 'params').id, phone));
    });

    api.post('/api/campaigns/:id/send', async (req, reply) => {
      const shop = await requestShop(req, deps);
      return reply.status(202).send(await sendCampaign(svc, shop, parseInput(idParams, req.params, 'params').id));
    });

    api.post('/api/campaigns/:id/schedule', async (req) => {
      const shop = await requestShop(req, deps);
      const { at } = parseInput(scheduleBody, req.body, 'body');
      return scheduleCampaign(svc, shop, parseInput(idParams, req.params, 'params').id, at);
    });

    api.post('/api/campaigns/:id/pause', async (req) => {
      const shop = await requestShop(req, deps);
      return pauseCampaign(svc, shop, parseInput(idParams, req.params, 'params').id);
    });

    api.post('/api/campaigns/:id/resume', async (req) => {
      const shop = await requestShop(req, deps);
      return resumeCampaign(svc, shop, parseInput(idParams, req.params, 'params').id);
    });

    api.post('/api/campaigns/:id/cancel', async (req) => {
      const shop = await requestShop(req, deps);
      return cancelCampaign(svc, shop, parseInput(idParams, req.params, 'params').id);
    });
  });
}
