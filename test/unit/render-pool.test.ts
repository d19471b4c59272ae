/** The render-thread pool: renders off the event loop, a hard deadline that ends a runaway thread, a bounded queue. */
import { afterEach, describe, expect, it } from 'vitest';
import { isAppError } from '../../src/errors.js';
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
