/**
 * A merchant trying the campaign API in a real browser (headless Chromium driven by playwright-core): the service has
 * no merchant UI of its own, so the merchant uses what it serves, Swagger UI at `/docs` over the OpenAPI document.
 * Authorize with a Shopify session token (the bearer scheme `sessionToken`), then, each through "Try it out" and
 * "Execute": create a segment, estimate it, create a campaign on it, test-send it, send it, and read its progress
 * until every recipient is sent. The test asserts on the answers Swagger UI shows and on what the Mitto sandbox
 * received: the test number once, then exactly the shop's subscribed contacts, once each, and nobody else.
 * Screenshots of each step land in test-artifacts/screenshots/campaign-*.png.
 */
import { eq } from 'drizzle-orm';
import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shops } from '../../src/db/schema.js';
import { launchChromium, screenshots } from '../helpers/browser.js';
import { sessionToken, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { seedContact, uniquePhone, uniqueShop } from '../helpers/messages.js';
import { startTestSystem, type TestSystem } from '../helpers/system.js';

const shot = screenshots('campaign');

/** An operation's block in Swagger UI (deep links give each one the id `operations-<tag>-<operationId>`). */
function operation(page: Page, tag: string, operationId: string): Locator {
  return page.locator(`#operations-${tag}-${operationId}`);
}

interface Answer {
  /** The status and JSON body as Swagger UI shows them ("Server response"). */
  status: number;
  json: Record<string, unknown>;
}

/**
 * Opens an operation, presses "Try it out", fills its path parameters and JSON body, presses "Execute", and resolves
 * with the status and JSON body Swagger UI shows for the answer (checked against what the browser received). With a
 * `step`, screenshots the operation from its title to the answer shown.
 */
async function tryItOut(page: Page, tag: string, operationId: string, input: { params?: Record<string, string | number>; body?: unknown } = {}, step?: string): Promise<Answer> {
  const block = operation(page, tag, operationId);
  if (!(await block.evaluate((el) => el.classList.contains('is-open')))) await block.locator('.opblock-summary').first().click();
  const tryOut = block.locator('button.try-out__btn');
  if ((await tryOut.innerText()).trim() === 'Try it out') await tryOut.click();
  for (const [name, value] of Object.entries(input.params ?? {})) await block.locator(`tr[data-param-name="${name}"] input`).fill(String(value));
  if (input.body !== undefined) await block.locator('textarea.body-param__text').fill(JSON.stringify(input.body, null, 2));
  // Execute again shows the new answer in place of the last: wait for the request's own answer, then for the UI.
  const [received] = await Promise.all([page.waitForResponse((res) => new URL(res.url()).pathname.startsWith('/api/')), block.locator('button.execute').click()]);
  const receivedBody = await received.text();
  const live = block.locator('.live-responses-table .response').first();
  const shownBody = live.locator('.response-col_description pre').first();
  await expect.poll(async () => JSON.stringify(JSON.parse(await shownBody.innerText())), { timeout: 20_000 }).toBe(JSON.stringify(JSON.parse(receivedBody)));
  const status = Number((await live.locator('.response-col_status').innerText()).trim());
  expect(status).toBe(received.status());
  if (step) {
    // From the operation's title to the end of the answer shown: the part of a very long page a person looks at.
    await live.scrollIntoViewIfNeeded();
    const top = (await block.boundingBox())!;
    const bottom = (await live.boundingBox())!;
    const scroll = await page.evaluate(() => ({ x: window.scrollX, y: window.scrollY }));
    await shot(page, step, { x: top.x + scroll.x, y: top.y + scroll.y, width: top.width, height: bottom.y + bottom.height - top.y });
  }
  return { status, json: JSON.parse(await shownBody.innerText()) as Record<string, unknown> };
}

describe('a merchant runs a campaign in Swagger UI', () => {
  let sys: TestSystem;
  let browser: Browser;
  beforeAll(async () => {
    [sys, browser] = await Promise.all([
      startTestSystem('postgres', {
        listen: true,
        workers: ['campaigns', 'delivery'],
        env: { SMS_PROVIDER: 'sandbox', SHOPIFY_API_KEY, CAMPAIGN_BATCH_SIZE: '50', CAMPAIGN_POLL_MS: '50' },
      }),
      launchChromium(),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await sys?.teardown();
  });

  it('authorizes with a session token, creates a segment, estimates, creates a campaign, test-sends, sends and watches it finish', async () => {
    const domain = uniqueShop('browser');
    const subscribed = [uniquePhone(), uniquePhone(), uniquePhone()];
    for (const phone of subscribed) await seedContact(sys.db.db, domain, phone, 'subscribed');
    await seedContact(sys.db.db, domain, uniquePhone(), 'not_subscribed');
    await seedContact(sys.db.db, domain, uniquePhone(), 'unsubscribed');
    // Another shop's subscribed contact, in the same country: nothing this merchant does reaches it.
    await seedContact(sys.db.db, uniqueShop('other'), uniquePhone(), 'subscribed');
    // Quiet hours off and no cap: the campaign sends whatever the time of day the test runs.
    await sys.db.db.update(shops).set({ settings: { quietHours: { enabled: false }, frequencyCap: null, sender: 'Blossom' } }).where(eq(shops.domain, domain));
    const token = await sessionToken(domain, { expiresIn: 600 });
    sys.sandbox!.reset();

    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    const page = await context.newPage();
    // Well inside the test's own timeout, so a step that never comes fails naming what it waited for.
    page.setDefaultTimeout(20_000);
    try {
      await page.goto(`${sys.url}/docs`);
      await operation(page, 'segments', 'createSegment').waitFor();
      await shot(page.locator('.information-container'), 'docs');
      // Fold the sections this merchant does not use, as a person would: the page is long, every click re-renders it.
      const tags = await page.locator('.opblock-tag[id^="operations-tag-"]').evaluateAll((els) => els.map((el) => el.id.slice('operations-tag-'.length)));
      expect(tags).toEqual(expect.arrayContaining(['segments', 'campaigns']));
      for (const tag of tags.filter((t) => t !== 'segments' && t !== 'campaigns')) {
        const section = page.locator(`.opblock-tag-section:has(#operations-tag-${tag})`);
        await section.locator(`#operations-tag-${tag}`).click();
        await section.locator('.opblock').first().waitFor({ state: 'detached' });
      }

      // Authorize: the session token in the bearer scheme the merchant routes name.
      await page.locator('.auth-wrapper button.authorize').click();
      const scheme = page.locator('.modal-ux .auth-container').filter({ hasText: 'sessionToken' });
      await scheme.locator('input').fill(token);
      await shot(page.locator('.modal-ux'), 'authorize');
      // Swagger UI labels its buttons for screen readers ("Apply credentials"): found by class and text instead.
      await scheme.locator('button.authorize').click();
      await scheme.locator('button', { hasText: 'Logout' }).waitFor();
      await shot(page.locator('.modal-ux'), 'authorized');
      await scheme.locator('button.btn-done').click();
      await page.locator('.modal-ux').waitFor({ state: 'detached' });

      const segment = await tryItOut(page, 'segments', 'createSegment', { body: { name: 'Swiss customers', filter: { country: 'CH' } } }, 'segment-created');
      expect(segment).toMatchObject({ status: 201, json: { name: 'Swiss customers', filter: { country: 'CH' } } });
      const segmentId = segment.json.id as number;

      const body = 'Hi {{ customer.firstName }}, spring is here: {{ discountCode }} at {{ link }}';
      // Five contacts match; the three subscribed ones may be sent marketing.
      const estimate = await tryItOut(page, 'segments', 'estimateAudience', { body: { segmentId, body } }, 'segment-estimated');
      expect(estimate).toMatchObject({ status: 200, json: { matching: 5, recipients: 3, messages: 3, encoding: 'GSM-7' } });

      const campaign = await tryItOut(
        page,
        'campaigns',
        'createCampaign',
        { body: { name: 'Spring', body, segmentId, discountCode: 'SPRING', linkUrl: 'https://shop.example/spring' } },
        'campaign-created',
      );
      expect(campaign).toMatchObject({ status: 201, json: { name: 'Spring', status: 'draft', segmentId } });
      const id = campaign.json.id as number;

      // The merchant's own phone, typed as people type it.
      const own = uniquePhone();
      const typed = `${own.slice(0, 3)} ${own.slice(3, 5)} ${own.slice(5, 8)} ${own.slice(8, 10)} ${own.slice(10)}`;
      const test = await tryItOut(page, 'campaigns', 'testSendCampaign', { params: { id }, body: { phone: typed } }, 'test-sent');
      expect(test.status).toBe(202);
      const [testMessage] = await sys.sandbox!.waitForMessages(1, 30_000);
      expect(testMessage).toMatchObject({ to: own });
      expect(testMessage!.text).toContain('Hi Jane, spring is here: SPRING at https://shop.example/spring');

      const send = await tryItOut(page, 'campaigns', 'sendCampaign', { params: { id } }, 'sending');
      expect(send).toMatchObject({ status: 202, json: { status: 'sending' } });

      // Watch it: Execute the progress request again until every recipient is sent.
      const progress = () => tryItOut(page, 'campaigns', 'campaignProgress', { params: { id } });
      await expect.poll(async () => (await progress()).json, { timeout: 60_000, interval: 100 }).toMatchObject({ status: 'sent', sent: 3, skipped: 2, failed: 0, percent: 100 });
      const done = await tryItOut(page, 'campaigns', 'campaignProgress', { params: { id } }, 'progress-sent');
      expect(done.json).toMatchObject({ status: 'sent', total: 5, enqueued: 3, sent: 3, skipped: 2, skippedByReason: { not_subscribed: 1, opted_out: 1 }, queued: 0, sending: 0 });

      const final = await tryItOut(page, 'campaigns', 'getCampaign', { params: { id } }, 'campaign-sent');
      expect(final).toMatchObject({ status: 200, json: { id, status: 'sent' } });

      // The provider got the test, then exactly the subscribed contacts, once each: not the others, not another shop's.
      const atProvider = sys.sandbox!.messages();
      expect(atProvider[0]!.id).toBe(testMessage!.id);
      expect(atProvider.slice(1).map((m) => m.to).sort()).toEqual([...subscribed].sort());
      for (const m of atProvider.slice(1)) expect(m.text).toContain(`SPRING at https://shop.example/spring?utm_source=sms&utm_medium=sms&utm_campaign=${id}`);
    } finally {
      await context.close();
    }
  }, 180_000);
});
