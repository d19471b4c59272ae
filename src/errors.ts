/**
 * Every error SMS Blossom raises on purpose has a stable `code`, a human message and an HTTP status.
 * Codes are defined once here; callers and tests match on `code`, never on message text.
 */

export const ErrorCodes = {
  CONFIG_INVALID: { status: 500, permanent: true },
  UNKNOWN_QUEUE: { status: 400, permanent: true },
  UNKNOWN_JOB_NAME: { status: 400, permanent: true },
  INVALID_JOB_DATA: { status: 400, permanent: true },
  INVALID_PAYLOAD: { status: 400, permanent: true },
  INVALID_JSON: { status: 400, permanent: true },
  /** A request the HTTP layer refused for a reason no other code names (a malformed URL, a bad Content-Length). */
  BAD_REQUEST: { status: 400, permanent: true },
  /** A request body of a media type no route accepts. */
  UNSUPPORTED_MEDIA_TYPE: { status: 415, permanent: true },
  MISSING_HEADER: { status: 400, permanent: true },
  INVALID_SIGNATURE: { status: 401, permanent: true },
  UNAUTHORIZED: { status: 401, permanent: true },
  /** A webhook's signed body names another shop than its `X-Shopify-Shop-Domain` header. */
  SHOP_DOMAIN_MISMATCH: { status: 401, permanent: true },
  OPERATOR_DISABLED: { status: 403, permanent: true },
  /** Merchant endpoints need SHOPIFY_API_KEY (the `aud` of session tokens) in production. */
  MERCHANT_API_DISABLED: { status: 403, permanent: true },
  /** A CSV upload that cannot be read at all (not individual bad rows, which are reported per line). */
  CSV_INVALID: { status: 400, permanent: true },
  RATE_LIMITED: { status: 429, permanent: false },
  NOT_FOUND: { status: 404, permanent: true },
  PAYLOAD_TOO_LARGE: { status: 413, permanent: true },
  VALIDATION_FAILED: { status: 400, permanent: true },
  /** A message template does not parse (liquid syntax, unknown filter or tag). */
  TEMPLATE_INVALID: { status: 400, permanent: true },
  /** A template parsed but failed while rendering (render time or memory limit, a filter error). */
  TEMPLATE_RENDER_FAILED: { status: 422, permanent: true },
  /** An automation's JSON condition is malformed (unknown op, bad path, too deep). */
  CONDITION_INVALID: { status: 400, permanent: true },
  /** A segment filter is malformed (unknown condition, bad value, too deep). */
  SEGMENT_INVALID: { status: 400, permanent: true },
  /** The campaign is not in a state that allows this action (e.g. editing one that is sending). */
  CAMPAIGN_STATE_CONFLICT: { status: 409, permanent: true },
  /** A merchant tried to undo an opt-out (or change a redacted contact): only the person can opt back in. */
  CONSENT_LOCKED: { status: 409, permanent: true },
  /** A sender number already belongs to another shop, or is the platform's shared sender. */
  SENDER_TAKEN: { status: 409, permanent: true },
  /** A marketing automation (abandoned checkout, welcome) cannot be made transactional. */
  AUTOMATION_KIND_FIXED: { status: 400, permanent: true },
  /** A housekeeping job names a task that does not exist. */
  UNKNOWN_HOUSEKEEPING_TASK: { status: 400, permanent: true },
  REDIS_UNAVAILABLE: { status: 503, permanent: false },
  DATABASE_UNAVAILABLE: { status: 503, permanent: false },
  SERVICE_UNAVAILABLE: { status: 503, permanent: false },
  SHUTTING_DOWN: { status: 503, permanent: false },
  /** The embedded database (PGlite) is open in another process, usually the running service; only one may open it. */
  DATABASE_IN_USE: { status: 503, permanent: false },
  /** A stored access token opens with none of the configured keys (TOKEN_ENCRYPTION_KEY, ..._PREVIOUS). */
  TOKEN_UNREADABLE: { status: 500, permanent: true },
  /** The shop has no Admin API access token yet (it is obtained on the merchant's first request in the app). */
  NO_ACCESS_TOKEN: { status: 409, permanent: true },
  /** Shopify refused a token exchange or refresh, or an access token (4xx): retrying the same request cannot help. */
  SHOPIFY_AUTH_FAILED: { status: 502, permanent: true },
  /** A GraphQL Admin API answer with errors (a query Shopify rejects, a failed bulk operation). */
  SHOPIFY_GRAPHQL_FAILED: { status: 502, permanent: true },
  /** The Admin API did not answer, or answered 5xx: retried with backoff. */
  SHOPIFY_ADMIN_UNAVAILABLE: { status: 503, permanent: false },
  /** A development aid (`smsblossom dev token`) asked for in production. */
  DEVELOPMENT_ONLY: { status: 403, permanent: true },
  INTERNAL: { status: 500, permanent: false },
} as const satisfies Record<string, { status: number; permanent: boolean }>;

