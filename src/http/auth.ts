/** Operator authentication: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

export function operatorGuard(adminToken: string | undefined) {
  const expected = adminToken ? digest(adminToken) : undefined;
  return async (req: FastifyRequest): Promise<void> => {
    if (!expected) throw new AppError('OPERATOR_DISABLED', 'operator endpoints are disabled: set ADMIN_TOKEN to enable them');
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is compared as sent.
    const token = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
    if (!token || !timingSafeEqual(digest(token), expected)) {
      throw new AppError('UNAUTHORIZED', 'a valid operator token is required (Authorization: Bearer <ADMIN_TOKEN>)');
    }
  };
}
