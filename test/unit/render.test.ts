import { describe, it, expect, vi, afterEach } from 'vitest';
import { Parser } from 'liquidjs';
import { appendOptOutFooter, createRenderer, DEFAULT_OPT_OUT_FOOTER } from '../../src/messages/render.js';
import { AppError, isAppError } from '../../src/errors.js';

const vars = {
  shop: { name: 'Blossom & Co' },
  customer: { firstName: 'Ada', lastName: null, tags: ['vip'] },
  order: {
    name: '#1001',
    totalPrice: '49.00',
    currency: 'EUR',
    createdAt: '2024-12-05T15:30:00Z',
    statusUrl: 'https://shop.example/orders/1',
    lineItems: [
      { title: 'Rose bouquet', sku: 'ROSE-1' },
      { title: 'Vase', sku: null },
    ],
  },
};

async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<AppError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('expected an AppError');
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('render: variables', () => {
  const r = createRenderer();

  it('renders a realistic order template', async () => {
    const out = await r.render(
      'Hi {{ customer.firstName }}, thanks for order {{ order.name }} ({{ order.totalPrice | money: order.currency }}) at {{ shop.name }}. Track: {{ order.statusUrl }}',
      vars,
    );
    expect(out).toEqual({
      text: 'Hi Ada, thanks for order #1001 (€49.00) at Blossom & Co. Track: https://shop.example/orders/1',
      warnings: [],
    });
  });

  it('does not HTML-escape (SMS is plain text)', async () => {
    expect((await r.render('{{ shop.name }} <3', vars)).text).toBe('Blossom & Co <3');
  });

  it('a missing or null variable renders empty and is reported, without throwing', async () => {
    const out = await r.render('Hi {{ customer.lastName }}{{ customer.nickname }}! {{ checkout.recoveryUrl }}', vars);
    expect(out.text).toBe('Hi !');
    expect(out.warnings).toEqual([
      'missing variable: customer.lastName',
      'missing variable: customer.nickname',
      'missing variable: checkout.recoveryUrl',
    ]);
  });

  it('reports each missing variable once', async () => {
    const out = await r.render('{{ a.b }} {{ a.b }} {% for li in order.lineItems %}[{{ li.sku }}]{% endfor %}', vars);
    expect(out.text).toBe('[ROSE-1][]');
    expect(out.warnings).toEqual(['missing variable: a.b', 'missing variable: li.sku']);
  });

  it('does not report a variable that is handled: default filter, if, literals', async () => {
    const out = await r.render(
      'Hi {{ customer.lastName | default: "there" }}{% if customer.nickname %} {{ customer.nickname }}{% endif %}{{ nil }}{{ "" }}',
      vars,
    );
    expect(out).toEqual({ text: 'Hi there', warnings: [] });
  });

  it('reports a missing variable through a filter that keeps it empty', async () => {
    const out = await r.render('[{{ customer.lastName | upcase }}][{{- customer.nickname -}}]', vars);
    expect(out.text).toBe('[][]');
    expect(out.warnings).toEqual(['missing variable: customer.lastName', 'missing variable: customer.nickname']);
  });

  it('zero and false are values, not missing', async () => {
    expect(await r.render('{{ n }} {{ f }}', { n: 0, f: false })).toEqual({ text: '0 false', warnings: [] });
  });

  it('reads own properties only', async () => {
    const out = await r.render('[{{ customer.constructor }}][{{ order.toString }}]', vars);
    expect(out.text).toBe('[][]');
  });

  it('trims the rendered text', async () => {
    expect((await r.render('\n  {% if true %}\nHello\n{% endif %}  \n', {})).text).toBe('Hello');
  });
});

describe('render: builtin filters', () => {
  const r = createRenderer();

  it('default, truncate, upcase, downcase', async () => {
    const t = '{{ x | default: "friend" }}|{{ long | truncate: 10 }}|{{ customer.firstName | upcase }}|{{ "ROSE" | downcase }}';
    expect((await r.render(t, { ...vars, long: 'Spring collection is here' })).text).toBe('friend|Spring ...|ADA|rose');
  });
});