export type ErrorCode = keyof typeof ErrorCodes;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  /** True when retrying the same input can never succeed (bad data, unknown queue, ...). */
  readonly permanent: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: { details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.statusCode = ErrorCodes[code].status;
    this.permanent = ErrorCodes[code].permanent;
    this.details = options.details;
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return { error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) } };
  }
}

export function isAppError(err: unknown, code?: ErrorCode): err is AppError {
  return err instanceof AppError && (code === undefined || err.code === code);
}

/**
 * A failure that running the same job again can never cure: an AppError whose code is permanent, any error that says
 * so itself (`permanent: true`, as an SMS provider's refusal does: messages/providers/types.ts), or a value the database
 * refused (SQLSTATE class 22: out of range, malformed, untranslatable). Domain code throws these and knows nothing of
 * the queue; the worker (queue/worker.ts) alone turns them into BullMQ's `UnrecoverableError`.
 */
export function isPermanentFailure(err: unknown): boolean {
  if (err instanceof AppError) return err.permanent;
  if (err !== null && typeof err === 'object' && (err as { permanent?: unknown }).permanent === true) return true;
  return databaseErrorCode(err)?.startsWith('22') ?? false;
}

/** Turns a zod issue list into one line naming each offending field, e.g. `shopId: Required; raw: Expected object`. */
export function describeIssues(issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }>): string {
  return issues
    .map((i) => `${i.path.length ? i.path.map(String).join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

/** The fields of a PostgreSQL error (node-postgres and PGlite both set them) that name things, never values. */
interface DatabaseErrorFields {
  code?: unknown;
  severity?: unknown;
  table?: unknown;
  column?: unknown;
  constraint?: unknown;
  message?: unknown;
}

const SQLSTATE = /^[0-9A-Z]{5}$/;

function databaseErrorOf(err: unknown): DatabaseErrorFields | undefined {
  const e = err as (DatabaseErrorFields & { cause?: unknown; name?: unknown }) | undefined;
  if (!e || typeof e !== 'object') return undefined;
  if (typeof e.code === 'string' && SQLSTATE.test(e.code) && e.severity !== undefined) return e;
  if (e.name === 'DrizzleQueryError' || (typeof e.message === 'string' && e.message.startsWith('Failed query:'))) {
    return databaseErrorOf(e.cause) ?? {};
  }
  return undefined;
}

/**
 * The SQLSTATE of a database error (or of the one a query wrapper carries as `cause`), e.g. `22021`; undefined for
 * anything else.
 */
export function databaseErrorCode(err: unknown): string | undefined {
  const code = databaseErrorOf(err)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * An error's message fit for a log line or a dead letter. A failed query's message carries the SQL and its parameters
 * (drizzle writes `Failed query: … params: <phone>,<e-mail>`) and PostgreSQL quotes the offending value (`invalid
 * input syntax for type integer: "…"`): such messages keep the SQLSTATE and the names of table, column and
 * constraint, and lose every value.
 */
export function safeErrorMessage(err: unknown): string {
  const db = databaseErrorOf(err);
  if (db) {
    const names = (['table', 'column', 'constraint'] as const)
      .filter((k) => typeof db[k] === 'string' && db[k] !== '')
      .map((k) => `${k} ${String(db[k])}`);
    const text = typeof db.message === 'string' ? db.message.replace(/"[^"]*"|'[^']*'/g, '"…"').split('\n')[0]!.slice(0, 200) : 'query failed';
    return `database error${typeof db.code === 'string' ? ` ${db.code}` : ''}: ${text}${names.length ? ` (${names.join(', ')})` : ''}`;
  }
  const message = err instanceof Error ? err.message : String(err);
  // Belt and braces: a wrapper that embeds a failed query's text in its own message.
  const cut = message.indexOf('Failed query:');
  return cut >= 0 ? `${message.slice(0, cut)}database query failed` : message;
}

/** The stack of an error with its first line (the message) replaced by {@link safeErrorMessage}; frames only name code. */
export function safeErrorStack(err: unknown): string | null {
  if (!(err instanceof Error) || !err.stack) return null;
  const frames = err.stack.split('\n').filter((line) => /^\s+at /.test(line));
  return [`${err.name}: ${safeErrorMessage(err)}`, ...frames].join('\n');
}
