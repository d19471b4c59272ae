/** The render-thread pool: renders off the event loop, a hard deadline that ends a runaway thread, a bounded queue. */
import { afterEach, describe, expect, it } from 'vitest';
import { isAppError } from '../../src/errors.js';
import { createRenderer } from '../../src/messages/render.js';
import { createRenderPool, type RenderPool } from '../../src/messages/renderPool.js';

const RUNAWAY = '{% for a in (1..1000) %}{% for b in (1..1000) %}{% for c in (1..1000) %}x{% endfor %}{% endfor %}{% endfor %}';

describe('render pool', () => {
  let pool: RenderPool | undefined;
  afterEach(async () => {
    await pool?.close();
    pool = undefined;
  });

  it('renders like the renderer does, warnings included', async () => {
    pool = createRenderPool({ size: 1 });
    expect(await pool.render('Hi {{ name }}{{ missing }}', { name: 'Ada' })).toEqual({ text: 'Hi Ada', warnings: ['missing variable: missing'] });
    await expect(pool.render('{% if %}', {})).rejects.toMatchObject({ code: 'TEMPLATE_INVALID' });
  });

  it('renders many sets of variables in their order, each with its own options, as the renderer does one by one', async () => {
    pool = createRenderPool({ size: 2, timeoutMs: 2000, renderer: { renderLimitMs: 100 } });
    const local = createRenderer();
    const template = 'Hi {{ name }}, sale ends {{ ends | date: "%H:%M" }}{{ missing }}';
    const ends = '2026-12-01T20:00:00Z';
    // 250 renders: three tasks on the threads (100 per task), results back in order.
    const items = Array.from({ length: 250 }, (_, i) => ({
      vars: { name: `Fan${i}`, ends },
      options: { timezone: i % 2 === 0 ? 'Europe/Zurich' : 'America/New_York' },
    }));
    const many = await pool.renderMany(template, items);
    expect(many).toHaveLength(250);
    expect(many).toEqual(await local.renderMany(template, items));
    expect(many[0]).toEqual({ text: 'Hi Fan0, sale ends 21:00', warnings: ['missing variable: missing'] });
    expect(many[1]!.text).toBe('Hi Fan1, sale ends 15:00');
    expect(many[249]!.text).toBe('Hi Fan249, sale ends 15:00');
    expect(await pool.renderMany(template, [])).toEqual([]);
    await expect(pool.renderMany('{% if %}', items)).rejects.toMatchObject({ code: 'TEMPLATE_INVALID' });
    // One set of variables that runs past liquid's render limit fails the call.
    const loop = '{% for a in (1..n) %}{% for b in (1..n) %}{% for c in (1..n) %}x{% endfor %}{% endfor %}{% endfor %}';
    await expect(pool.renderMany(loop, [{ vars: { n: 1 } }, { vars: { n: 100_000 } }])).rejects.toMatchObject({ code: 'TEMPLATE_RENDER_FAILED' });
  });

  it('serves a single render before the waiting tasks of a page', async () => {
    pool = createRenderPool({ size: 1, queueMax: 2 });
    await pool.render('warm', {});
    const slow = '{% for a in (1..100) %}{% for b in (1..10) %}{{ name }}{% endfor %}{% endfor %}';
    const order: string[] = [];
    // Four tasks of 100 renders, past queueMax: a page is bounded by its caller, not refused.
    const page = pool.renderMany(slow, Array.from({ length: 400 }, (_, i) => ({ vars: { name: `n${i}` } }))).then(() => order.push('page'));
    const single = pool.render('Hi {{ name }}', { name: 'Ada' }).then((r) => order.push(r.text));
    await Promise.all([page, single]);
    expect(order).toEqual(['Hi Ada', 'page']);
  });

  it('ends a thread that outlives the deadline, keeps the event loop free meanwhile, and serves the next render', async () => {
    // Liquid's own limit set far away: only the pool's deadline can stop this render.
    pool = createRenderPool({ size: 1, timeoutMs: 200, renderer: { renderLimitMs: 60_000 } });
    await pool.render('warm', {});
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    const started = Date.now();
    const err = await pool.render(RUNAWAY, {}).catch((e: unknown) => e);
    clearInterval(ticker);
    expect(isAppError(err, 'TEMPLATE_RENDER_FAILED')).toBe(true);
    expect((err as Error).message).toContain('longer than 200 ms');
    // Far below the 60 s liquid would have taken (slack for a loaded machine).
    expect(Date.now() - started).toBeLessThan(5000);
    // The event loop kept running while the thread was busy.
    expect(ticks).toBeGreaterThan(5);
    expect((await pool.render('after {{ x }}', { x: 1 })).text).toBe('after 1');
  });

  it('refuses renders past its queue at once', async () => {
    pool = createRenderPool({ size: 1, timeoutMs: 300, queueMax: 2 });
    const busy = [pool.render(RUNAWAY, {}), pool.render(RUNAWAY, {})].map((p) => p.catch((e: unknown) => e));
    await expect(pool.render(RUNAWAY, {})).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    for (const e of await Promise.all(busy)) expect(e).toMatchObject({ code: 'TEMPLATE_RENDER_FAILED' });
  });
});
