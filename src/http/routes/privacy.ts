/**
 * Operator API for privacy requests (Authorization: Bearer ADMIN_TOKEN):
 * - `GET /admin/privacy/requests?shop=&topic=&limit=&beforeId=`: what was done, when, how many rows; no personal data.
 * - `GET /admin/privacy/requests/:id`: one request with its export (for `customers/data_request`), to hand to the
 *   merchant. Exports are erased when the customer or the shop is redacted afterwards.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { getPrivacyRequest, listPrivacyRequests } from '../../db/privacy.js';
import { AppError, describeIssues } from '../../errors.js';
import type { AppDeps } from '../app.js';
import { operatorGuard } from '../auth.js';

const listQuery = z.object({
  shop: z.string().min(1).max(255).optional(),
  topic: z.enum(['customers/data_request', 'customers/redact', 'shop/redact', 'app/uninstalled']).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  beforeId: z.coerce.number().int().min(1).optional(),
});
const idParams = z.object({ id: z.coerce.number().int().min(1) });

function parse<T extends z.ZodTypeAny>(schema: T, value: unknown, where: string): z.output<T> {
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw new AppError('VALIDATION_FAILED', `${where}: ${describeIssues(r.error.issues)}`);
  return r.data;
}

export async function registerPrivacyRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  app.register(async (admin) => {
    admin.addHook('onRequest', operatorGuard(deps.config.adminToken));

    admin.get('/admin/privacy/requests', async (req) => {
      const q = parse(listQuery, req.query, 'query');
      const items = await listPrivacyRequests(deps.db.db, { shopDomain: q.shop, topic: q.topic, limit: q.limit, beforeId: q.beforeId });
      return { items, nextBeforeId: items.length === q.limit ? items[items.length - 1]!.id : null };
    });

    admin.get('/admin/privacy/requests/:id', async (req) => {
      const { id } = parse(idParams, req.params, 'params');
      const row = await getPrivacyRequest(deps.db.db, id);
      if (!row) throw new AppError('NOT_FOUND', `privacy request ${id} does not exist`);
      return row;
    });
  });
}
