/**
 * The queue dashboard in a real browser (headless Chromium driven by playwright-core) against a service listening on
 * a socket: an operator is sent to the login page, a wrong token is refused, the right one sets an HttpOnly,
 * SameSite=Strict cookie, and the dashboard shows the queues; then the operator opens the delivery queue, its failed
 * jobs and one of them, and reads why it failed, without the page (or anything it fetched) showing the recipient's
 * phone number or the message's text. Needs Chromium (Debian: /usr/bin/chromium; CHROMIUM_PATH overrides; `.ci/run`
 * installs it). Screenshots of each step land in test-artifacts/screenshots/dashboard-*.png.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR_COOKIE } from '../../src/http/auth.js';
import { jobIdFrom, QUEUE_NAMES } from '../../src/queue/queues.js';
import { launchChromium, screenshots } from '../helpers/browser.js';
import { waitForJobState } from '../helpers/jobs.js';
import { seedMessage, uniquePhone } from '../helpers/messages.js';
import { ADMIN_TOKEN, startTestSystem, type TestSystem } from '../helpers/system.js';

const shot = screenshots('dashboard');

/** Logs in through the form; resolves on the dashboard. */
async function logIn(page: Page, baseUrl: string): Promise<void> {
  await page.goto(`${baseUrl}/admin/queues`);
  await page.fill('input[name=token]', ADMIN_TOKEN);
  await Promise.all([page.waitForURL(/\/admin\/queues/), page.click('button[type=submit]')]);
}

/** Everything the browser is sent (documents and the dashboard's API answers), to look for personal data in. */
function recordResponses(context: BrowserContext): () => Promise<string[]> {
  const bodies: Array<Promise<string>> = [];
  context.on('response', (res) => {
    if (/json|html|text/.test(res.headers()['content-type'] ?? '')) bodies.push(res.text().catch(() => ''));
  });
  return () => Promise.all(bodies);
}

describe('queue dashboard in a browser', () => {
  let sys: TestSystem;
  let browser: Browser;
  beforeAll(async () => {
    [sys, browser] = await Promise.all([
      // The delivery worker and the bundled Mitto sandbox: the failed job below is a real send the provider refused.
      startTestSystem('postgres', { listen: true, workers: ['delivery'], env: { SMS_PROVIDER: 'sandbox' } }),
      launchChromium(),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await sys?.teardown();
  });

  it('logs in with the admin token and shows every queue of the catalog', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.goto(`${sys.url}/admin/queues`);
      expect(new URL(page.url()).pathname).toBe('/admin/login');
      await shot(page, 'login');

      await page.fill('input[name=token]', 'not-the-admin-token');
      await Promise.all([page.waitForLoadState('domcontentloaded'), page.click('button[type=submit]')]);
      expect(await page.textContent('[role=alert]')).toContain('not right');
      await shot(page, 'login-refused');
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
      await shot(page, 'queues');

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

  it('opens the delivery queue, its failed jobs and one job: the error shows, the phone number and the text do not', async () => {
    // A send the provider refuses for good (Mitto responseCode 8, invalid receiver): one attempt, then failed.
    sys.sandbox!.setFaults({ permanentCode: 8, permanentRate: 1 });
    const phone = uniquePhone();
    const { shop, contact, message, requestId } = await seedMessage(sys.db.db, { phone, body: 'Your order #4321 has shipped, Jane!' });
    // As the automations processor queues it: ids and small context, no phone number, no text.
    const jobId = await sys.queues.enqueueJob('delivery', 'send', { shopId: shop.domain, messageId: message.id, contactId: contact.id, requestId }, { jobId: jobIdFrom('msg', message.id) });
    const failed = await waitForJobState(sys.queues.get('delivery'), jobId, 'failed');
    expect(failed.failedReason).toMatch(/^MITTO_INVALID_RECEIVER/);

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const received = recordResponses(context);
    const page = await context.newPage();
    // Well inside the test's own timeout, so a step that never comes fails naming what it waited for.
    page.setDefaultTimeout(20_000);
    try {
      await logIn(page, sys.url!);
      await page.click('a[title=delivery]');
      await page.waitForURL(/\/admin\/queues\/queue\/delivery$/);
      // The failed tab's badge counts the job.
      const failedTab = page.locator('a[href$="/queue/delivery?status=failed"]');
      await expect.poll(() => failedTab.innerText(), { timeout: 20_000 }).toContain('1');
      await shot(page, 'delivery-queue');

      await failedTab.click();
      await page.waitForURL(/status=failed/);
      // The job's link (`…/queue/delivery/<id>?status=failed`).
      const jobLink = page.locator(`a[href*="/queue/delivery/${jobId}?"]`);
      await jobLink.waitFor();
      await shot(page, 'delivery-failed');

      await jobLink.click();
      await page.waitForURL((url) => url.pathname === `/admin/queues/queue/delivery/${jobId}`);
      // A failed job opens on its error: the code and the provider's reason.
      await page.getByText('MITTO_INVALID_RECEIVER: Mitto rejected the message: invalid receiver (responseCode 8)').waitFor();
      await shot(page, 'failed-job-error');

      await page.getByRole('tab', { name: 'Data' }).click();
      // The data is highlighted token by token: read it as text.
      await expect.poll(() => page.locator('body').innerText(), { timeout: 20_000 }).toMatch(new RegExp(`messageId"?:\\s*${message.id}\\b`));
      await shot(page, 'failed-job-data');

      // Neither the page nor anything it fetched carries the number (with or without its +) or the text.
      const fetched = await received();
      expect(fetched.some((body) => body.includes(`"messageId":${message.id}`))).toBe(true);
      const seen = [await page.locator('body').innerText(), await page.content(), ...fetched].join('\n');
      expect(seen).toContain(jobId);
      const personal = { phone, 'phone without +': phone.slice(1), text: message.body!, 'part of the text': 'Your order #4321' };
      for (const [what, value] of Object.entries(personal)) expect(seen.includes(value), `the dashboard shows the message's ${what}`).toBe(false);
    } finally {
      await context.close();
      sys.sandbox!.setFaults({ permanentCode: null, permanentRate: 0 });
    }
  }, 90_000);
});
