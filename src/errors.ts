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
  MISSING_HEADER: { status: 400, permanent: true },
  INVALID_SIGNATURE: { status: 401, permanent: true },
  UNAUTHORIZED: { status: 401, permanent: true },
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
  /** A housekeeping job names a task that does not exist. */
  UNKNOWN_HOUSEKEEPING_TASK: { status: 400, permanent: true },
  REDIS_UNAVAILABLE: { status: 503, permanent: false },
  DATABASE_UNAVAILABLE: { status: 503, permanent: false },
  SERVICE_UNAVAILABLE: { status: 503, permanent: false },
  SHUTTING_DOWN: { status: 503, permanent: false },
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

/** Turns a zod issue list into one line naming each offending field, e.g. `shopId: Required; raw: Expected object`. */
export function describeIssues(issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }>): string {
  return issues
    .map((i) => `${i.path.length ? i.path.map(String).join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}
