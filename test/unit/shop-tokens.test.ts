/** Access tokens at rest (AES-256-GCM with a key id, rotation) and the settings behind them (issue 17). */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { decryptToken, encryptToken, tokenKeyId } from '../../src/shopify/tokens.js';

const prod = { NODE_ENV: 'production', SHOPIFY_API_SECRET: 's', PUBLIC_URL: 'https://sms.example', MITTO_API_KEY: 'k' };

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    return err as ConfigError;
  }
  throw new Error('loadConfig did not throw');
}

describe('access tokens at rest', () => {
  const keyA = randomBytes(32);
  const keyB = randomBytes(32);
  const a = loadConfig({ TOKEN_ENCRYPTION_KEY: keyA.toString('base64') }).shopifyAdmin;
  const rotated = loadConfig({ TOKEN_ENCRYPTION_KEY: keyB.toString('hex'), TOKEN_ENCRYPTION_KEY_PREVIOUS: keyA.toString('base64') }).shopifyAdmin;

  it('encrypts with a fresh IV under the current key id; the token is nowhere in the stored form', () => {
    const token = 'shpat_0123456789abcdef0123456789abcdef';
    const one = encryptToken(token, { current: a.tokenKey });
    const two = encryptToken(token, { current: a.tokenKey });
    expect(one).not.toBe(two);
    expect(one).not.toContain(token);
    expect(Buffer.from(one.split(':')[3]!, 'base64').toString('utf8')).not.toContain('shpat_');
    expect(tokenKeyId(one)).toBe(a.tokenKey.id);
    expect(decryptToken(one, { current: a.tokenKey })).toBe(token);
  });

  it('decrypts with the previous key during a rotation, and names the key when none matches', () => {
    const old = encryptToken('shpat_old', { current: a.tokenKey });
    expect(rotated.previousTokenKey?.id).toBe(a.tokenKey.id);
    expect(decryptToken(old, { current: rotated.tokenKey, previous: rotated.previousTokenKey })).toBe('shpat_old');
    expect(() => decryptToken(old, { current: rotated.tokenKey })).toThrow(expect.objectContaining({ code: 'TOKEN_UNREADABLE', message: expect.stringContaining(a.tokenKey.id) }));
  });

  it('refuses an altered ciphertext or a ciphertext moved under another key id', () => {
    const stored = encryptToken('shpat_x', { current: a.tokenKey });
    const [id, iv, tag, data] = stored.split(':');
    const flipped = Buffer.from(data!, 'base64');
    flipped[0]! ^= 1;
    expect(() => decryptToken([id, iv, tag, flipped.toString('base64')].join(':'), { current: a.tokenKey })).toThrow(expect.objectContaining({ code: 'TOKEN_UNREADABLE' }));
    const keys = { current: rotated.tokenKey, previous: { id: rotated.tokenKey.id.replace(/./, (c) => (c === '0' ? '1' : '0')), keyBase64: a.tokenKey.keyBase64 } };
    expect(() => decryptToken([keys.previous.id, iv, tag, data].join(':'), keys)).toThrow(expect.objectContaining({ code: 'TOKEN_UNREADABLE' }));
  });
});

describe('token and Admin API settings', () => {
  it('derives a development key from the Shopify secret, and requires TOKEN_ENCRYPTION_KEY in production', () => {
    expect(loadConfig({}).shopifyAdmin.tokenKey.id).toMatch(/^[0-9a-f]{8}$/);
    expect(loadConfig({ SHOPIFY_API_SECRET: 'other' }).shopifyAdmin.tokenKey.id).not.toBe(loadConfig({}).shopifyAdmin.tokenKey.id);
    expect(configError(prod).variable).toBe('TOKEN_ENCRYPTION_KEY');
    expect(loadConfig({ ...prod, TOKEN_ENCRYPTION_KEY: 'ab'.repeat(32) }).shopifyAdmin.tokenKey.id).toMatch(/^[0-9a-f]{8}$/);
  });

  it('takes 32 bytes only, naming the variable', () => {
    expect(configError({ TOKEN_ENCRYPTION_KEY: 'short' }).variable).toBe('TOKEN_ENCRYPTION_KEY');
    expect(configError({ TOKEN_ENCRYPTION_KEY_PREVIOUS: randomBytes(16).toString('base64') }).variable).toBe('TOKEN_ENCRYPTION_KEY_PREVIOUS');
  });

  it('SHOPIFY_ADMIN_BASE_URL points the Admin API at a sandbox, and is refused in production', () => {
    expect(loadConfig({ SHOPIFY_ADMIN_BASE_URL: 'http://127.0.0.1:4321/' }).shopifyAdmin.baseUrl).toBe('http://127.0.0.1:4321');
    expect(loadConfig({}).shopifyAdmin.baseUrl).toBeUndefined();
    const err = configError({ ...prod, TOKEN_ENCRYPTION_KEY: 'ab'.repeat(32), SHOPIFY_ADMIN_BASE_URL: 'http://127.0.0.1:4321' });
    expect(err.variable).toBe('SHOPIFY_ADMIN_BASE_URL');
    expect(err.message).toMatch(/refused when NODE_ENV=production/);
  });

  it('tests exchange tokens only with a sandbox to exchange them with', () => {
    expect(loadConfig({ NODE_ENV: 'test' }).shopifyAdmin.tokenExchange).toBe(false);
    expect(loadConfig({ NODE_ENV: 'test', SHOPIFY_ADMIN_BASE_URL: 'http://127.0.0.1:4321' }).shopifyAdmin.tokenExchange).toBe(true);
    expect(loadConfig({}).shopifyAdmin.tokenExchange).toBe(true);
  });
});
