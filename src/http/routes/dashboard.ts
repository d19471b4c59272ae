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
import { QUEUE_NAMES } from '../../queue/queues.js';
import type { AppDeps } from '../app.js';
import { isAdminToken, issueOperatorSession, OPERATOR_COOKIE, OPERATOR_SESSION_TTL_MS, operatorGuard } from '../auth.js';

export const DASHBOARD_PATH = '/admin/queues';

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

    login.get('/admin/login', async (req, reply) => {
      const next = safeNext((req.query as Record<string, unknown>)?.next);
      if (!adminToken) return html(reply, 403, loginPage(next, 'Operator access is disabled: set ADMIN_TOKEN.'));
      return html(reply, 200, loginPage(next));
    });

    // Rate limited more tightly than other routes (see ../admin.ts): this is where a token would be guessed.
    login.post('/admin/login', async (req, reply) => {
      const form = (req.body ?? {}) as Record<string, unknown>;
      const next = safeNext(form.next);
      if (!adminToken) return html(reply, 403, loginPage(next, 'Operator access is disabled: set ADMIN_TOKEN.'));
      if (typeof form.token !== 'string' || !isAdminToken(form.token, adminToken)) {
        req.log.warn('Operator login refused');
        return html(reply, 401, loginPage(next, 'That token is not right.'));
      }
      req.log.info('Operator logged in');
      return reply
        .header('set-cookie', sessionCookie(req, issueOperatorSession(adminToken), Math.floor(OPERATOR_SESSION_TTL_MS / 1000)))
        .redirect(next, 303);
    });

    login.post('/admin/logout', async (req, reply) =>
      reply.header('set-cookie', sessionCookie(req, '', 0)).redirect('/admin/login', 303),
    );
  });

  // Bull Board, with the five queues, behind the operator guard (cookie on every method: the board is a browser app
  // whose writes are same-origin fetches; SameSite=Strict keeps other sites' requests from carrying the cookie).
  await app.register(async (board) => {
    board.addHook('onRequest', operatorGuard(adminToken, { cookieForWrites: true, loginRedirect: true }));
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
