/**
 * Message templates: Liquid (liquidjs) with SMS-specific filters. Pure: no file system, no clock unless `now` is
 * omitted, no globals.
 *
 * - Syntax errors, unknown filters and unknown tags are template errors, found when the template is saved
 *   (`validate`) and again, cached, when rendering. `include`, `render` and `layout` are removed: templates are
 *   self-contained and must not reach the file system.
 * - A missing variable renders empty and adds `missing variable: <path>` to `warnings`. "Missing" means an output
 *   `{{ path ... }}` whose variable is undefined, null or "" and whose output is empty; so `{{ x | default: "there" }}`
 *   and `{% if x %}` do not warn, while `{{ x }}` and `{{ x | upcase }}` do.
 * - Filters (besides the Liquid builtins such as `default`, `truncate`, `upcase`, `downcase`):
 *   - `money`  `{{ order.totalPrice | money }}` / `{{ order.totalPrice | money: order.currency }}`: a number or
 *     numeric string formatted with `Intl.NumberFormat` in the render locale. Currency: the filter argument when it is
 *     a 3-letter code, else the `currency` render option, else a plain 2-decimal number (with a warning).
 *   - `date`   strftime-style formats as in Shopify Liquid (`%b %-d`, `%H:%M`, `%A`, `%Y-%m-%d`, `%-I:%M %p`, ...), in
 *     the `timezone` render option (default UTC) and `locale` (month/day names). An optional second argument
 *     overrides the zone: `{{ x | date: "%H:%M", "Europe/Berlin" }}`. Without a format: the locale's medium date
 *     ("Dec 5, 2024"). Input: Date, ISO-8601/RFC 2822/SQL string (one without an offset is local time in that zone),
 *     Unix seconds, or "now"/"today". `%Z` is the zone's short name as ICU gives it for the locale ("EST", or
 *     "GMT+1" for Berlin in en-US).
 * - The rendered text is trimmed (leading/trailing whitespace would be billed).
 * - Parsed templates are cached by template text in a bounded LRU.
 */
import { DateTime } from 'luxon';
import {
  Liquid,
  LiquidError,
  Output,
  ParseError,
  Parser,
  TypeGuards,
  toValue,
  type Context,
  type Emitter,
  type Template,
  type TopLevelToken,
} from 'liquidjs';
import { AppError } from '../errors.js';
import { isValidTimezone } from '../rules/quietHours.js';

export interface RenderOptions {
  /** IANA zone for the `date` filter. Default UTC; an invalid zone falls back to UTC with a warning. */
  timezone?: string | null;
  /** BCP 47 locale for `money` and `date`. Default `en-US`; an invalid locale falls back with a warning. */
  locale?: string | null;
  /** ISO 4217 code used by `money` when the filter has no argument (usually the shop's currency). */
  currency?: string | null;
  /** What `"now"` means to the `date` filter. Default: the current time. */
  now?: Date;
}

export interface RenderResult {
  text: string;
  warnings: string[];
}

export interface Renderer {
  /** Throws AppError TEMPLATE_INVALID (with liquid's message) when the template does not parse. */
  validate(template: string): void;
  /** Throws AppError TEMPLATE_INVALID for a template that does not parse, TEMPLATE_RENDER_FAILED if rendering fails. */
  render(template: string, vars: Record<string, unknown>, options?: RenderOptions): Promise<RenderResult>;
  /** One template for many sets of variables (a campaign page), the results in their order; rejects with the first failure. */
  renderMany(template: string, items: readonly RenderItem[]): Promise<RenderResult[]>;
}

/** One render of {@link Renderer.renderMany}. */
export interface RenderItem {
  vars: Record<string, unknown>;
  options?: RenderOptions;
}

export interface RendererOptions {
  /** Parsed templates kept in memory. Default 500. */
  cacheSize?: number;
  /** Longer templates are rejected. Default 10 000 characters. */
  maxTemplateLength?: number;
  /** Render time limit in ms (liquidjs `renderLimit`), which is what stops a runaway loop. Default 1000. */
  renderLimitMs?: number;
  /** Allocation budget per call (liquidjs `memoryLimit`). Default 1e7. */
  memoryLimit?: number;
}

