/**
 * Shopify's token endpoint (`POST /{shop}/admin/oauth/access_token`) for the sandbox: token exchange of an App Bridge
 * session token for an offline or online access token (RFC 8693 as Shopify profiles it), expiring offline tokens
 * with their refresh grant, and the store of issued tokens the GraphQL endpoint authenticates against.
 */
import { randomBytes } from 'node:crypto';
import { jwtVerify } from 'jose';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
export const OFFLINE_TOKEN_TYPE = 'urn:shopify:params:oauth:token-type:offline-access-token';
export const ONLINE_TOKEN_TYPE = 'urn:shopify:params:oauth:token-type:online-access-token';
export const REFRESH_GRANT = 'refresh_token';

/** Session tokens are checked with this much clock skew allowed, as Shopify's libraries do. */
const CLOCK_TOLERANCE_SECONDS = 10;
/** Online tokens last a day less a second, as Shopify issues them. */
const ONLINE_TTL_SECONDS = 86_399;

export interface TokenSettings {
  apiKey: string;
  secret: string;
  /** Comma-separated scopes granted to every token. */
  scope: string;
  /** Lifetime of an expiring offline access token (`expires_in`). */
  accessTokenTtlSeconds: number;
  /** Lifetime of a refresh token (`refresh_token_expires_in`). */
  refreshTokenTtlSeconds: number;
}

export interface IssuedToken {
  shop: string;
  kind: 'offline' | 'online';
  /** Epoch ms; null for a non-expiring offline token. */
  expiresAt: number | null;
  /** The refresh token issued with this access token, if any. */
  refreshToken: string | null;
}

interface RefreshRecord {
  shop: string;
  expiresAt: number;
}

/** An OAuth error answer, as Shopify sends it: `{ error, error_description }` with a 4xx status. */
export interface OAuthAnswer {
  status: number;
  body: Record<string, unknown>;
}

const oauthError = (status: number, error: string, description: string): OAuthAnswer => ({ status, body: { error, error_description: description } });

const newToken = (prefix: string) => `${prefix}${randomBytes(16).toString('hex')}`;

