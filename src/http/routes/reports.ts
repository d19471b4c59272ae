/**
 * Operator API for report rollups: `GET /admin/reports?shop=<domain>&from=YYYY-MM-DD&to=YYYY-MM-DD` (Authorization:
 * Bearer ADMIN_TOKEN). Days are calendar days in the shop's time zone; figures come from the stored rollups, which the
 * `rollup_reports` task refreshes hourly for today and yesterday.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { getReports } from '../../db/reports.js';
import { getShopByDomain } from '../../db/shops.js';
import { AppError, describeIssues } from '../../errors.js';
import type { AppDeps } from '../app.js';
import { operatorGuard } from '../auth.js';

const reportQuery = z.object({
  shop: z.string().min(3).max(255),
  from: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'must be YYYY-MM-DD'),
  to: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'must be YYYY-MM-DD'),
});

export async function registerReportRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  app.register(async (admin) => {
    admin.addHook('onRequest', operatorGuard(deps.config.adminToken));
    admin.get('/admin/reports', async (req) => {
      const parsed = reportQuery.safeParse(req.query ?? {});
      if (!parsed.success) throw new AppError('VALIDATION_FAILED', `query: ${describeIssues(parsed.error.issues)}`);
      const { shop: domain, from, to } = parsed.data;
      const shop = await getShopByDomain(deps.db.db, domain);
      if (!shop) throw new AppError('NOT_FOUND', `shop ${domain} is not known`);
      return { shop: shop.domain, timezone: shop.timezone, ...(await getReports(deps.db.db, shop.id, from, to)) };
    });
  });
}
