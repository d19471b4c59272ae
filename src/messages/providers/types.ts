/**
 * The one interface every SMS provider implements, and the one error it throws. The delivery processor only ever sees
 * a {@link ProviderError}'s `kind`, which decides what happens next: retry with backoff, give up, wait out a rate limit,
 * or reconcile an attempt that may already have reached the provider.
 */

/** One message to hand to a provider. */
export interface SendRequest {
  /** Recipient in E.164 (`+4179...`). */
  to: string;
  text: string;
  /** Sender id: alphanumeric (3–11 characters) or numeric (3–14 digits). */
  from: string;
  /** True when the text needs UCS-2; false sends it as GSM-7. */
  unicode: boolean;
  /** Our message id. The provider echoes it in delivery reports, which is how an ambiguous attempt is reconciled. */
  reference: string;
  /** Delivery-report URL for this message. */
  callbackUrl?: string;
}

export interface SendResult {
  providerMessageId: string;
  /** When the provider accepted the message (its timestamp when it gives a parseable one, else ours). */
  acceptedAt: Date;
  /** Text length as counted by the provider, when it says. */
  textLength: number | null;
}

/**
 * - `transient`: the provider did not take the message; sending again later may succeed.
 * - `permanent`: sending this message again can never succeed (bad number, bad sender, bad credentials).
 * - `rate_limited`: the provider asked us to slow down; wait `retryAfterMs`, then send again.
 * - `ambiguous`: the request may have reached the provider (timeout after it was written, connection reset after it
 *   was sent). Resending blindly could deliver the message twice: reconcile first (reference, delivery report).
 */
export type ProviderErrorKind = 'transient' | 'permanent' | 'rate_limited' | 'ambiguous';

/**
 * The codes a {@link ProviderError} carries, defined once; stored as a failed message's `error_code`, so they are
 * stable. `HTTP_<status>` keeps a status the provider answered that has no code of its own, `MITTO_RESPONSE_<n>` a
 * Mitto `responseCode` we do not know.
 */
export const PROVIDER_ERROR_CODES = [
  /** The provider refused our credentials (HTTP 401/403). */
  'MITTO_AUTH',
  /** Mitto `responseCode` 1: its internal error, the message not sent. */
  'MITTO_INTERNAL_ERROR',
  /** Mitto `responseCode` 2–8: the message itself is refused. */
  'MITTO_INVALID_TYPE',
  'MITTO_EMPTY_MESSAGE',
  'MITTO_INVALID_TEXT',
  'MITTO_EMPTY_SENDER',
  'MITTO_INVALID_SENDER',
  'MITTO_EMPTY_RECEIVER',
  'MITTO_INVALID_RECEIVER',
  /** A 2xx answer without a readable message id. */
  'MITTO_BAD_RESPONSE',
  /** No answer within the client timeout: the message may have been sent. */
  'TIMEOUT',
  /** The connection dropped after the request was written: the message may have been sent. */
  'CONNECTION_RESET',
  /** The provider could not be reached: the message was not sent. */
  'CONNECTION_FAILED',
] as const;

export type ProviderErrorCode = (typeof PROVIDER_ERROR_CODES)[number] | `HTTP_${number}` | `MITTO_RESPONSE_${number}`;

export interface ProviderErrorOptions {
  providerCode?: number;
  httpStatus?: number;
  retryAfterMs?: number;
  cause?: unknown;
}

/** A failed send. Messages never contain the phone number or the text; callers match on `kind` and `code`. */
export class ProviderError extends Error {
  readonly kind: ProviderErrorKind;
  /** Stable code, one of {@link ProviderErrorCode}. */
  readonly code: ProviderErrorCode;
  /** The provider's own result code (Mitto `responseCode`), when it gave one. */
  readonly providerCode: number | undefined;
  readonly httpStatus: number | undefined;
  /** For `rate_limited`: how long the provider asked us to wait. */
  readonly retryAfterMs: number | undefined;

  constructor(kind: ProviderErrorKind, code: ProviderErrorCode, message: string, options: ProviderErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProviderError';
    this.kind = kind;
    this.code = code;
    this.providerCode = options.providerCode;
    this.httpStatus = options.httpStatus;
    this.retryAfterMs = options.retryAfterMs;
  }

  /**
   * Only `permanent` failures are final; every other kind may succeed on a later attempt. The worker reads this flag
   * (`isPermanentFailure` in src/errors.ts) to end a job without retries.
   */
  get permanent(): boolean {
    return this.kind === 'permanent';
  }
}

export function isProviderError(err: unknown, kind?: ProviderErrorKind): err is ProviderError {
  return err instanceof ProviderError && (kind === undefined || err.kind === kind);
}

export interface SmsProvider {
  readonly name: string;
  /** Resolves when the provider accepted the message; rejects with a {@link ProviderError} otherwise. */
  send(req: SendRequest): Promise<SendResult>;
}