export const DEFAULT_OPT_OUT_FOOTER = 'Reply STOP to unsubscribe';
const DEFAULT_LOCALE = 'en-US';
const DEFAULT_TIMEZONE = 'UTC';
const NUMERIC = /^\s*-?(\d+(\.\d*)?|\.\d+)\s*$/;
const VARIABLE_PATH = /^[A-Za-z_][\w-]*\??(?:\.[A-Za-z_][\w-]*\??|\[\d+\])*$/;
const LITERALS = new Set(['nil', 'null', 'true', 'false', 'empty', 'blank']);
const REMOVED_TAGS = ['include', 'render', 'layout'];

// ---- per-render state, reached by filters and outputs through the render's globals under a symbol key
// (templates can only name string keys, so they cannot see it) ----

const STATE = Symbol('smsblossom.render');

/** What liquidjs binds `this` to in a filter (its FilterImpl, not exported from the package root). */
interface FilterThis {
  context: Context;
}

interface RenderState {
  warnings: Set<string>;
  timezone: string;
  locale: string;
  currency: string | null;
  now: Date;
}

function stateOf(ctx: Context): RenderState | undefined {
  return (ctx.globals as unknown as Record<symbol, RenderState | undefined>)[STATE];
}

function warn(ctx: Context, message: string): void {
  stateOf(ctx)?.warnings.add(message);
}

function isBlank(v: unknown): boolean {
  return v === undefined || v === null || v === '';
}

/**
 * An output `{{ ... }}` that records a warning when it renders a missing variable as empty. `render` mirrors
 * liquidjs 10's `Output.render` (evaluate the filtered value, write it); the missing-variable tests in
 * test/unit/render.test.ts fail if an upgrade changes that contract.
 */
class TrackedOutput extends Output {
  private readonly variable: string | null;

  constructor(token: ConstructorParameters<typeof Output>[0], liquid: Liquid) {
    super(token, liquid);
    const head = (token.content.split('|')[0] ?? '').replace(/^\s*-/, '').replace(/-\s*$/, '').trim();
    this.variable = VARIABLE_PATH.test(head) && !LITERALS.has(head) ? head : null;
  }

  override *render(ctx: Context, emitter: Emitter): IterableIterator<unknown> {
    const val: unknown = yield toValue(yield this.value.value(ctx, false));
    if (this.variable !== null && isBlank(val)) {
      const initial: unknown = yield this.value.initial.evaluate(ctx, false);
      if (isBlank(initial)) warn(ctx, `missing variable: ${this.variable}`);
    }
    emitter.write(val);
  }
}

class TrackingParser extends Parser {
  constructor(private readonly owner: Liquid) {
    super(owner);
  }

  override parseToken(token: TopLevelToken, remainTokens: TopLevelToken[]): ReturnType<Parser['parseToken']> {
    if (!TypeGuards.isOutputToken(token)) return super.parseToken(token, remainTokens);
    try {
      return new TrackedOutput(token, this.owner);
    } catch (e) {
      if (LiquidError.is(e)) throw e;
      throw new ParseError(e instanceof Error ? e : new Error(String(e)), token);
    }
  }
}

/** liquidjs builds a fresh Parser per `parse`; this one builds the tracking parser (tags parse children through it). */
class SmsLiquid extends Liquid {
  override parse(html: string, filepath?: string): Template[] {
    return new TrackingParser(this).parse(html, filepath);
  }
}

// ---- filters ----

function toNumber(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && NUMERIC.test(v)) return Number(v);
  return null;
}

function currencyCode(v: unknown): string | null {
  return typeof v === 'string' && /^[A-Za-z]{3}$/.test(v.trim()) ? v.trim().toUpperCase() : null;
}

/** Instants stay instants; a string without an offset is read as wall-clock time in `zone`. */
function toDateTime(value: unknown, now: Date, zone: string): DateTime | null {
  if (value instanceof Date) return DateTime.fromJSDate(value);
  if (typeof value === 'number') return Number.isFinite(value) ? DateTime.fromSeconds(value) : null;
  if (typeof value !== 'string') return null;
  const s = value.trim();
  if (s === 'now' || s === 'today') return DateTime.fromJSDate(now);
  if (/^-?\d+$/.test(s)) return DateTime.fromSeconds(Number(s));
  for (const parse of [DateTime.fromISO, DateTime.fromRFC2822, DateTime.fromSQL]) {
    const dt = parse(s, { zone, setZone: true });
    if (dt.isValid) return dt;
  }
  return null;
}

type Pad = '0' | ' ' | '';

function num(n: number, width: number, defaultPad: Pad, flag: string): string {
  const pad: Pad = flag === '-' ? '' : flag === '_' ? ' ' : flag === '0' ? '0' : defaultPad;
  const s = String(Math.abs(n));
  return (n < 0 ? '-' : '') + (pad === '' ? s : s.padStart(width, pad));
}

