/** Operator API for a shop's customer sync: `POST /admin/shops/:shop/sync` queues one, `GET` shows the latest. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { getShopSync } from '../../db/shopSyncs.js';
import { getShopByDomain } from '../../db/shops.js';
import { AppError } from '../../errors.js';
import { isShopDomain } from '../../shopify/shopDomain.js';
import { requestShopSync } from '../../sync/enqueue.js';
import type { AppDeps } from '../app.js';
import { guardOperators } from '../operatorLockout.js';
import { routeSchema, useZodValidation, type RouteDoc } from './docs.js';

const shopParams = z.object({ shop: z.string().refine(isShopDomain, 'must be a *.myshopify.com shop domain') });

const doc = (d: Omit<RouteDoc, 'tags' | 'auth'>) => routeSchema({ ...d, tags: ['operator'], auth: 'operator' });

export async function registerShopSyncRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const db = deps.db.db;
  app.register(async (admin) => {
    useZodValidation(admin);
    admin.addHook('onRequest', guardOperators(deps));

    admin.post(
      '/admin/shops/:shop/sync',
      doc({
        operationId: 'syncShop',
        summary: "Queue a sync of the shop's details and customers from Shopify (joins one already queued or running)",
        params: shopParams,
        errors: [404, 409],
        answers: { 202: 'Queued: the job id' },
      }),
      async (req, reply) => {
        const { shop: domain } = req.params as z.output<typeof shopParams>;
        const jobId = await requestShopSync(db, deps.queues, domain, req.id);
        return reply.status(202).send({ jobId, queue: 'sync' });
      },
    );

    admin.get(
      '/admin/shops/:shop/sync',
      doc({ operationId: 'getShopSync', summary: "The shop's latest sync: status and progress", params: shopParams, errors: [404] }),
      async (req) => {
        const { shop: domain } = req.params as z.output<typeof shopParams>;
        const shop = await getShopByDomain(db, domain);
        const sync = shop && (await getShopSync(db, shop.id));
        if (!sync) throw new AppError('NOT_FOUND', `shop ${domain} has never been synced`);
        return sync;
      },
    );
  });
}
