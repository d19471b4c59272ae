import { isSupportedCountry, parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';

const COUNTRY_RE = /^[A-Za-z]{2}$/;

/** First candidate that looks like an ISO-3166 alpha-2 code, upper-cased. */
export function pickCountry(...candidates: Array<string | null | undefined>): string | null {
  for (const c of candidates) {
    if (typeof c !== 'string') continue;
    const t = c.trim();
    if (COUNTRY_RE.test(t)) return t.toUpperCase();
  }
  return null;
}

function supportedCountry(hint: string | null | undefined): CountryCode | undefined {
  const code = pickCountry(hint);
  return code !== null && isSupportedCountry(code) ? code : undefined;
}

function parseValid(text: string, country: CountryCode | undefined): string | null {
  const parsed = parsePhoneNumberFromString(text, country ? { defaultCountry: country } : undefined);
  return parsed && parsed.isPossible() && parsed.isValid() ? parsed.number : null;
}

/**
 * Normalises a phone number in any human format to E.164, or null when it is not a possible, valid number.
 * `countryHint` (ISO alpha-2, any case) is only used for numbers written without an international prefix.
 */
export function toE164(raw: string | null | undefined, countryHint?: string | null): string | null {
  try {
    if (typeof raw !== 'string') return null;
    const text = raw.trim();
    if (text === '') return null;
    const country = supportedCountry(countryHint);
    const direct = parseValid(text, country);
    if (direct !== null) return direct;
    // libphonenumber reads a leading "00" as the international prefix only relative to a default country that
    // uses it (not without a hint, not for US/CA where it is 011), yet "00 44 ..." is how most of the world writes it.
    const intl = /^[^\d+]*00\s*([1-9][\s\S]*)$/.exec(text);
    return intl?.[1] !== undefined ? parseValid(`+${intl[1]}`, undefined) : null;
  } catch {
    return null;
  }
}
