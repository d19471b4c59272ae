/**
 * Merchant contacts: list and search, one contact with its consent history and messages, a consent change by hand
 * (recorded in `consent_changes`), and CSV import (`POST /api/contacts/import`, `text/csv` body).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { importContactsCsv } from '../../contacts/import.js';
import { getContact, listConsentChanges, searchContacts, setContactConsent } from '../../db/contacts.js';
import { listMessagesForContact, listSkips } from '../../db/messages.js';
import { AppError } from '../../errors.js';
import type { AppDeps } from '../app.js';
import { merchantAuth, requireShop } from '../merchantAuth.js';
import { routeSchema, useZodValidation } from './docs.js';

/** Larger files go through the CLI (`smsblossom contacts import`), which has no request size limit. */
export const IMPORT_BODY_LIMIT = 5 * 1024 * 1024;

const idParams = z.object({ id: z.coerce.number().int().min(1) });
const listQuery = z
  .object({
    q: z.string().trim().min(1).max(100).optional(),
    consent: z.enum(['not_subscribed', 'pending', 'subscribed', 'unsubscribed', 'redacted']).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    beforeId: z.coerce.number().int().min(1).optional(),
  })
  .strict();
const consentBody = z
  .object({
    state: z.enum(['subscribed', 'unsubscribed', 'not_subscribed']),
    /** Why, for the record (e.g. "customer asked in store"). */
    note: z.string().trim().min(1).max(200).optional(),
  })
  .strict();

export async function registerContactRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  useZodValidation(app);
  app.addHook('onRequest', merchantAuth(deps));
  // The body of an import is the file itself; nothing else in this scope takes CSV.
  app.addContentTypeParser(['text/csv', 'application/csv'], { parseAs: 'string', bodyLimit: IMPORT_BODY_LIMIT }, (_req, body, done) =>
    done(null, body),
  );
  const db = deps.db.db;

  app.get(
    '/api/contacts',
    routeSchema({ operationId: 'listContacts', summary: 'List or search contacts (q matches phone, email, names), newest first', tags: ['contacts'], auth: 'merchant', querystring: listQuery }),
    async (req) => {
      const q = req.query as z.output<typeof listQuery>;
      const items = await searchContacts(db, requireShop(req).id, q);
      return { items, nextBeforeId: items.length === q.limit ? items[items.length - 1]!.id : null };
    },
  );

  app.get(
    '/api/contacts/:id',
    routeSchema({ operationId: 'getContact', summary: 'One contact, its consent history, messages and skipped messages', tags: ['contacts'], auth: 'merchant', params: idParams, errors: [404] }),
    async (req) => {
      const shop = requireShop(req);
      const { id } = req.params as z.output<typeof idParams>;
      const contact = await getContact(db, shop.id, id);
      if (!contact) throw new AppError('NOT_FOUND', `contact ${id} does not exist`);
      const [consentHistory, messages, skips] = await Promise.all([
        listConsentChanges(db, contact.id),
        listMessagesForContact(db, shop.id, contact.id),
        listSkips(db, shop.id, contact.id),
      ]);
      return { contact, consentHistory, messages, skips };
    },
  );

  app.post(
    '/api/contacts/:id/consent',
    routeSchema({
      operationId: 'setContactConsent',
      summary: "Change a contact's SMS consent; recorded in the consent history with source admin:api",
      tags: ['contacts'],
      auth: 'merchant',
      params: idParams,
      body: consentBody,
      errors: [404, 409],
    }),
    async (req) => {
      const shop = requireShop(req);
      const { id } = req.params as z.output<typeof idParams>;
      const body = req.body as z.output<typeof consentBody>;
      const result = await setContactConsent(db, shop.id, id, {
        state: body.state,
        source: body.note ? `admin:api (${body.note})` : 'admin:api',
        requestId: req.id,
      });
      if (!result) throw new AppError('NOT_FOUND', `contact ${id} does not exist`);
      if (result.refused) {
        throw new AppError(
          'CONSENT_LOCKED',
          result.refused === 'redacted'
            ? `state: contact ${id} was redacted; its consent cannot change`
            : `state: contact ${id} opted out; only the person can opt back in (reply START, or subscribe again in Shopify)`,
          { details: { field: 'state', reason: result.refused } },
        );
      }
      req.log.info({ contactId: id, consent: body.state, changed: result.changed }, 'Consent set by merchant');
      return { contact: result.contact, changed: result.changed };
    },
  );

  app.post(
    '/api/contacts/import',
    {
      ...routeSchema({
        operationId: 'importContacts',
        summary: 'Import contacts from CSV (text/csv body): bad rows are reported with line number and reason, good rows are kept',
        description:
          'Header row required. Columns: phone (required), first_name, last_name, email, tags (";"-separated), country (ISO alpha-2), ' +
          'customer_id, consent (subscribed | unsubscribed | not_subscribed).',
        tags: ['contacts'],
        auth: 'merchant',
        rawBody: { contentTypes: ['text/csv', 'application/csv'], description: 'The CSV file' },
        errors: [413],
      }),
      bodyLimit: IMPORT_BODY_LIMIT,
    },
    async (req) => {
      if (typeof req.body !== 'string') throw new AppError('VALIDATION_FAILED', 'body: send the CSV file as the body with Content-Type: text/csv');
      const shop = requireShop(req);
      const result = await importContactsCsv(db, shop, req.body, { requestId: req.id });
      req.log.info({ rows: result.rows, imported: result.imported, rejected: result.errors.length }, 'Contacts imported');
      return result;
    },
  );
}
