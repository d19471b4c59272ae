/**
 * Report rollups, by calendar day in the shop's time zone, from the stored rollups (the `rollup_reports` task refreshes
 * today and yesterday hourly):
 * - `GET /api/reports?from=YYYY-MM-DD&to=YYYY-MM-DD`: the merchant's, for the shop of the session token;
 * - `GET /admin/reports?shop=<domain>&from=…&to=…`: the operator's (ADMIN_TOKEN), for any shop.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { getReports } from '../../housekeeping/reports.js';
import type { Db } from '../../db/client.js';
import type { Shop } from '../../db/schema.js';
import { getShopByDomain } from '../../db/shops.js';
import { AppError } from '../../errors.js';
import type { AppDeps } from '../app.js';
import { merchantAuth, requireShop } from '../merchantAuth.js';
import { guardOperators } from '../operatorLockout.js';
import { routeSchema, useZodValidation } from './docs.js';

const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'must be YYYY-MM-DD');
const rangeQuery = z.object({ from: day, to: day });
const operatorQuery = rangeQuery.extend({ shop: z.string().min(3).max(255) });
const SUMMARY = 'Sent, delivered, failed and skipped messages, parts and cost: in all, per day, per automation and per campaign';

async function shopReport(db: Db, shop: Shop, { from, to }: z.output<typeof rangeQuery>) {
  return { shop: shop.domain, timezone: shop.timezone, ...(await getReports(db, shop.id, from, to)) };
}

export async function registerReportRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const db = deps.db.db;
  app.register(async (api) => {
    useZodValidation(api);
    api.addHook('onRequest', merchantAuth(deps));
    api.get(
      '/api/reports',
      routeSchema({ operationId: 'getReports', summary: `${SUMMARY}, for the shop`, tags: ['reports'], auth: 'merchant', querystring: rangeQuery }),
      async (req) => shopReport(db, requireShop(req), req.query as z.output<typeof rangeQuery>),
    );
  });
  app.register(async (admin) => {
    useZodValidation(admin);
    admin.addHook('onRequest', guardOperators(deps));
    admin.get(
      '/admin/reports',
      routeSchema({ operationId: 'getShopReports', summary: `${SUMMARY}, for any shop`, tags: ['reports', 'operator'], auth: 'operator', querystring: operatorQuery, errors: [404] }),
      async (req) => {
        const q = req.query as z.output<typeof operatorQuery>;
        const shop = await getShopByDomain(db, q.shop);
        if (!shop) throw new AppError('NOT_FOUND', `shop ${q.shop} is not known`);
        return shopReport(db, shop, q);
      },
    );
  });
}
