/**
 * Failed operator authentications, counted per client IP in Redis (shared by every API process): a wrong
 * `ADMIN_TOKEN` on any `/admin/*` or operator route, or a wrong token at `POST /admin/login`. Past
 * {@link OPERATOR_FAILURES_MAX} in a window, that address is refused (429) on every operator route, whatever token it
 * sends, until the window ends — so the token cannot be guessed at the general rate limit on some other route.
 * When Redis does not answer, nobody is locked out (the general rate limit still applies).
 */
import { AppError } from '../errors.js';
import type { AppDeps } from './app.js';
import { operatorGuard, type OperatorGuardOptions } from './auth.js';
import { createWindowCounter, retrySeconds, type WindowCounter } from './windowCounter.js';

/** Failed operator authentications per IP per window (the login form's limit, on every operator route). */
export const OPERATOR_FAILURES_MAX = 10;

export interface OperatorLockout {
  /** Throws AppError RATE_LIMITED when `ip` has used up its failures in this window. */
  check(ip: string): Promise<void>;
  /** Counts one failed authentication from `ip`. */
  failed(ip: string): Promise<void>;
}

export function createOperatorLockout(counter: WindowCounter, max = OPERATOR_FAILURES_MAX): OperatorLockout {
  return {
    async check(ip) {
      const { count, resetMs } = await counter.peek(ip);
      if (count >= max) {
        throw new AppError(
          'RATE_LIMITED',
          `too many failed operator authentications from this address: at most ${max} per ${Math.round(counter.windowMs / 1000)} s; retry in ${retrySeconds(resetMs)} s`,
        );
      }
    },
    async failed(ip) {
      await counter.hit(ip);
    },
  };
}

const lockouts = new WeakMap<AppDeps, OperatorLockout>();

/** The app's lockout, one per app (routes registered in different plugins share it). */
export function operatorLockout(deps: AppDeps): OperatorLockout {
  let l = lockouts.get(deps);
  if (!l) {
    l = createOperatorLockout(createWindowCounter(deps.queues.connection, `${deps.config.redis.prefix}:operator-auth-failures:`, deps.config.rateLimit.windowMs));
    lockouts.set(deps, l);
  }
  return l;
}

/** The operator guard of a route scope, with this app's lockout. */
export function guardOperators(deps: AppDeps, options: Omit<OperatorGuardOptions, 'lockout'> = {}) {
  return operatorGuard(deps.config.adminToken, { ...options, lockout: operatorLockout(deps) });
}
