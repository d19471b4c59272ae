/** `POST /webhooks/shopify` and `POST /webhooks/shopify/<topic>`. */
import type { FastifyInstance } from 'fastify';
import { acceptWebhook } from '../../shopify/intake.js';
import type { AppDeps } from '../app.js';
import { routeSchema } from './docs.js';

const webhookDoc = {
  summary: 'A Shopify webhook: verified, stored once (by X-Shopify-Webhook-Id) and queued',
  description:
    'The raw body as Shopify sent it, with X-Shopify-Hmac-Sha256, X-Shopify-Topic (or the topic in the path), ' +
    'X-Shopify-Shop-Domain and X-Shopify-Webhook-Id. A delivery seen before answers 200 with `duplicate: true`.',
  tags: ['webhooks' as const],
  auth: 'shopifyWebhook' as const,
  rawBody: { contentTypes: ['application/json'], description: 'The webhook payload, as signed' },
  answers: { 200: 'Accepted (or a duplicate)' },
  errors: [503],
};

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

  app.post('/webhooks/shopify', routeSchema({ ...webhookDoc, operationId: 'shopifyWebhook' }), (req) => handle(req));
  app.post<{ Params: { resource: string; event: string } }>(
    '/webhooks/shopify/:resource/:event',
    routeSchema({ ...webhookDoc, operationId: 'shopifyWebhookByTopic', summary: `${webhookDoc.summary}; the topic is the path's (orders/paid)` }),
    (req) => handle(req, `${req.params.resource}/${req.params.event}`),
  );
}
