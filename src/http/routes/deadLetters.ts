/** Operator API for the dead-letter queue, under `/admin/dlq` (Authorization: Bearer ADMIN_TOKEN). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError, describeIssues } from '../../errors.js';
import { QUEUE_NAMES } from '../../queue/queues.js';
import type { AppDeps } from '../app.js';
import { operatorGuard } from '../auth.js';

const listQuery = z.object({
  queue: z.enum(QUEUE_NAMES).optional(),
  shopId: z.string().min(1).max(255).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  afterId: z.coerce.number().int().min(1).optional(),
  includeReplayed: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
});
const idParams = z.object({ id: z.coerce.number().int().min(1) });
const purgeBody = z
  .object({
    queue: z.enum(QUEUE_NAMES).optional(),
    shopId: z.string().min(1).max(255).optional(),
    before: z.string().datetime().transform((s) => new Date(s)).optional(),
    all: z.boolean().optional(),
  })
  .refine((b) => b.all === true || b.queue || b.shopId || b.before, 'name a queue, shopId or before, or pass "all": true');

function parse<T extends z.ZodTypeAny>(schema: T, value: unknown, where: string): z.output<T> {
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw new AppError('VALIDATION_FAILED', `${where}: ${describeIssues(r.error.issues)}`);
  return r.data;
}

export async function registerDeadLetterRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const dlq = deps.deadLetters;
  app.register(async (admin) => {
    admin.addHook('onRequest', operatorGuard(deps.config.adminToken));

    admin.get('/admin/dlq', async (req) => {
      const q = parse(listQuery, req.query, 'query');
      const items = await dlq.list(q);
      const size = await dlq.count({ queue: q.queue, shopId: q.shopId, includeReplayed: q.includeReplayed });
      return { items, size, nextAfterId: items.length === q.limit ? items[items.length - 1]!.id : null };
    });

    admin.get('/admin/dlq/:id', async (req) => {
      const { id } = parse(idParams, req.params, 'params');
      const row = await dlq.get(id);
      if (!row) throw new AppError('NOT_FOUND', `dead letter ${id} does not exist`);
      return row;
    });

    admin.post('/admin/dlq/:id/replay', async (req) => {
      const { id } = parse(idParams, req.params, 'params');
      return dlq.replay(id);
    });

    admin.delete('/admin/dlq/:id', async (req, reply) => {
      const { id } = parse(idParams, req.params, 'params');
      if (!(await dlq.remove(id))) throw new AppError('NOT_FOUND', `dead letter ${id} does not exist`);
      return reply.status(204).send();
    });

    admin.post('/admin/dlq/purge', async (req) => {
      const b = parse(purgeBody, req.body, 'body');
      return { purged: await dlq.purge({ queue: b.queue, shopId: b.shopId, before: b.before }) };
    });
  });
}
