/**
 * The queue dashboard (Bull Board) at `/admin/queues`, for operators, and the browser login in front of it.
 *
 * - `GET /admin/login` shows a form; `POST /admin/login` (form field `token` = ADMIN_TOKEN) sets the operator session
 *   cookie (HttpOnly, SameSite=Strict, an HMAC of its expiry keyed with ADMIN_TOKEN; see ../auth.ts) and redirects to
 *   the dashboard. `POST /admin/logout` clears it.
 * - `/admin/queues` takes the cookie or `Authorization: Bearer <ADMIN_TOKEN>`; a browser without either is sent to the
 *   login page.
 * - Dead letters live in PostgreSQL, not in a BullMQ queue, so the dashboard cannot list them; its menu links to the
 *   `/admin/dlq` API, which accepts the same cookie for reading.
 */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isAppError } from '../../errors.js';
import { QUEUE_NAMES } from '../../queue/queues.js';
import type { AppDeps } from '../app.js';
import { isAdminToken, issueOperatorSession, OPERATOR_COOKIE, OPERATOR_SESSION_TTL_MS } from '../auth.js';
import { guardOperators, operatorLockout } from '../operatorLockout.js';
import { routeSchema } from './docs.js';

export const DASHBOARD_PATH = '/admin/queues';

const page = (description: string) => ({ description, contentType: 'text/html' });
const loginDocs = {
  form: routeSchema({
    operationId: 'loginForm',
    summary: 'The operator login form',
    tags: ['dashboard'],
    auth: 'public',
    answers: { 200: page('The form'), 403: page('ADMIN_TOKEN is not set') },
  }),
  login: routeSchema({
    operationId: 'login',
    summary: 'Log in with ADMIN_TOKEN (form field `token`); sets the session cookie and redirects to `next`',
    tags: ['dashboard'],
    auth: 'public',
    rawBody: { contentTypes: ['application/x-www-form-urlencoded'], description: 'token=<ADMIN_TOKEN>&next=<a path under /admin/>' },
    answers: {
      303: 'Logged in: Set-Cookie, and on to `next` (the dashboard by default)',
      401: page('The form again: wrong token'),
      403: page('ADMIN_TOKEN is not set'),
      429: page('Too many failed logins from this address'),
    },
  }),
  logout: routeSchema({ operationId: 'logout', summary: 'End the session: clears the cookie', tags: ['dashboard'], auth: 'public', answers: { 303: 'To the login form' } }),
};

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Only a path of ours may follow a login (never another site: an open redirect). */
function safeNext(value: unknown): string {
  return typeof value === 'string' && /^\/admin\/[A-Za-z0-9/_.?=&%-]*$/.test(value) && !value.startsWith('//') ? value : DASHBOARD_PATH;
}

function loginPage(next: string, error?: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SMS Blossom — operator login</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}
input,button{font:inherit;padding:.5rem;width:100%;box-sizing:border-box;margin:.25rem 0}.error{color:#b00020}</style></head>
<body><h1>SMS Blossom</h1><p>Operator login</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/admin/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="${escapeHtml(next)}">
<button type="submit">Log in</button>
</form></body></html>`;
}

function sessionCookie(req: FastifyRequest, value: string, maxAgeSeconds: number): string {
  // Secure whenever the request came over HTTPS (directly or, with trustProxy, through a proxy that said so).
  const secure = req.protocol === 'https' ? '; Secure' : '';
  return `${OPERATOR_COOKIE}=${value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure}`;
}

export async function registerDashboardRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  const adminToken = deps.config.adminToken;
  const lockout = operatorLockout(deps);

  // Login and logout: forms post application/x-www-form-urlencoded.
  await app.register(async (login) => {
    login.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_req, body, done) =>
      done(null, Object.fromEntries(new URLSearchParams(String(body)))),
    );
    const html = (reply: FastifyReply, status: number, body: string) =>
      reply
        .status(status)
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
        .send(body);

    login.get('/admin/login', loginDocs.form, async (req, reply) => {
      const next = safeNext((req.query as Record<string, unknown>)?.next);
      if (!adminToken) return html(reply, 403, loginPage(next, 'Operator access is disabled: set ADMIN_TOKEN.'));
      return html(reply, 200, loginPage(next));
    });

    // Rate limited more tightly than other routes (see ../admin.ts): this is where a token would be guessed.
    login.post('/admin/login', loginDocs.login, async (req, reply) => {
      const form = (req.body ?? {}) as Record<string, unknown>;
      const next = safeNext(form.next);
      if (!adminToken) return html(reply, 403, loginPage(next, 'Operator access is disabled: set ADMIN_TOKEN.'));
      try {
        await lockout.check(req.ip);
      } catch (err) {
        return html(reply, 429, loginPage(next, (err as Error).message));
      }
      if (typeof form.token !== 'string' || !isAdminToken(form.token, adminToken)) {
        await lockout.failed(req.ip);
        req.log.warn('Operator login refused');
        return html(reply, 401, loginPage(next, 'That token is not right.'));
      }
      req.log.info('Operator logged in');
      return reply
        .header('set-cookie', sessionCookie(req, issueOperatorSession(adminToken), Math.floor(OPERATOR_SESSION_TTL_MS / 1000)))
        .redirect(next, 303);
    });

    login.post('/admin/logout', loginDocs.logout, async (req, reply) =>
      reply.header('set-cookie', sessionCookie(req, '', 0)).redirect('/admin/login', 303),
    );
  });

  // Bull Board, with the five queues, behind the operator guard (cookie on every method: the board is a browser app
  // whose writes are same-origin fetches; SameSite=Strict keeps other sites' requests from carrying the cookie).
  await app.register(async (board) => {
    // Bull Board sets its own error handler on this scope, which would answer the guard's refusals (no ADMIN_TOKEN, no
    // token) as {"error":{"key":"ERRORS.INTERNAL_SERVER_ERROR"}}: they are answered here, in the service's envelope.
    const guard = guardOperators(deps, { cookieForWrites: true, loginRedirect: true });
    board.addHook('onRequest', async (req, reply) => {
      try {
        return await guard(req, reply);
      } catch (err) {
        if (!isAppError(err)) throw err;
        return reply.status(err.statusCode).send({ ...err.toJSON(), requestId: req.id });
      }
    });
    const serverAdapter = new FastifyAdapter();
    serverAdapter.setBasePath(DASHBOARD_PATH);
    createBullBoard({
      queues: QUEUE_NAMES.map((name) => new BullMQAdapter(deps.queues.get(name))),
      // @bull-board/fastify ships its own copy of @bull-board/api (one patch version apart): the same interface,
      // declared twice, which the compiler will not unify. At run time the adapter only calls the queues' methods.
      serverAdapter: serverAdapter as unknown as Parameters<typeof createBullBoard>[0]['serverAdapter'],
      options: {
        uiConfig: {
          boardTitle: 'SMS Blossom',
          miscLinks: [
            { text: 'Dead letters (API)', url: '/admin/dlq' },
            { text: 'Log out', url: '/admin/login' },
          ],
        },
      },
    });
    await board.register(serverAdapter.registerPlugin(), { prefix: DASHBOARD_PATH });
  });
}
