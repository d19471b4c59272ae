/** Operator authentication: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

export function operatorGuard(adminToken: string | undefined) {
  const expected = adminToken ? digest(adminToken) : undefined;
  return async (req: FastifyRequest): Promise<void> => {
    if (!expected) throw new AppError('OPERATOR_DISABLED', 'operator endpoints are disabled: set ADMIN_TOKEN to enable them');
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
    if (!token || !timingSafeEqual(digest(token), expected)) {
      throw new AppError('UNAUTHORIZED', 'a valid operator token is required (Authorization: Bearer <ADMIN_TOKEN>)');
    }
  };
}
