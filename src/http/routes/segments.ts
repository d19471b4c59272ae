/**
 * Merchant API for segments, under `/api/segments`: a Shopify session token, like every merchant route; the shop is
 * the token's ({@link merchantAuth}), and another shop's segment is not found.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { estimateAudience, previewAudience } from '../../campaigns/service.js';
import { parseSegmentFilter } from '../../campaigns/segments.js';
import type { Shop } from '../../db/schema.js';
import { createSegment, deleteSegment, getSegment, listSegments, updateSegment } from '../../db/segments.js';
import { AppError, describeIssues } from '../../errors.js';
import { appRenderer, type AppDeps } from '../deps.js';
import { merchantAuth, requireShop } from '../merchantAuth.js';
import { routeSchema, useZodValidation } from './docs.js';

export function parseInput<T extends z.ZodTypeAny>(schema: T, value: unknown, where: string): z.output<T> {
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw new AppError('VALIDATION_FAILED', `${where}: ${describeIssues(r.error.issues)}`);
  return r.data;
}

const idParams = z.object({ id: z.coerce.number().int().min(1) });
/** A segment filter, checked by `parseSegmentFilter` (SEGMENT_INVALID names the condition that is wrong). */
export const segmentFilter = z.unknown().describe(
  'Segment filter: conditions consent, tags {any|all}, country, createdWithin {days}, lastOrderWithin {days}, ordersCount, ' +
    'totalSpent ({eq|gt|gte|lt|lte}), hasPhone, combined with and / or / not (at most 8 deep)',
);
const segmentBody = z.object({ name: z.string().trim().min(1).max(200), filter: segmentFilter });
const patchBody = z.object({ name: z.string().trim().min(1).max(200).optional(), filter: segmentFilter.optional() });
const previewBody = z.object({ filter: segmentFilter.optional(), segmentId: z.number().int().min(1).optional(), sample: z.number().int().min(0).max(100).default(10) });
const estimateBody = z.object({ filter: segmentFilter.optional(), segmentId: z.number().int().min(1).optional(), body: z.string().min(1).max(5000) });

export async function registerSegmentRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const renderer = appRenderer(deps);
  const svc = { database: deps.db, renderer, sms: deps.config.sms };
  const filterOf = async (shop: Shop, b: { filter?: unknown; segmentId?: number }) => {
    if (b.filter !== undefined) return parseSegmentFilter(b.filter);
    if (b.segmentId === undefined) throw new AppError('VALIDATION_FAILED', 'give "filter" or "segmentId"');
    const seg = await getSegment(deps.db.db, shop.id, b.segmentId);
    if (!seg) throw new AppError('NOT_FOUND', `segment ${b.segmentId} does not exist`);
    return parseSegmentFilter(seg.filter);
  };

  useZodValidation(app);
  app.addHook('onRequest', merchantAuth(deps));
  const db = deps.db.db;

  app.get('/api/segments', routeSchema({ operationId: 'listSegments', summary: "The shop's segments", tags: ['segments'], auth: 'merchant' }), async (req) => ({
    items: await listSegments(db, requireShop(req).id),
  }));

  app.post(
    '/api/segments',
    routeSchema({
      operationId: 'createSegment',
      summary: 'Save a segment: a name (unique in the shop) and a filter',
      tags: ['segments'],
      auth: 'merchant',
      body: segmentBody,
      answers: { 201: 'The segment' },
    }),
    async (req, reply) => {
      const shop = requireShop(req);
      const b = req.body as z.output<typeof segmentBody>;
      const filter = parseSegmentFilter(b.filter);
      const created = await createSegment(db, shop.id, b.name, filter).catch((err: Error & { code?: string; cause?: { code?: string } }) => {
        if (err.code === '23505' || err.cause?.code === '23505') throw new AppError('VALIDATION_FAILED', `name: a segment named "${b.name}" exists`);
        throw err;
      });
      return reply.status(201).send(created);
    },
  );

  app.post(
    '/api/segments/preview',
    routeSchema({
      operationId: 'previewAudience',
      summary: 'How many contacts a filter (or a saved segment) selects, and a sample of them without phone numbers',
      tags: ['segments'],
      auth: 'merchant',
      body: previewBody,
      errors: [404],
    }),
    async (req) => {
      const shop = requireShop(req);
      const b = req.body as z.output<typeof previewBody>;
      return previewAudience(svc, shop, await filterOf(shop, b), b.sample);
    },
  );

  app.post(
    '/api/segments/estimate',
    routeSchema({
      operationId: 'estimateAudience',
      summary: 'Recipients, message parts and cost of sending a text to a filter (or a saved segment)',
      tags: ['segments'],
      auth: 'merchant',
      body: estimateBody,
      errors: [404, 422],
    }),
    async (req) => {
      const shop = requireShop(req);
      const b = req.body as z.output<typeof estimateBody>;
      renderer.validate(b.body);
      return estimateAudience(svc, shop, await filterOf(shop, b), b.body);
    },
  );

  app.get(
    '/api/segments/:id',
    routeSchema({ operationId: 'getSegment', summary: 'One segment', tags: ['segments'], auth: 'merchant', params: idParams, errors: [404] }),
    async (req) => {
      const { id } = req.params as z.output<typeof idParams>;
      const seg = await getSegment(db, requireShop(req).id, id);
      if (!seg) throw new AppError('NOT_FOUND', `segment ${id} does not exist`);
      return seg;
    },
  );

  app.get(
    '/api/segments/:id/preview',
    routeSchema({ operationId: 'previewSegment', summary: "A saved segment's count and sample", tags: ['segments'], auth: 'merchant', params: idParams, errors: [404] }),
    async (req) => {
      const shop = requireShop(req);
      const { id } = req.params as z.output<typeof idParams>;
      return previewAudience(svc, shop, await filterOf(shop, { segmentId: id }));
    },
  );

  app.patch(
    '/api/segments/:id',
    routeSchema({ operationId: 'updateSegment', summary: 'Rename a segment or change its filter', tags: ['segments'], auth: 'merchant', params: idParams, body: patchBody, errors: [404] }),
    async (req) => {
      const shop = requireShop(req);
      const { id } = req.params as z.output<typeof idParams>;
      const b = req.body as z.output<typeof patchBody>;
      const updated = await updateSegment(db, shop.id, id, {
        ...(b.name !== undefined ? { name: b.name } : {}),
        ...(b.filter !== undefined ? { filter: parseSegmentFilter(b.filter) } : {}),
      });
      if (!updated) throw new AppError('NOT_FOUND', `segment ${id} does not exist`);
      return updated;
    },
  );

  app.delete(
    '/api/segments/:id',
    routeSchema({ operationId: 'deleteSegment', summary: 'Delete a segment', tags: ['segments'], auth: 'merchant', params: idParams, errors: [404], answers: { 204: 'Deleted' } }),
    async (req, reply) => {
      const { id } = req.params as z.output<typeof idParams>;
      if (!(await deleteSegment(db, requireShop(req).id, id))) throw new AppError('NOT_FOUND', `segment ${id} does not exist`);
      return reply.status(204).send();
    },
  );
}