describe('render: money', () => {
  const r = createRenderer();

  it('formats with the currency argument', async () => {
    expect((await r.render('{{ p | money: "EUR" }}', { p: '49.00' })).text).toBe('€49.00');
    expect((await r.render('{{ p | money: "USD" }}', { p: '49' })).text).toBe('$49.00');
    expect((await r.render('{{ p | money: "usd" }}', { p: 1234.5 })).text).toBe('$1,234.50');
    expect((await r.render('{{ p | money: "JPY" }}', { p: '4900' })).text).toBe('¥4,900');
  });

  it('falls back to the currency option; the argument wins when both are given', async () => {
    expect((await r.render('{{ p | money }}', { p: '49.00' }, { currency: 'USD' })).text).toBe('$49.00');
    expect((await r.render('{{ p | money: c }}', { p: '49.00', c: 'EUR' }, { currency: 'USD' })).text).toBe('€49.00');
    // a null currency argument (order without currency) uses the option
    expect((await r.render('{{ p | money: c }}', { p: '49.00', c: null }, { currency: 'GBP' })).text).toBe('£49.00');
  });

  it('uses the locale', async () => {
    expect((await r.render('{{ p | money: "EUR" }}', { p: '49.00' }, { locale: 'de-DE' })).text).toBe('49,00\u00a0€');
    expect((await r.render('{{ p | money: "EUR" }}', { p: '49.00' }, { locale: 'fr' })).text).toBe('49,00\u00a0€');
  });

  it('without any currency prints a plain amount and warns', async () => {
    expect(await r.render('{{ p | money }}', { p: '49' })).toEqual({ text: '49.00', warnings: ['money: no currency'] });
  });

  it('a non-number is printed as is, with a warning; a missing one renders empty', async () => {
    expect(await r.render('{{ p | money: "EUR" }}', { p: 'free' })).toEqual({ text: 'free', warnings: ['money: not a number: free'] });
    expect(await r.render('[{{ order.subtotal | money: "EUR" }}]', vars)).toEqual({
      text: '[]',
      warnings: ['missing variable: order.subtotal'],
    });
  });

  it('an invalid locale falls back to en-US with a warning', async () => {
    const out = await r.render('{{ p | money: "EUR" }}', { p: 5 }, { locale: 'not a locale!' });
    expect(out).toEqual({ text: '€5.00', warnings: ['invalid locale: not a locale!'] });
  });
});

