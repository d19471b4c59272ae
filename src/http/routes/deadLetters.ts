/** Operator API for the dead-letter queue, under `/admin/dlq` (Authorization: Bearer ADMIN_TOKEN). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../errors.js';
import { QUEUE_NAMES } from '../../queue/queues.js';
import type { AppDeps } from '../app.js';
import { guardOperators } from '../operatorLockout.js';
import { routeSchema, useZodValidation, type RouteDoc } from './docs.js';

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

const doc = (d: Omit<RouteDoc, 'tags' | 'auth'>) => routeSchema({ ...d, tags: ['operator'], auth: 'operator' });

export async function registerDeadLetterRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const dlq = deps.deadLetters;
  app.register(async (admin) => {
    useZodValidation(admin);
    admin.addHook('onRequest', guardOperators(deps));

    admin.get('/admin/dlq', doc({ operationId: 'listDeadLetters', summary: 'Dead letters, oldest first, by queue and shop', querystring: listQuery }), async (req) => {
      const q = req.query as z.output<typeof listQuery>;
      const items = await dlq.list(q);
      const size = await dlq.count({ queue: q.queue, shopId: q.shopId, includeReplayed: q.includeReplayed });
      return { items, size, nextAfterId: items.length === q.limit ? items[items.length - 1]!.id : null };
    });

    admin.get('/admin/dlq/:id', doc({ operationId: 'getDeadLetter', summary: 'One dead letter: the job, its error and attempts', params: idParams, errors: [404] }), async (req) => {
      const { id } = req.params as z.output<typeof idParams>;
      const row = await dlq.get(id);
      if (!row) throw new AppError('NOT_FOUND', `dead letter ${id} does not exist`);
      return row;
    });

    admin.post(
      '/admin/dlq/:id/replay',
      doc({ operationId: 'replayDeadLetter', summary: 'Enqueue the job again, as new; the dead letter is marked replayed', params: idParams, errors: [404] }),
      async (req) => dlq.replay((req.params as z.output<typeof idParams>).id),
    );

    admin.delete(
      '/admin/dlq/:id',
      doc({ operationId: 'deleteDeadLetter', summary: 'Delete a dead letter', params: idParams, errors: [404], answers: { 204: 'Deleted' } }),
      async (req, reply) => {
        const { id } = req.params as z.output<typeof idParams>;
        if (!(await dlq.remove(id))) throw new AppError('NOT_FOUND', `dead letter ${id} does not exist`);
        return reply.status(204).send();
      },
    );

    admin.post('/admin/dlq/purge', doc({ operationId: 'purgeDeadLetters', summary: 'Delete dead letters by queue, shop or age (or all)', body: purgeBody }), async (req) => {
      const b = req.body as z.output<typeof purgeBody>;
      return { purged: await dlq.purge({ queue: b.queue, shopId: b.shopId, before: b.before }) };
    });
  });
}
