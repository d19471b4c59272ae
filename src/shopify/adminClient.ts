/**
 * A small client of Shopify's Admin API over `fetch`: token exchange and refresh (`POST /admin/oauth/access_token`)
 * and GraphQL (`POST /admin/api/<version>/graphql.json`) with Shopify's cost-based throttling.
 *
 * Not `@shopify/shopify-api` (see README "Dependencies"): that library builds `https://{shop}/admin/...` itself in its
 * token exchange and GraphQL clients, so the sandbox (SHOPIFY_ADMIN_BASE_URL) could only be reached by replacing its
 * process-wide fetch; and it would make a runtime dependency of a devDependency for two POST requests.
 *
 * Throttling: every answer's `extensions.cost.throttleStatus` (`currentlyAvailable`, `restoreRate`,
 * `maximumAvailable`) is remembered per client; before a request whose expected cost exceeds what is available, the
 * client waits for the bucket to refill. An answer `THROTTLED` waits `(requested - available) / restoreRate` seconds
 * and is sent again; HTTP 429 waits `Retry-After`.
 */
import { setTimeout as wait } from 'node:timers/promises';
import { AppError } from '../errors.js';
import { SHOPIFY_API_VERSION } from './topics.js';

/** Where a shop's Admin API lives: `https://{shop}`, or `{base}/{shop}` with SHOPIFY_ADMIN_BASE_URL (the sandbox). */
export function adminOrigin(shopDomain: string, baseUrl: string | undefined): string {
  return baseUrl ? `${baseUrl}/${shopDomain}` : `https://${shopDomain}`;
}

export type FetchLike = typeof fetch;

/** What `POST /admin/oauth/access_token` grants. Expiring offline tokens carry the four optional fields. */
export interface TokenGrant {
  accessToken: string;
  scope: string | null;
  expiresAt: Date | null;
  refreshToken: string | null;
  refreshExpiresAt: Date | null;
}

export interface AppCredentials {
  /** The app's client id (SHOPIFY_API_KEY). */
  apiKey: string;
  /** The app's client secret (SHOPIFY_API_SECRET). */
  apiSecret: string;
}

const TIMEOUT_MS = 30_000;

