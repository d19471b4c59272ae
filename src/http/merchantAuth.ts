/**
 * Merchant authentication: a Shopify session token (App Bridge `getSessionToken()`), i.e. a JWT signed HS256 with
 * SHOPIFY_API_SECRET whose `aud` is SHOPIFY_API_KEY and whose `dest` names the shop (`https://<shop>.myshopify.com`).
 *
 * A route scope that calls `api.addHook('onRequest', merchantAuth(deps))` gets `req.shop` (the shops row of the
 * token's shop, created on first sight). Every query a merchant route makes must then filter by `req.shop.id`: a row
 * of another shop is answered 404, exactly like a row that does not exist, so ids of other shops cannot be probed.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { errors as joseErrors, jwtVerify } from 'jose';
import { getShopByDomain, upsertShop } from '../db/shops.js';
import type { Shop } from '../db/schema.js';
import { AppError } from '../errors.js';
import { isShopDomain } from '../shopify/shopDomain.js';
import { createInstaller, type Installer } from '../sync/install.js';
import type { AppDeps } from './app.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated merchant's shop; set by {@link merchantAuth}, null on routes without it. */
    shop: Shop | null;
  }
}

/** What a verified session token says. */
export interface MerchantSession {
  /** `shop.myshopify.com`, from `dest`. */
  shopDomain: string;
  /** The staff member (`sub`), when the token names one. */
  userId: string | null;
}

/**
 * Clock skew tolerated on `exp` and `nbf`: 10 s, what `@shopify/shopify-api` allows (`JWT_PERMITTED_CLOCK_TOLERANCE`
 * in its decode-session-token), so a token the merchant's admin considers valid is valid here too.
 */
export const SESSION_TOKEN_LEEWAY_SECONDS = 10;

function shopFromUrl(value: unknown, claim: string): string {
  let host: string;
  try {
    const u = new URL(String(value));
    if (u.protocol !== 'https:') throw new Error('not https');
    host = u.hostname.toLowerCase();
  } catch {
    throw new AppError('UNAUTHORIZED', `session token: ${claim} is not a shop URL`);
  }
  if (!isShopDomain(host)) throw new AppError('UNAUTHORIZED', `session token: ${claim} is not a *.myshopify.com shop`);
  return host;
}

/**
 * Verifies a session token: signature (HS256 only), `aud`, `exp` (required), `nbf`, and `dest` (and `iss`, which
 * must name the same shop). Throws AppError UNAUTHORIZED with a message naming what is wrong.
 */
export async function verifySessionToken(
  token: string,
  keys: { apiKey: string; apiSecret: string },
  now: Date = new Date(),
): Promise<MerchantSession> {
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, new TextEncoder().encode(keys.apiSecret), {
      algorithms: ['HS256'],
      audience: keys.apiKey,
      clockTolerance: SESSION_TOKEN_LEEWAY_SECONDS,
      requiredClaims: ['exp', 'dest'],
      currentDate: now,
    }));
  } catch (err) {
    throw new AppError('UNAUTHORIZED', `session token: ${describeJoseError(err)}`);
  }
  const shopDomain = shopFromUrl(payload.dest, 'dest');
  if (payload.iss !== undefined) {
    const issuer = shopFromUrl(String(payload.iss).replace(/\/admin\/?$/, ''), 'iss');
    if (issuer !== shopDomain) throw new AppError('UNAUTHORIZED', 'session token: iss and dest name different shops');
  }
  return { shopDomain, userId: typeof payload.sub === 'string' ? payload.sub : null };
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'expired (exp)';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature does not verify';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim} ${err.reason === 'check_failed' ? 'is wrong' : err.reason}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'algorithm must be HS256';
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return 'malformed';
  return 'invalid';
}

const sessions = new WeakMap<FastifyRequest, Promise<MerchantSession>>();

/** The bearer token of a request, if any. */
export function bearerToken(req: FastifyRequest): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
}

/**
 * The request's verified session, computed once per request (the rate limiter keys `/api` requests by shop before the
 * route's own `merchantAuth` hook runs, and both read it). Rejects with AppError UNAUTHORIZED.
 */
export function merchantSession(req: FastifyRequest, deps: Pick<AppDeps, 'config'>): Promise<MerchantSession> {
  let pending = sessions.get(req);
  if (!pending) {
    const { apiKey, apiSecret } = deps.config.shopify;
    const token = bearerToken(req);
    pending = !apiKey
      ? Promise.reject(new AppError('MERCHANT_API_DISABLED', 'merchant endpoints are disabled: set SHOPIFY_API_KEY to enable them'))
      : !token
        ? Promise.reject(new AppError('UNAUTHORIZED', 'a Shopify session token is required (Authorization: Bearer <token>)'))
        : verifySessionToken(token, { apiKey, apiSecret });
    // Read by whichever hook comes first; an unobserved rejection must not be reported as unhandled.
    pending.catch(() => undefined);
    sessions.set(req, pending);
  }
  return pending;
}

/**
 * The onRequest hook of merchant routes: verifies the session token and sets `req.shop`. Reusable by any route file:
 *
 * ```ts
 * app.register(async (api) => {
 *   api.addHook('onRequest', merchantAuth(deps));
 *   api.get('/api/things/:id', async (req) => findThing(deps.db.db, requireShop(req).id, id) ?? notFound());
 * });
 * ```
 */
export function merchantAuth(deps: Pick<AppDeps, 'config' | 'db' | 'queues' | 'logger'>) {
  return async function merchantAuthHook(req: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const session = await merchantSession(req, deps);
    // A valid token proves the app is installed on the shop: a shop we have not heard of yet is recorded now.
    req.shop = (await getShopByDomain(deps.db.db, session.shopDomain)) ?? (await upsertShop(deps.db.db, session.shopDomain)).shop;
    // The access token (and the initial sync) is obtained beside the request, never in its way (src/sync/install.ts).
    installerOf(deps).onMerchantRequest(req.shop, bearerToken(req)!);
  };
}

const installers = new WeakMap<object, Installer>();

/** One installer per app (its per-shop memory is shared by every route scope). */
export function installerOf(deps: Pick<AppDeps, 'config' | 'db' | 'queues' | 'logger'>): Installer {
  let installer = installers.get(deps);
  if (!installer) {
    installer = createInstaller({ db: deps.db.db, config: deps.config, queues: deps.queues, logger: deps.logger });
    installers.set(deps, installer);
  }
  return installer;
}

/** `req.shop`, or a 401 when a route forgot its `merchantAuth` hook (never an unscoped query). */
export function requireShop(req: FastifyRequest): Shop {
  if (!req.shop) throw new AppError('UNAUTHORIZED', 'this route needs merchant authentication');
  return req.shop;
}
