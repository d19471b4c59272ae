/**
 * Merchant API for segments, under `/api/segments`. Auth: the operator token plus a `shop` field (query or body)
 * naming the shop domain; {@link requestShop} is the one place that decides which shop a request acts for.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { estimateAudience, previewAudience } from '../../campaigns/service.js';
import { parseSegmentFilter } from '../../campaigns/segments.js';
import type { Shop } from '../../db/schema.js';
import { createSegment, deleteSegment, getSegment, listSegments, updateSegment } from '../../db/segments.js';
import { getShopByDomain } from '../../db/shops.js';
import { AppError, describeIssues } from '../../errors.js';
import { createRenderer } from '../../messages/render.js';
import type { AppDeps } from '../app.js';
import { operatorGuard } from '../auth.js';

export function parseInput<T extends z.ZodTypeAny>(schema: T, value: unknown, where: string): z.output<T> {
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw new AppError('VALIDATION_FAILED', `${where}: ${describeIssues(r.error.issues)}`);
  return r.data;
}

/** The auth hook of the merchant API routes (operator token for now; merchant session tokens will replace it). */
export function apiGuard(deps: AppDeps) {
  return operatorGuard(deps.config.adminToken);
}

/**
 * The shop a request acts for. Today: the `shop` query or body field, checked by the operator token in
 * {@link apiGuard}. With merchant session tokens this becomes the shop of the verified token.
 */
export async function requestShop(req: FastifyRequest, deps: AppDeps): Promise<Shop> {
  const fromQuery = (req.query as Record<string, unknown> | undefined)?.shop;
  const fromBody = req.body && typeof req.body === 'object' ? (req.body as Record<string, unknown>).shop : undefined;
  const domain = typeof fromQuery === 'string' ? fromQuery : typeof fromBody === 'string' ? fromBody : undefined;
  if (!domain) throw new AppError('VALIDATION_FAILED', 'shop: name the shop domain (query or body field "shop")');
  const shop = await getShopByDomain(deps.db.db, domain);
  if (!shop) throw new AppError('NOT_FOUND', `shop ${domain} is not known`);
  return shop;
}

const idParams = z.object({ id: z.coerce.number().int().min(1) });
const segmentBody = z.object({ name: z.string().trim().min(1).max(200), filter: z.unknown() });
const patchBody = z.object({ name: z.string().trim().min(1).max(200).optional(), filter: z.unknown().optional() });
const previewBody = z.object({ filter: z.unknown().optional(), segmentId: z.number().int().min(1).optional(), sample: z.number().int().min(0).max(100).default(10) });
const estimateBody = z.object({ filter: z.unknown().optional(), segmentId: z.number().int().min(1).optional(), body: z.string().min(1).max(5000) });

export async function registerSegmentRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const renderer = createRenderer();
  const svc = { database: deps.db, renderer, sms: deps.config.sms };
  const filterOf = async (shop: Shop, b: { filter?: unknown; segmentId?: number }) => {
    if (b.filter !== undefined) return parseSegmentFilter(b.filter);
    if (b.segmentId === undefined) throw new AppError('VALIDATION_FAILED', 'give "filter" or "segmentId"');
    const seg = await getSegment(deps.db.db, shop.id, b.segmentId);
    if (!seg) throw new AppError('NOT_FOUND', `segment ${b.segmentId} does not exist`);
    return parseSegmentFilter(seg.filter);
  };

  app.register(async (api) => {
    api.addHook('onRequest', apiGuard(deps));

    api.get('/api/segments', async (req) => ({ items: await listSegments(deps.db.db, (await requestShop(req, deps)).id) }));

    api.post('/api/segments', async (req, reply) => {
      const shop = await requestShop(req, deps);
      const b = parseInput(segmentBody, req.body, 'body');
      const filter = parseSegmentFilter(b.filter);
      const created = await createSegment(deps.db.db, shop.id, b.name, filter).catch((err: Error & { code?: string; cause?: { code?: string } }) => {
        if (err.code === '23505' || err.cause?.code === '23505') throw new AppError('VALIDATION_FAILED', `a segment named "${b.name}" exists`);
        throw err;
      });
      return reply.status(201).send(created);
    });

    api.post('/api/segments/preview', async (req) => {
      const shop = await requestShop(req, deps);
      const b = parseInput(previewBody, req.body, 'body');
      return previewAudience(svc, shop, await filterOf(shop, b), b.sample);
    });

    api.post('/api/segments/estimate', async (req) => {
      const shop = await requestShop(req, deps);
      const b = parseInput(estimateBody, req.body, 'body');
      renderer.validate(b.body);
      return estimateAudience(svc, shop, await filterOf(shop, b), b.body);
    });

    api.get('/api/segments/:id', async (req) => {
      const shop = await requestShop(req, deps);
      const { id } = parseInput(idParams, req.params, 'params');
      const seg = await getSegment(deps.db.db, shop.id, id);
      if (!seg) throw new AppError('NOT_FOUND', `segment ${id} does not exist`);
      return seg;
    });

    api.get('/api/segments/:id/preview', async (req) => {
      const shop = await requestShop(req, deps);
      const { id } = parseInput(idParams, req.params, 'params');
      return previewAudience(svc, shop, await filterOf(shop, { segmentId: id }));
    });

    api.patch('/api/segments/:id', async (req) => {
      const shop = await requestShop(req, deps);
      const { id } = parseInput(idParams, req.params, 'params');
      const b = parseInput(patchBody, req.body, 'body');
      const updated = await updateSegment(deps.db.db, shop.id, id, {
        ...(b.name !== undefined ? { name: b.name } : {}),
        ...(b.filter !== undefined ? { filter: parseSegmentFilter(b.filter) } : {}),
      });
      if (!updated) throw new AppError('NOT_FOUND', `segment ${id} does not exist`);
      return updated;
    });

    api.delete('/api/segments/:id', async (req, reply) => {
      const shop = await requestShop(req, deps);
      const { id } = parseInput(idParams, req.params, 'params');
      if (!(await deleteSegment(deps.db.db, shop.id, id))) throw new AppError('NOT_FOUND', `segment ${id} does not exist`);
      return reply.status(204).send();
    });
  });
}
