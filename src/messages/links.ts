/** Links in messages. Pure. */

/** The link with the UTM tags that attribute a visit (and the sale) to SMS; a malformed URL is left as it is. */
export function withUtm(url: string | null | undefined, campaign: string): string | null {
  if (!url) return null;
  try {
    const u = new URL(url);
    u.searchParams.set('utm_source', 'sms');
    u.searchParams.set('utm_medium', 'sms');
    u.searchParams.set('utm_campaign', campaign);
    return u.toString();
  } catch {
    return url;
  }
}