describe('render: date', () => {
  const r = createRenderer();
  const at = { d: '2024-12-05T15:30:00Z', summer: '2024-07-05T15:30:00Z' };

  it('strftime formats in the timezone option', async () => {
    expect((await r.render('{{ d | date: "%b %d" }}', at)).text).toBe('Dec 05');
    expect((await r.render('{{ d | date: "%b %-d, %Y %H:%M" }}', at, { timezone: 'Europe/Berlin' })).text).toBe('Dec 5, 2024 16:30');
    expect((await r.render('{{ d | date: "%-I:%M %p %Z" }}', at, { timezone: 'America/New_York' })).text).toBe('10:30 AM EST');
    expect((await r.render('{{ summer | date: "%-I:%M %P %Z" }}', at, { timezone: 'America/New_York' })).text).toBe('11:30 am EDT');
    expect((await r.render('{{ d | date: "%A %e|%j|%m/%y|%F %T|%z|%%|%q" }}', at)).text).toBe('Thursday  5|340|12/24|2024-12-05 15:30:00|+0000|%|%q');
  });

  it('a timestamp without an offset is wall-clock time in the zone', async () => {
    const t = '{{ d | date: "%H:%M %z" }}';
    expect((await r.render(t, { d: '2024-12-05 10:00' }, { timezone: 'Europe/Berlin' })).text).toBe('10:00 +0100');
    expect((await r.render(t, { d: '2024-12-05T10:00:00' }, { timezone: 'America/New_York' })).text).toBe('10:00 -0500');
    expect((await r.render(t, { d: '2024-12-05T10:00:00' })).text).toBe('10:00 +0000');
  });

  it('date crosses midnight with the zone', async () => {
    expect((await r.render('{{ d | date: "%a %-d" }}', { d: '2024-12-05T23:30:00Z' }, { timezone: 'Asia/Tokyo' })).text).toBe('Fri 6');
  });

  it('an explicit zone argument overrides the option', async () => {
    expect((await r.render('{{ d | date: "%H:%M", "Asia/Kolkata" }}', at, { timezone: 'Europe/Berlin' })).text).toBe('21:00');
  });

  it('without a format: the locale medium date', async () => {
    expect((await r.render('{{ d | date }}', at)).text).toBe('Dec 5, 2024');
    expect((await r.render('{{ d | date }}', at, { locale: 'de' })).text).toBe('5. Dez. 2024');
  });

  it('localises names', async () => {
    expect((await r.render('{{ d | date: "%A %-d %B" }}', at, { locale: 'fr', timezone: 'Europe/Paris' })).text).toBe('jeudi 5 décembre');
    expect((await r.render('{{ d | date: "%^b" }}', at)).text).toBe('DEC');
  });

  it('accepts Date, Unix seconds and now', async () => {
    expect((await r.render('{{ d | date: "%F" }}', { d: new Date('2024-01-02T03:04:05Z') })).text).toBe('2024-01-02');
    expect((await r.render('{{ d | date: "%F %T" }}', { d: 1_700_000_000 })).text).toBe('2023-11-14 22:13:20');
    const now = new Date('2030-06-01T12:00:00Z');
    expect((await r.render('{{ "now" | date: "%Y-%m-%d %H:%M" }}', {}, { now, timezone: 'Europe/Berlin' })).text).toBe('2030-06-01 14:00');
  });

  it('a non-date is printed as is with a warning; missing renders empty with a warning', async () => {
    expect(await r.render('{{ d | date: "%F" }}', { d: 'soon' })).toEqual({ text: 'soon', warnings: ['date: not a date: soon'] });
    expect(await r.render('[{{ nope | date: "%F" }}]', {})).toEqual({ text: '[]', warnings: ['missing variable: nope'] });
  });

  it('an invalid timezone option falls back to UTC with a warning', async () => {
    expect(await r.render('{{ d | date: "%H:%M" }}', at, { timezone: 'Moon/Base' })).toEqual({
      text: '15:30',
      warnings: ['invalid timezone: Moon/Base'],
    });
  });
});

describe('validate', () => {
  const r = createRenderer();

  it('accepts good templates', () => {
    expect(() => r.validate('Hi {{ customer.firstName | default: "there" }}! {% if order %}{{ order.name }}{% endif %}')).not.toThrow();
    expect(() => r.validate('')).not.toThrow();
  });

  it.each([
    ['{{ customer.firstName ', /not closed/],
    ['{% if order %}unterminated', /not closed/],
    ['{{ x | nope }}', /undefined filter: nope/],
    ['{% frobnicate %}', /tag "frobnicate" not found/],
    ['{% include "secrets" %}', /tag "include" not found/],
    ['{% render "x" %}', /tag "render" not found/],
    ['{% layout "x" %}', /tag "layout" not found/],
  ])('rejects %j with TEMPLATE_INVALID and liquid message', async (tpl, message) => {
    const err = await errorOf(() => r.validate(tpl));
    expect(err.code).toBe('TEMPLATE_INVALID');
    expect(err.message).toMatch(message);
    const again = await errorOf(r.render(tpl, {}));
    expect(isAppError(again, 'TEMPLATE_INVALID')).toBe(true);
  });

  it('rejects an overlong template', async () => {
    const small = createRenderer({ maxTemplateLength: 20 });
    expect(() => small.validate('x'.repeat(20))).not.toThrow();
    const err = await errorOf(() => small.validate('x'.repeat(21)));
    expect(err.message).toMatch(/longer than 20/);
  });
});

