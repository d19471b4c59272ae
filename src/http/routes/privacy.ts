/**
 * Operator API for privacy requests (Authorization: Bearer ADMIN_TOKEN):
 * - `GET /admin/privacy/requests?shop=&topic=&limit=&beforeId=`: what was done, when, how many rows; no personal data.
 * - `GET /admin/privacy/requests/:id`: one request with its export (for `customers/data_request`), to hand to the
 *   merchant. Exports are erased when the customer or the shop is redacted afterwards.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { getPrivacyRequest, listPrivacyRequests } from '../../db/privacy.js';
import { AppError } from '../../errors.js';
import { PRIVACY_TOPIC_NAMES } from '../../shopify/topics.js';
import type { AppDeps } from '../app.js';
import { guardOperators } from '../operatorLockout.js';
import { routeSchema, useZodValidation } from './docs.js';

const listQuery = z.object({
  shop: z.string().min(1).max(255).optional(),
  topic: z.enum([...PRIVACY_TOPIC_NAMES, 'app/uninstalled']).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  beforeId: z.coerce.number().int().min(1).optional(),
});
const idParams = z.object({ id: z.coerce.number().int().min(1) });

export async function registerPrivacyRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  app.register(async (admin) => {
    useZodValidation(admin);
    admin.addHook('onRequest', guardOperators(deps));

    admin.get(
      '/admin/privacy/requests',
      routeSchema({
        operationId: 'listPrivacyRequests',
        summary: 'Privacy requests (GDPR webhooks): what was done, when, how many rows; no personal data',
        tags: ['operator'],
        auth: 'operator',
        querystring: listQuery,
      }),
      async (req) => {
        const q = req.query as z.output<typeof listQuery>;
        const items = await listPrivacyRequests(deps.db.db, { shopDomain: q.shop, topic: q.topic, limit: q.limit, beforeId: q.beforeId });
        return { items, nextBeforeId: items.length === q.limit ? items[items.length - 1]!.id : null };
      },
    );

    admin.get(
      '/admin/privacy/requests/:id',
      routeSchema({
        operationId: 'getPrivacyRequest',
        summary: "One privacy request, with its export for customers/data_request (to hand to the merchant)",
        tags: ['operator'],
        auth: 'operator',
        params: idParams,
        errors: [404],
      }),
      async (req) => {
        const { id } = req.params as z.output<typeof idParams>;
        const row = await getPrivacyRequest(deps.db.db, id);
        if (!row) throw new AppError('NOT_FOUND', `privacy request ${id} does not exist`);
        return row;
      },
    );
  });
}
