/**
 * Access tokens at rest: AES-256-GCM (node:crypto) with a fresh 12-byte IV per token. The stored form is
 * `<key id>:<iv>:<tag>:<ciphertext>` (base64 parts); the key id says which key encrypted it, so after a rotation
 * (TOKEN_ENCRYPTION_KEY new, TOKEN_ENCRYPTION_KEY_PREVIOUS old) tokens written before still open, and each is
 * re-encrypted with the new key the next time it is stored. Pure: keys come from the config.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { TokenKey } from '../config.js';
import { AppError } from '../errors.js';

/** The keys a token may be encrypted with: `current` encrypts, both decrypt. */
export interface TokenKeys {
  current: TokenKey;
  previous?: TokenKey | undefined;
}

const b64 = (b: Buffer) => b.toString('base64');

export function encryptToken(plain: string, keys: TokenKeys): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', Buffer.from(keys.current.keyBase64, 'base64'), iv);
  // The key id is authenticated too: a ciphertext moved under another key id does not open.
  cipher.setAAD(Buffer.from(keys.current.id));
  const data = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return [keys.current.id, b64(iv), b64(cipher.getAuthTag()), b64(data)].join(':');
}

/** Throws AppError TOKEN_UNREADABLE when no configured key matches the stored key id, or the data was altered. */
export function decryptToken(stored: string, keys: TokenKeys): string {
  const [keyId, iv, tag, data] = stored.split(':');
  const key = [keys.current, keys.previous].find((k) => k?.id === keyId);
  if (!key || iv === undefined || tag === undefined || data === undefined) {
    throw new AppError('TOKEN_UNREADABLE', `access token: encrypted with key ${keyId ?? '?'}, which is neither TOKEN_ENCRYPTION_KEY nor TOKEN_ENCRYPTION_KEY_PREVIOUS`);
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', Buffer.from(key.keyBase64, 'base64'), Buffer.from(iv, 'base64'));
    decipher.setAAD(Buffer.from(key.id));
    decipher.setAuthTag(Buffer.from(tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(data, 'base64')), decipher.final()]).toString('utf8');
  } catch {
    throw new AppError('TOKEN_UNREADABLE', `access token: does not decrypt with key ${key.id} (altered or truncated)`);
  }
}

/** The id of the key a stored token was encrypted with. */
export function tokenKeyId(stored: string): string {
  return stored.split(':', 1)[0]!;
}