function hour12(dt: DateTime): number {
  return dt.hour % 12 === 0 ? 12 : dt.hour % 12;
}

type Conversion = (dt: DateTime, flag: string) => string;

const name =
  (token: string): Conversion =>
  (dt, flag) => {
    const s = dt.toFormat(token);
    return flag === '^' ? s.toLocaleUpperCase(dt.locale ?? undefined) : s;
  };

/** strftime conversions (the set Shopify/Ruby Liquid documents); flags `-` no padding, `_` spaces, `0` zeros, `^` upper. */
const CONVERSIONS: Record<string, Conversion> = {
  a: name('ccc'),
  A: name('cccc'),
  b: name('LLL'),
  h: name('LLL'),
  B: name('LLLL'),
  d: (dt, f) => num(dt.day, 2, '0', f),
  e: (dt, f) => num(dt.day, 2, ' ', f),
  j: (dt, f) => num(dt.ordinal, 3, '0', f),
  m: (dt, f) => num(dt.month, 2, '0', f),
  y: (dt, f) => num(dt.year % 100, 2, '0', f),
  Y: (dt) => String(dt.year),
  C: (dt, f) => num(Math.floor(dt.year / 100), 2, '0', f),
  H: (dt, f) => num(dt.hour, 2, '0', f),
  k: (dt, f) => num(dt.hour, 2, ' ', f),
  I: (dt, f) => num(hour12(dt), 2, '0', f),
  l: (dt, f) => num(hour12(dt), 2, ' ', f),
  M: (dt, f) => num(dt.minute, 2, '0', f),
  S: (dt, f) => num(dt.second, 2, '0', f),
  L: (dt, f) => num(dt.millisecond, 3, '0', f),
  p: (dt) => (dt.hour < 12 ? 'AM' : 'PM'),
  P: (dt) => (dt.hour < 12 ? 'am' : 'pm'),
  u: (dt) => String(dt.weekday),
  w: (dt) => String(dt.weekday % 7),
  s: (dt) => String(Math.floor(dt.toSeconds())),
  z: (dt) => dt.toFormat('ZZZ'),
  Z: (dt) => dt.toFormat('ZZZZ'),
  F: (dt) => dt.toFormat('yyyy-MM-dd'),
  T: (dt) => dt.toFormat('HH:mm:ss'),
  R: (dt) => dt.toFormat('HH:mm'),
  D: (dt) => dt.toFormat('MM/dd/yy'),
  c: (dt) => dt.toLocaleString(DateTime.DATETIME_MED),
  x: (dt) => dt.toLocaleString(DateTime.DATE_SHORT),
  X: (dt) => dt.toLocaleString(DateTime.TIME_SIMPLE),
  n: () => '\n',
  t: () => '\t',
  '%': () => '%',
};

/** Formats with strftime conversions; unknown conversions are left as written. */
export function strftime(dt: DateTime, format: string): string {
  return format.replace(/%([-_0^]?)([A-Za-z%])/g, (match, flag: string, conv: string) => {
    const f = CONVERSIONS[conv];
    return f ? f(dt, flag) : match;
  });
}

// ---- renderer ----

class Lru<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max: number) {}

  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
  }

  get size(): number {
    return this.map.size;
  }
}

