/**
 * Issue 15 item 4: `smsblossom campaign send --follow` inside quiet hours sat at 0% with no reason, and every line
 * showed the literal text `ETA {eta_s}s`. Now each line says what holds the campaign (quiet hours until when, in the
 * shop's zone; paused) and the ETA comes from the send rate observed while following ("ETA —" until there is one).
 */
import { spawn } from 'node:child_process';
import { eq } from 'drizzle-orm';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignHold, formatEta, observedEta } from '../../src/campaigns/cli.js';
import type { CampaignProgress } from '../../src/campaigns/service.js';
import type { Campaign, Shop } from '../../src/db/schema.js';
import { createCampaign } from '../../src/campaigns/service.js';
import { shops } from '../../src/db/schema.js';
import { upsertShop } from '../../src/db/shops.js';
import { createLogger } from '../../src/logger.js';
import { uniqueShop } from '../helpers/messages.js';
import { childEnv, PROJECT_ROOT, run } from '../helpers/spawn.js';
import { startTestSystem, TEST_DATABASE_URL, TEST_REDIS_URL, type TestSystem } from '../helpers/system.js';

const ZONE = 'Europe/Zurich';

describe('campaign send --follow', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startTestSystem('postgres', { workers: ['campaigns'], env: { SMS_PROVIDER: 'sandbox', CAMPAIGN_POLL_MS: '50' } });
  });
  afterAll(async () => {
    await sys?.teardown();
  });

  const env = () => ({
    DATABASE_URL: TEST_DATABASE_URL,
    DATABASE_SCHEMA: sys.config.database.schema,
    REDIS_URL: TEST_REDIS_URL,
    REDIS_PREFIX: sys.config.redis.prefix,
    REDIS_EMBEDDED: 'false',
  });

  /** Runs the CLI until a line matches `until`, then stops it; resolves with everything it printed. */
  function followUntil(args: string[], until: RegExp, timeoutMs = 60_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['bin/smsblossom.js', ...args], { cwd: PROJECT_ROOT, env: childEnv(env()), stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`no line matched ${until} within ${timeoutMs} ms:\n${output}`));
      }, timeoutMs);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (until.test(output)) {
          clearTimeout(timer);
          child.once('exit', () => resolve(output));
          child.kill('SIGKILL');
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        if (!until.test(output)) reject(new Error(`exited ${code} before a line matched ${until}:\n${output}`));
      });
    });
  }

  it('says the campaign is held by quiet hours until when (shop zone), with "ETA —", never a raw format token; and says when it is paused', async () => {
    const local = DateTime.now().setZone(ZONE);
    const end = local.plus({ hours: 2 }).toFormat('HH:mm');
    const { shop: created } = await upsertShop(sys.db.db, uniqueShop('follow'));
    await sys.db.db
      .update(shops)
      .set({ timezone: ZONE, countryCode: 'CH', settings: { quietHours: { enabled: true, start: local.minus({ hours: 1 }).toFormat('HH:mm'), end }, frequencyCap: null, sender: 'Blossom' } })
      .where(eq(shops.id, created.id));
    const shop = (await upsertShop(sys.db.db, created.domain)).shop;
    await sys.db.query(
      `INSERT INTO contacts (shop_id, phone, first_name, country_code, sms_consent) SELECT $1::bigint, '+4179' || lpad(g::text, 7, '0'), 'Fan', 'CH', 'subscribed' FROM generate_series(1, 3) AS g`,
      [shop.id],
    );
    const campaign = await createCampaign(
      { database: sys.db, queues: sys.queues, logger: createLogger({ level: 'silent' }), renderer: sys.services.renderer, sms: sys.config.sms, pacing: sys.config.campaigns },
      shop,
      { name: 'Night sale', body: 'Hi {{ customer.firstName }}', filter: { hasPhone: true } },
    );

    const output = await followUntil(['campaign', 'send', String(campaign.id), '--follow'], new RegExp(`held: quiet hours until (\\d{4}-\\d\\d-\\d\\d )?${end} ${ZONE} \\(3 messages waiting\\)`));
    const lines = output.split('\n').filter((l) => l.includes('held: quiet hours'));
    expect(lines.at(-1)).toContain('ETA — | sending');
    expect(output).not.toContain('{eta_s}');
    expect(output).not.toMatch(/\{\w+\}/);

    const paused = await run(process.execPath, ['bin/smsblossom.js', 'campaign', 'pause', String(campaign.id)], env(), 60_000);
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stdout).toMatch(new RegExp(`campaign ${campaign.id} paused: .*; held: paused since \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d ${ZONE} \\(smsblossom campaign resume ${campaign.id}\\)`));
  }, 120_000);
});

describe('the ETA of --follow', () => {
  it('comes from the rate observed while following: none until progress is seen, then what is left at that rate', () => {
    expect(observedEta([], 100)).toEqual({ ratePerSec: null, etaSeconds: null });
    expect(observedEta([{ at: 0, done: 0 }, { at: 5000, done: 0 }], 100)).toEqual({ ratePerSec: null, etaSeconds: null });
    expect(observedEta([{ at: 0, done: 0 }, { at: 5000, done: 50 }], 100)).toEqual({ ratePerSec: 10, etaSeconds: 10 });
    // Only the last 30 s count: a fast start does not flatter a slow present.
    expect(observedEta([{ at: 0, done: 0 }, { at: 10_000, done: 900 }, { at: 40_000, done: 930 }], 70)).toEqual({ ratePerSec: 1, etaSeconds: 70 });
    expect(observedEta([{ at: 0, done: 10 }, { at: 1000, done: 10 }], 0)).toEqual({ ratePerSec: null, etaSeconds: 0 });
    expect([null, 42, 200, 3900].map(formatEta)).toEqual(['—', '42s', '3m 20s', '1h 05m']);
  });

  it('names the frequency cap: how many recipients it skipped, beside a pause or alone once every recipient is processed', async () => {
    // Nothing is queued, so nothing is read: a database that is touched fails the test.
    const sys = { get db(): never { throw new Error('campaignHold read the database with nothing queued') } };
    const shop = { timezone: ZONE } as Shop;
    const progress = (over: Partial<CampaignProgress>): CampaignProgress => ({
      id: 1, status: 'sending', total: 10, enqueued: 7, queued: 0, sending: 0, sent: 7, delivered: 7, failed: 0, cancelled: 0,
      skipped: 3, skippedByReason: { frequency_capped: 3 }, processed: 10, ratePerSec: 1, etaSeconds: 0, startedAt: null, completedAt: null, percent: 100,
      ...over,
    });
    const campaign = (over: Partial<Campaign>) => ({ id: 1, status: 'sending', scheduledAt: null, pausedAt: null, ...over }) as Campaign;
    // Every recipient processed, three of them held back by the cap: that is what the line says.
    expect(await campaignHold(sys, campaign({}), shop, progress({}))).toBe('3 skipped by the frequency cap');
    expect(await campaignHold(sys, campaign({ status: 'paused', pausedAt: new Date('2026-07-01T10:00:00Z') }), shop, progress({ processed: 5 }))).toBe(
      'paused since 2026-07-01 12:00 Europe/Zurich (smsblossom campaign resume 1); 3 skipped by the frequency cap',
    );
    // Still sending, nothing held, no cap: nothing to say.
    expect(await campaignHold(sys, campaign({}), shop, progress({ processed: 5, skipped: 0, skippedByReason: {} }))).toBeNull();
  });
});
