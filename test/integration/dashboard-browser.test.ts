/**
 * The queue dashboard in a real browser (headless Chromium driven by playwright-core) against a service listening on
 * a socket: an operator is sent to the login page, a wrong token is refused, the right one sets an HttpOnly,
 * SameSite=Strict cookie, and the dashboard shows the five queues. Needs Chromium (Debian: /usr/bin/chromium;
 * CHROMIUM_PATH overrides; `.ci/run` installs it).
 */
import fs from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR_COOKIE } from '../../src/http/auth.js';
import { QUEUE_NAMES } from '../../src/queue/queues.js';
import { ADMIN_TOKEN, startTestSystem, type TestSystem } from '../helpers/system.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p)) ?? '/usr/bin/chromium';

describe('queue dashboard in a browser', () => {
  let sys: TestSystem;
  let browser: Browser;
  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium, or set CHROMIUM_PATH`);
    [sys, browser] = await Promise.all([
      startTestSystem('postgres', { listen: true }),
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] }),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await sys?.teardown();
  });

  it('logs in with the admin token and shows the five queues', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.goto(`${sys.url}/admin/queues`);
      expect(new URL(page.url()).pathname).toBe('/admin/login');

      await page.fill('input[name=token]', 'not-the-admin-token');
      await Promise.all([page.waitForLoadState('domcontentloaded'), page.click('button[type=submit]')]);
      expect(await page.textContent('[role=alert]')).toContain('not right');
      expect((await context.cookies()).find((c) => c.name === OPERATOR_COOKIE)).toBeUndefined();

      await page.fill('input[name=token]', ADMIN_TOKEN);
      await Promise.all([page.waitForURL(/\/admin\/queues/), page.click('button[type=submit]')]);
      const cookie = (await context.cookies()).find((c) => c.name === OPERATOR_COOKIE)!;
      expect(cookie).toBeDefined();
      expect(cookie.httpOnly).toBe(true);
      expect(cookie.sameSite).toBe('Strict');
      expect(cookie.value).not.toContain(ADMIN_TOKEN);

      // Bull Board renders client-side from its API: wait until every queue name is on the page.
      await page.waitForFunction((names) => names.every((n) => document.body.innerText.includes(n)), [...QUEUE_NAMES], { timeout: 15_000 });
      const text = await page.evaluate(() => document.body.innerText);
      for (const name of QUEUE_NAMES) expect(text).toContain(name);

      // The dead letters are linked from the dashboard and readable with the same session.
      const dlq = await page.goto(`${sys.url}/admin/dlq`);
      expect(dlq?.status()).toBe(200);
      expect(await dlq?.json()).toMatchObject({ items: [], size: 0 });
      // ... but the session does not let a page write to them (only the dashboard's own routes take it for writes).
      const purge = await page.request.post(`${sys.url}/admin/dlq/purge`, { data: { all: true } });
      expect(purge.status()).toBe(401);
    } finally {
      await context.close();
    }
  });
});
