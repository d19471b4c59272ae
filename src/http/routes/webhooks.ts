/** `POST /webhooks/shopify` and `POST /webhooks/shopify/<topic>`. */
import type { FastifyInstance } from 'fastify';
import { acceptWebhook } from '../../shopify/intake.js';
import type { AppDeps } from '../app.js';

export async function registerWebhookRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  // The signature covers the bytes as sent, so the body must reach us unparsed, whatever its content type says.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: deps.config.http.webhookBodyLimit }, (_req, body, done) => done(null, body));

  const intakeDeps = { db: deps.db.db, queues: deps.queues, logger: deps.logger, secret: deps.config.shopify.apiSecret };

  const handle = async (req: import('fastify').FastifyRequest, pathTopic?: string) => {
    const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const result = await acceptWebhook({ rawBody, headers: req.headers, pathTopic, requestId: req.id }, intakeDeps);
    return { ok: true, duplicate: result.duplicate, requestId: req.id };
  };

  app.post('/webhooks/shopify', (req) => handle(req));
  app.post<{ Params: { resource: string; event: string } }>('/webhooks/shopify/:resource/:event', (req) =>
    handle(req, `${req.params.resource}/${req.params.event}`),
  );
}
