/**
 * Operator authentication: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time, or the browser session
 * cookie that `POST /admin/login` sets (see ./routes/dashboard.ts).
 *
 * The cookie holds an expiry and an HMAC of it keyed with ADMIN_TOKEN, never the token itself: it cannot be forged
 * without the token, and changing ADMIN_TOKEN ends every session. It is HttpOnly (scripts cannot read it) and
 * SameSite=Strict (a request started by another site does not carry it, which is what stops cross-site request
 * forgery). By default it is accepted on GET/HEAD only; routes built for the browser (the queue dashboard) accept it
 * for every method.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import type { OperatorLockout } from './operatorLockout.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

export const OPERATOR_COOKIE = 'smsblossom_operator';
/** How long a dashboard login lasts. */
export const OPERATOR_SESSION_TTL_MS = 12 * 3_600_000;

function sessionMac(adminToken: string, expiresAt: number): string {
  return createHmac('sha256', adminToken).update(`operator-session:${expiresAt}`).digest('base64url');
}

/** The cookie value of a new operator session: `<expiresAtMs>.<mac>`. */
export function issueOperatorSession(adminToken: string, now = Date.now(), ttlMs = OPERATOR_SESSION_TTL_MS): string {
  const expiresAt = now + ttlMs;
  return `${expiresAt}.${sessionMac(adminToken, expiresAt)}`;
}

export function verifyOperatorSession(value: string | undefined, adminToken: string, now = Date.now()): boolean {
  const m = /^(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(value ?? '');
  if (!m) return false;
  const expiresAt = Number(m[1]);
  if (expiresAt <= now) return false;
  const given = Buffer.from(m[2]!);
  const expected = Buffer.from(sessionMac(adminToken, expiresAt));
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** One cookie from the Cookie header. */
export function readCookie(req: FastifyRequest, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
}

/** True when `token` is the admin token (constant time). */
export function isAdminToken(token: string | undefined, adminToken: string | undefined): boolean {
  if (!token || !adminToken) return false;
  return timingSafeEqual(digest(token), digest(adminToken));
}

export interface OperatorGuardOptions {
  /** Accept the session cookie on every method, not only GET/HEAD (routes made for the browser). Default false. */
  cookieForWrites?: boolean;
  /** Send a browser that is not logged in (Accept: text/html, GET) to `/admin/login` instead of answering 401. */
  loginRedirect?: boolean;
  /** Counts wrong tokens per client IP and refuses an address that has sent too many (see ./operatorLockout.ts). */
  lockout?: OperatorLockout;
}

export function operatorGuard(adminToken: string | undefined, options: OperatorGuardOptions = {}) {
  const expected = adminToken ? digest(adminToken) : undefined;
  return async (req: FastifyRequest, reply?: FastifyReply): Promise<FastifyReply | void> => {
    if (!expected || !adminToken) throw new AppError('OPERATOR_DISABLED', 'operator endpoints are disabled: set ADMIN_TOKEN to enable them');
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is compared as sent.
    const token = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
    // Checked before the token: once an address is locked out, even the right token is refused until the window ends.
    if (token) await options.lockout?.check(req.ip);
    if (token && timingSafeEqual(digest(token), expected)) return;
    if (token) await options.lockout?.failed(req.ip);
    const safe = req.method === 'GET' || req.method === 'HEAD';
    if (!token && (safe || options.cookieForWrites) && verifyOperatorSession(readCookie(req, OPERATOR_COOKIE), adminToken)) return;
    if (options.loginRedirect && reply && safe && !token && /text\/html/.test(req.headers.accept ?? '')) {
      // Returning the reply tells Fastify the hook answered the request; the route does not run.
      return reply.redirect(`/admin/login?next=${encodeURIComponent(req.url)}`, 303);
    }
    throw new AppError('UNAUTHORIZED', 'a valid operator token is required (Authorization: Bearer <ADMIN_TOKEN>)');
  };
}