export function createTokenStore(settings: TokenSettings) {
  const accessTokens = new Map<string, IssuedToken>();
  const refreshTokens = new Map<string, RefreshRecord>();
  /**
   * A used refresh token keeps working until the access token issued in its place is first used, as Shopify does so
   * that an app which lost a refresh answer can retry: new refresh token → the one it replaced.
   */
  const predecessors = new Map<string, string>();
  const key = new TextEncoder().encode(settings.secret);
  let issued = 0;

  function issueExpiringOffline(shop: string, now: number): OAuthAnswer {
    const access = newToken('shpat_');
    const refresh = newToken('shprt_');
    accessTokens.set(access, { shop, kind: 'offline', expiresAt: now + settings.accessTokenTtlSeconds * 1000, refreshToken: refresh });
    refreshTokens.set(refresh, { shop, expiresAt: now + settings.refreshTokenTtlSeconds * 1000 });
    issued++;
    return {
      status: 200,
      body: {
        access_token: access,
        expires_in: settings.accessTokenTtlSeconds,
        refresh_token: refresh,
        refresh_token_expires_in: settings.refreshTokenTtlSeconds,
        scope: settings.scope,
      },
    };
  }

  async function exchange(shop: string, p: Record<string, string | undefined>, now: number): Promise<OAuthAnswer> {
    for (const name of ['subject_token', 'subject_token_type', 'requested_token_type'] as const) {
      if (!p[name]) return oauthError(400, 'invalid_request', `Missing required parameter: ${name}`);
    }
    if (p.subject_token_type !== ID_TOKEN_TYPE) return oauthError(400, 'invalid_request', `subject_token_type must be ${ID_TOKEN_TYPE}`);
    if (p.requested_token_type !== OFFLINE_TOKEN_TYPE && p.requested_token_type !== ONLINE_TOKEN_TYPE) {
      return oauthError(400, 'invalid_request', `requested_token_type must be ${OFFLINE_TOKEN_TYPE} or ${ONLINE_TOKEN_TYPE}`);
    }
    let sub: string | undefined;
    try {
      const { payload } = await jwtVerify(p.subject_token!, key, {
        algorithms: ['HS256'],
        audience: settings.apiKey,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        currentDate: new Date(now),
        requiredClaims: ['exp', 'nbf', 'dest'],
      });
      if (payload.dest !== `https://${shop}`) throw new Error('dest is another shop');
      sub = payload.sub;
    } catch {
      return oauthError(400, 'invalid_subject_token', 'Token exchange cannot be performed due to an invalid subject.');
    }
    if (p.requested_token_type === ONLINE_TOKEN_TYPE) {
      const access = newToken('shpua_');
      accessTokens.set(access, { shop, kind: 'online', expiresAt: now + ONLINE_TTL_SECONDS * 1000, refreshToken: null });
      issued++;
      return {
        status: 200,
        body: {
          access_token: access,
          scope: settings.scope,
          expires_in: ONLINE_TTL_SECONDS,
          associated_user_scope: settings.scope,
          associated_user: {
            id: Number(sub) || 1,
            first_name: 'Sandbox',
            last_name: 'Staff',
            email: 'staff@example.com',
            email_verified: true,
            account_owner: true,
            locale: 'en',
            collaborator: false,
          },
        },
      };
    }
    if (p.expiring === '1' || p.expiring === 'true') return issueExpiringOffline(shop, now);
    const access = newToken('shpat_');
    accessTokens.set(access, { shop, kind: 'offline', expiresAt: null, refreshToken: null });
    issued++;
    return { status: 200, body: { access_token: access, scope: settings.scope } };
  }

  function refresh(shop: string, p: Record<string, string | undefined>, now: number): OAuthAnswer {
    if (!p.refresh_token) return oauthError(400, 'invalid_request', 'Missing required parameter: refresh_token');
    const record = refreshTokens.get(p.refresh_token);
    if (record === undefined || record.shop !== shop || record.expiresAt <= now) {
      return oauthError(400, 'invalid_grant', 'The refresh token is invalid, expired or was issued to another shop.');
    }
    const answer = issueExpiringOffline(shop, now);
    predecessors.set(answer.body.refresh_token as string, p.refresh_token);
    return answer;
  }

  return {
    /** Answers one token request; `p` holds the request's parameters (JSON or form body). */
    async handle(shop: string, p: Record<string, string | undefined>, now = Date.now()): Promise<OAuthAnswer> {
      if (!p.client_id || !p.client_secret) return oauthError(400, 'invalid_request', `Missing required parameter: ${p.client_id ? 'client_secret' : 'client_id'}`);
      if (p.client_id !== settings.apiKey || p.client_secret !== settings.secret) {
        return oauthError(401, 'invalid_client', 'Client authentication failed: unknown client_id or wrong client_secret.');
      }
      if (p.grant_type === TOKEN_EXCHANGE_GRANT) return exchange(shop, p, now);
      if (p.grant_type === REFRESH_GRANT) return refresh(shop, p, now);
      return oauthError(400, 'unsupported_grant_type', `grant_type must be ${TOKEN_EXCHANGE_GRANT} or ${REFRESH_GRANT}`);
    },

    /** The token, when it was issued here for `shop` and has not expired; retires the refresh token it replaced. */
    authenticate(shop: string, accessToken: string, now = Date.now()): IssuedToken | null {
      const token = accessTokens.get(accessToken);
      if (token === undefined || token.shop !== shop) return null;
      if (token.expiresAt !== null && token.expiresAt <= now) return null;
      const replaced = token.refreshToken === null ? undefined : predecessors.get(token.refreshToken);
      if (replaced !== undefined) {
        refreshTokens.delete(replaced);
        predecessors.delete(token.refreshToken!);
      }
      return token;
    },

    /** Makes every token issued so far for `shop` invalid (as an uninstall does). */
    revoke(shop: string): void {
      for (const [token, record] of accessTokens) if (record.shop === shop) accessTokens.delete(token);
      for (const [token, record] of refreshTokens) if (record.shop === shop) refreshTokens.delete(token);
    },

    issued: () => issued,
  };
}

export type TokenStore = ReturnType<typeof createTokenStore>;