describe('render limits', () => {
  it('a runaway loop fails with TEMPLATE_RENDER_FAILED instead of hanging', async () => {
    const r = createRenderer({ renderLimitMs: 50 });
    const started = Date.now();
    const err = await errorOf(r.render('{% for i in (1..10000) %}{% for j in (1..10000) %}x{% endfor %}{% endfor %}', {}));
    expect(err.code).toBe('TEMPLATE_RENDER_FAILED');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a huge allocation fails with TEMPLATE_RENDER_FAILED', async () => {
    const r = createRenderer();
    const err = await errorOf(r.render('{% for i in (1..100000000) %}{% break %}{% endfor %}', {}));
    expect(err.code).toBe('TEMPLATE_RENDER_FAILED');
    expect(err.message).toMatch(/memory/);
  });
});

describe('parse cache', () => {
  it('parses a template once and evicts the least recently used', async () => {
    const parse = vi.spyOn(Parser.prototype, 'parse');
    const r = createRenderer({ cacheSize: 2 });
    await r.render('A {{ x }}', { x: 1 });
    await r.render('A {{ x }}', { x: 2 });
    r.validate('A {{ x }}');
    expect(parse).toHaveBeenCalledTimes(1);
    await r.render('B', {});
    await r.render('A {{ x }}', {}); // A is now most recent
    await r.render('C', {}); // evicts B
    expect(parse).toHaveBeenCalledTimes(3);
    await r.render('A {{ x }}', {});
    expect(parse).toHaveBeenCalledTimes(3);
    await r.render('B', {});
    expect(parse).toHaveBeenCalledTimes(4);
  });

  it('caches parse failures too', async () => {
    const parse = vi.spyOn(Parser.prototype, 'parse');
    const r = createRenderer();
    await errorOf(() => r.validate('{{ x | nope }}'));
    await errorOf(r.render('{{ x | nope }}', {}));
    expect(parse).toHaveBeenCalledTimes(1);
  });

  it('cached templates render with each call’s own variables and options', async () => {
    const r = createRenderer();
    const t = '{{ p | money }} {{ d | date: "%H" }} {{ name }}';
    const [one, two] = await Promise.all([
      r.render(t, { p: 1, d: '2024-01-01T12:00:00Z', name: 'A' }, { currency: 'USD', timezone: 'America/New_York' }),
      r.render(t, { p: 2, d: '2024-01-01T12:00:00Z' }, { currency: 'EUR', timezone: 'Asia/Tokyo' }),
    ]);
    expect(one).toEqual({ text: '$1.00 07 A', warnings: [] });
    expect(two).toEqual({ text: '€2.00 21', warnings: ['missing variable: name'] });
  });
});

describe('appendOptOutFooter', () => {
  it('appends the default footer on its own line', () => {
    expect(DEFAULT_OPT_OUT_FOOTER).toBe('Reply STOP to unsubscribe');
    expect(appendOptOutFooter('Spring sale: 20% off')).toBe('Spring sale: 20% off\nReply STOP to unsubscribe');
    expect(appendOptOutFooter('Sale!\n\n  ')).toBe('Sale!\nReply STOP to unsubscribe');
  });

  it('does not add a second footer', () => {
    const once = appendOptOutFooter('Sale!');
    expect(appendOptOutFooter(once)).toBe(once);
    expect(appendOptOutFooter('Sale! reply stop to  UNSUBSCRIBE')).toBe('Sale! reply stop to  UNSUBSCRIBE');
  });

  it('uses a custom footer and handles empty input', () => {
    expect(appendOptOutFooter('Hi', 'STOP=stop')).toBe('Hi\nSTOP=stop');
    expect(appendOptOutFooter('', 'STOP=stop')).toBe('STOP=stop');
    expect(appendOptOutFooter('Hi', '   ')).toBe('Hi');
  });
});
