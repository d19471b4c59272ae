/** Merchant messages: newest first, by status and by contact. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { getMessage, listMessages } from '../../db/messages.js';
import { AppError } from '../../errors.js';
import type { AppDeps } from '../app.js';
import { merchantAuth, requireShop } from '../merchantAuth.js';
import { routeSchema, useZodValidation } from './docs.js';

const listQuery = z
  .object({
    status: z.enum(['queued', 'sending', 'sent', 'delivered', 'failed', 'skipped', 'cancelled']).optional(),
    contactId: z.coerce.number().int().min(1).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    beforeId: z.coerce.number().int().min(1).optional(),
  })
  .strict();
const idParams = z.object({ id: z.coerce.number().int().min(1) });

export async function registerMessageRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  useZodValidation(app);
  app.addHook('onRequest', merchantAuth(deps));

  app.get(
    '/api/messages',
    routeSchema({ operationId: 'listMessages', summary: 'Messages, newest first; filter by status and contact', tags: ['messages'], auth: 'merchant', querystring: listQuery }),
    async (req) => {
      const q = req.query as z.output<typeof listQuery>;
      const items = await listMessages(deps.db.db, requireShop(req).id, q);
      return { items, nextBeforeId: items.length === q.limit ? items[items.length - 1]!.id : null };
    },
  );

  app.get(
    '/api/messages/:id',
    routeSchema({ operationId: 'getMessage', summary: 'One message', tags: ['messages'], auth: 'merchant', params: idParams, errors: [404] }),
    async (req) => {
      const { id } = req.params as z.output<typeof idParams>;
      const message = await getMessage(deps.db.db, id);
      // Another shop's message is "not found", exactly like one that does not exist.
      if (!message || message.shopId !== requireShop(req).id) throw new AppError('NOT_FOUND', `message ${id} does not exist`);
      return message;
    },
  );
}