async function post(fetchFn: FetchLike, url: string, headers: Record<string, string>, body: unknown): Promise<Response> {
  try {
    return await fetchFn(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    throw new AppError('SHOPIFY_ADMIN_UNAVAILABLE', `Shopify Admin API: ${(err as Error).name === 'TimeoutError' ? 'no answer' : 'unreachable'} (${new URL(url).pathname})`, { cause: err });
  }
}

async function grantFrom(res: Response, what: string, now: Date): Promise<TokenGrant> {
  if (res.status >= 500 || res.status === 429) throw new AppError('SHOPIFY_ADMIN_UNAVAILABLE', `${what}: Shopify answered ${res.status}`);
  const body = (await res.json().catch(() => null)) as Record<string, unknown> | null;
  if (!res.ok || !body || typeof body.access_token !== 'string') {
    // The error fields (`error`, `error_description`) name the cause; they never echo a token.
    const reason = body && typeof body.error === 'string' ? `: ${body.error}${typeof body.error_description === 'string' ? ` (${body.error_description})` : ''}` : '';
    throw new AppError('SHOPIFY_AUTH_FAILED', `${what}: Shopify refused it (${res.status})${reason}`);
  }
  const seconds = (v: unknown) => (typeof v === 'number' && v > 0 ? new Date(now.getTime() + v * 1000) : null);
  return {
    accessToken: body.access_token,
    scope: typeof body.scope === 'string' ? body.scope : null,
    expiresAt: seconds(body.expires_in),
    refreshToken: typeof body.refresh_token === 'string' ? body.refresh_token : null,
    refreshExpiresAt: seconds(body.refresh_token_expires_in),
  };
}

interface TokenRequestOptions {
  baseUrl: string | undefined;
  fetch?: FetchLike;
  now?: Date;
}

/** `POST /admin/oauth/access_token` with the app's credentials and `params`. */
async function tokenRequest(shopDomain: string, params: Record<string, string>, app: AppCredentials, opts: TokenRequestOptions, what: string): Promise<TokenGrant> {
  const url = `${adminOrigin(shopDomain, opts.baseUrl)}/admin/oauth/access_token`;
  const res = await post(opts.fetch ?? fetch, url, {}, { client_id: app.apiKey, client_secret: app.apiSecret, ...params });
  return grantFrom(res, what, opts.now ?? new Date());
}

/**
 * Token exchange: a session token (App Bridge's id token) for an **offline** access token. Shopify may issue an
 * expiring one (with a refresh token); {@link refreshAccessToken} renews it.
 */
export function exchangeSessionToken(shopDomain: string, sessionToken: string, app: AppCredentials, opts: TokenRequestOptions): Promise<TokenGrant> {
  const params = {
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: sessionToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
    requested_token_type: 'urn:shopify:params:oauth:token-type:offline-access-token',
    // An expiring offline token (and its refresh token): a leaked one is useless within the hour.
    expiring: '1',
  };
  return tokenRequest(shopDomain, params, app, opts, 'token exchange');
}

/** Renews an expiring offline token with its refresh token (`grant_type=refresh_token`). */
export function refreshAccessToken(shopDomain: string, refreshToken: string, app: AppCredentials, opts: TokenRequestOptions): Promise<TokenGrant> {
  return tokenRequest(shopDomain, { grant_type: 'refresh_token', refresh_token: refreshToken }, app, opts, 'token refresh');
}

/** Shopify's leaky bucket as last reported (`extensions.cost.throttleStatus`). */
export interface ThrottleStatus {
  maximumAvailable: number;
  currentlyAvailable: number;
  restoreRate: number;
}

interface GraphqlError {
  message?: string;
  extensions?: { code?: string };
}

interface GraphqlBody<T> {
  data?: T;
  errors?: GraphqlError[];
  extensions?: { cost?: { requestedQueryCost?: number; actualQueryCost?: number; throttleStatus?: ThrottleStatus } };
}

export interface AdminGraphqlOptions {
  shopDomain: string;
  accessToken: string;
  baseUrl: string | undefined;
  fetch?: FetchLike;
  /** Waits (tests make them instant or count them). Default: a timer. */
  sleep?: (ms: number) => Promise<void>;
  /** Most THROTTLED answers in a row before giving up with SHOPIFY_ADMIN_UNAVAILABLE (a retry of the job). */
  maxThrottledRetries?: number;
}

/** A GraphQL Admin API client for one shop and token. */
export class AdminGraphqlClient {
  private bucket: ThrottleStatus | undefined;
  private bucketAt = 0;
  /** Milliseconds spent waiting for the bucket (reported by the sync). */
  throttledMs = 0;

  constructor(private readonly options: AdminGraphqlOptions) {}

  get endpoint(): string {
    return `${adminOrigin(this.options.shopDomain, this.options.baseUrl)}/admin/api/${SHOPIFY_API_VERSION}/graphql.json`;
  }

  /** Runs a query or mutation; `expectedCost` (default 10) is what the bucket must hold before it is sent. */
  async request<T>(query: string, variables: Record<string, unknown> = {}, expectedCost = 10): Promise<T> {
    const max = this.options.maxThrottledRetries ?? 20;
    for (let attempt = 0; ; attempt++) {
      await this.waitForBucket(expectedCost);
      const res = await post(this.options.fetch ?? fetch, this.endpoint, { 'x-shopify-access-token': this.options.accessToken }, { query, variables });
      if (res.status === 401 || res.status === 403) throw new AppError('SHOPIFY_AUTH_FAILED', `GraphQL Admin API: access token refused (${res.status})`);
      if (res.status === 429 && attempt < max) {
        await this.pause(Math.max(1, Number(res.headers.get('retry-after')) || 1) * 1000);
        continue;
      }
      if (res.status >= 500 || res.status === 429) throw new AppError('SHOPIFY_ADMIN_UNAVAILABLE', `GraphQL Admin API answered ${res.status}`);
      const body = (await res.json().catch(() => null)) as GraphqlBody<T> | null;
      if (!body) throw new AppError('SHOPIFY_ADMIN_UNAVAILABLE', `GraphQL Admin API: answer ${res.status} is not JSON`);
      const cost = body.extensions?.cost;
      if (cost?.throttleStatus) {
        this.bucket = cost.throttleStatus;
        this.bucketAt = Date.now();
      }
      if (body.errors?.some((e) => e.extensions?.code === 'THROTTLED')) {
        if (attempt >= max) throw new AppError('SHOPIFY_ADMIN_UNAVAILABLE', `GraphQL Admin API: still throttled after ${max} waits`);
        const status = cost?.throttleStatus;
        const requested = cost?.requestedQueryCost ?? expectedCost;
        const ms = status && status.restoreRate > 0 ? ((requested - status.currentlyAvailable) / status.restoreRate) * 1000 : 1000;
        await this.pause(Math.max(50, Math.ceil(ms)));
        continue;
      }
      if (body.errors?.length || body.data === undefined) {
        const first = body.errors?.[0];
        throw new AppError('SHOPIFY_GRAPHQL_FAILED', `GraphQL Admin API: ${first?.message ?? 'answer without data'}${first?.extensions?.code ? ` (${first.extensions.code})` : ''}`);
      }
      return body.data;
    }
  }

  /** Waits until the bucket, refilled at `restoreRate` since last reported, holds `cost`. */
  private async waitForBucket(cost: number): Promise<void> {
    const b = this.bucket;
    if (!b || b.restoreRate <= 0) return;
    const available = Math.min(b.maximumAvailable, b.currentlyAvailable + ((Date.now() - this.bucketAt) / 1000) * b.restoreRate);
    if (available >= cost) return;
    await this.pause(Math.ceil(((cost - available) / b.restoreRate) * 1000));
  }

  private async pause(ms: number): Promise<void> {
    this.throttledMs += ms;
    await (this.options.sleep ?? ((n: number) => wait(n)))(ms);
  }
}
