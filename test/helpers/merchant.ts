/** Shopify session tokens for tests, signed the way App Bridge's are (HS256, SHOPIFY_API_SECRET, aud = API key). */
import { SignJWT } from 'jose';
import { SHOPIFY_SECRET } from './system.js';

export const SHOPIFY_API_KEY = 'test-shopify-api-key';

export interface TokenOptions {
  secret?: string;
  aud?: string;
  /** Seconds from now; negative for a token already expired. */
  expiresIn?: number;
  notBeforeIn?: number;
  iss?: string;
  alg?: 'HS256' | 'HS512';
}

export async function sessionToken(shop: string, o: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ dest: `https://${shop}`, sid: 'session-1' })
    .setProtectedHeader({ alg: o.alg ?? 'HS256', typ: 'JWT' })
    .setIssuer(o.iss ?? `https://${shop}/admin`)
    .setAudience(o.aud ?? SHOPIFY_API_KEY)
    .setSubject('42')
    .setIssuedAt(now - 1)
    .setNotBefore(now + (o.notBeforeIn ?? -1))
    .setExpirationTime(now + (o.expiresIn ?? 60))
    .setJti(`jti-${Math.random().toString(36).slice(2)}`)
    .sign(new TextEncoder().encode(o.secret ?? SHOPIFY_SECRET));
}

export async function merchantHeaders(shop: string, o: TokenOptions = {}): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await sessionToken(shop, o)}` };
}

interface ContactsPage {
  items: Array<{ id: number; smsConsent: string }>;
  nextBeforeId: number | null;
}

/**
 * Every contact of a merchant's list, page by page through `GET /api/contacts` (`get` answers one URL): how many, and
 * how many in each consent state. Throws if a contact comes twice.
 */
export async function listAllContacts(get: (url: string) => Promise<ContactsPage>): Promise<{ count: number; byState: Record<string, number> }> {
  const listed = new Map<number, string>();
  for (let beforeId: number | null = null; ; ) {
    const page: ContactsPage = await get(`/api/contacts?limit=200${beforeId ? `&beforeId=${beforeId}` : ''}`);
    for (const c of page.items) {
      if (listed.has(c.id)) throw new Error(`contact ${c.id} listed twice`);
      listed.set(c.id, c.smsConsent);
    }
    if (page.nextBeforeId === null) break;
    beforeId = page.nextBeforeId;
  }
  const byState: Record<string, number> = {};
  for (const state of listed.values()) byState[state] = (byState[state] ?? 0) + 1;
  return { count: listed.size, byState };
}