function resolveLocale(locale: string | null | undefined, warnings: Set<string>): string {
  if (locale === null || locale === undefined || locale.trim() === '') return DEFAULT_LOCALE;
  try {
    const [canonical] = Intl.getCanonicalLocales(locale.trim().replace(/_/g, '-'));
    if (canonical) return canonical;
  } catch {
    // fall through
  }
  warnings.add(`invalid locale: ${locale}`);
  return DEFAULT_LOCALE;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function createRenderer(options: RendererOptions = {}): Renderer {
  const maxLength = options.maxTemplateLength ?? 10_000;
  const cache = new Lru<Template[] | AppError>(options.cacheSize ?? 500);
  const formatters = new Lru<Intl.NumberFormat>(64);

  const liquid = new SmsLiquid({
    strictFilters: true,
    strictVariables: false,
    ownPropertyOnly: true,
    jsTruthy: false,
    outputEscape: undefined,
    renderLimit: options.renderLimitMs ?? 1000,
    memoryLimit: options.memoryLimit ?? 1e7,
    parseLimit: maxLength,
  });
  for (const tag of REMOVED_TAGS) delete liquid.tags[tag];

  function numberFormat(locale: string, currency: string | null): Intl.NumberFormat {
    const key = `${locale}|${currency ?? ''}`;
    let f = formatters.get(key);
    if (!f) {
      f = currency
        ? new Intl.NumberFormat(locale, { style: 'currency', currency })
        : new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
      formatters.set(key, f);
    }
    return f;
  }

  liquid.registerFilter('money', function money(this: FilterThis, value: unknown, currencyArg?: unknown): string {
    if (isBlank(value)) return '';
    const n = toNumber(value);
    if (n === null) {
      warn(this.context, `money: not a number: ${String(value)}`);
      return String(value);
    }
    const st = stateOf(this.context);
    const locale = st?.locale ?? DEFAULT_LOCALE;
    const currency = currencyCode(currencyArg) ?? st?.currency ?? null;
    if (currency === null) warn(this.context, 'money: no currency');
    return numberFormat(locale, currency).format(n);
  });

  liquid.registerFilter('date', function date(this: FilterThis, value: unknown, format?: unknown, zoneArg?: unknown): string {
    if (isBlank(value)) return '';
    const st = stateOf(this.context);
    let zone = st?.timezone ?? DEFAULT_TIMEZONE;
    if (typeof zoneArg === 'string' && zoneArg.trim() !== '') {
      if (isValidTimezone(zoneArg)) zone = zoneArg;
      else warn(this.context, `date: invalid timezone: ${zoneArg}`);
    }
    const dt = toDateTime(value, st?.now ?? new Date(), zone);
    if (dt === null || !dt.isValid) {
      warn(this.context, `date: not a date: ${String(value)}`);
      return String(value);
    }
    const local = dt.setZone(zone).setLocale(st?.locale ?? DEFAULT_LOCALE);
    return typeof format === 'string' && format !== '' ? strftime(local, format) : local.toLocaleString(DateTime.DATE_MED);
  });

  function parse(template: string): Template[] {
    const hit = cache.get(template);
    if (hit instanceof AppError) throw hit;
    if (hit) return hit;
    let result: Template[] | AppError;
    if (template.length > maxLength) {
      result = new AppError('TEMPLATE_INVALID', `template is longer than ${maxLength} characters`, {
        details: { length: template.length, max: maxLength },
      });
    } else {
      try {
        result = liquid.parse(template);
      } catch (err) {
        result = new AppError('TEMPLATE_INVALID', errorMessage(err), { cause: err });
      }
    }
    // Failures are cached too: a broken template on a busy automation would otherwise be re-parsed per message.
    cache.set(template, result);
    if (result instanceof AppError) throw result;
    return result;
  }

  const renderer: Renderer = {
    validate(template) {
      parse(template);
    },

    async renderMany(template, items) {
      const out: RenderResult[] = [];
      for (const item of items) out.push(await renderer.render(template, item.vars, item.options));
      return out;
    },

    async render(template, vars, opts = {}) {
      const tpl = parse(template);
      const warnings = new Set<string>();
      let timezone = DEFAULT_TIMEZONE;
      if (opts.timezone !== undefined && opts.timezone !== null && opts.timezone !== '') {
        if (isValidTimezone(opts.timezone)) timezone = opts.timezone;
        else warnings.add(`invalid timezone: ${opts.timezone}`);
      }
      const state: RenderState = {
        warnings,
        timezone,
        locale: resolveLocale(opts.locale, warnings),
        currency: currencyCode(opts.currency),
        now: opts.now ?? new Date(),
      };
      let out: unknown;
      try {
        out = await liquid.render(tpl, vars, { globals: { [STATE]: state } });
      } catch (err) {
        throw new AppError('TEMPLATE_RENDER_FAILED', errorMessage(err), { cause: err });
      }
      return { text: String(out ?? '').trim(), warnings: [...warnings] };
    },
  };
  return renderer;
}

/**
 * Appends the opt-out footer on its own line, unless the text already carries it (compared case- and
 * whitespace-insensitively).
 */
export function appendOptOutFooter(text: string, footer: string = DEFAULT_OPT_OUT_FOOTER): string {
  const f = footer.trim();
  if (f === '') return text;
  const norm = (s: string): string => s.replace(/\s+/g, ' ').toLowerCase();
  if (norm(text).includes(norm(f))) return text;
  const body = text.trimEnd();
  return body === '' ? f : `${body}\n${f}`;
}
