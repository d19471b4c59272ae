/**
 * Soak: 60 s of mixed load on one all-in-one `smsblossom start` process (its own process, so the load generators here
 * do not share its event loop) over real sockets — signed order webhooks at a steady rate,
 * merchants previewing runaway templates as fast as they are answered, clients trickling request bodies a byte a
 * second (more of them than one address may hold), and the seeded fuzzer. It prints webhook and `/health/live`
 * percentiles (targets: p99 under 1 s and 100 ms on a quiet machine) and fails on a stall (p99 past 2.5 s or 500 ms);
 * afterwards every accepted order has been processed and sent exactly once.
 *
 * SOAK_MS shortens or lengthens the run; FUZZ_SEED replays the fuzzer.
 */
import http from 'node:http';
import { setInterval as clock, setTimeout as delay } from 'node:timers/promises';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.js';
import type { SandboxMessage } from '../../src/sandbox/server.js';
import { merchantHeaders, SHOPIFY_API_KEY } from '../helpers/merchant.js';
import { ADMIN_TOKEN, deleteRedisPrefix, dropSchema, SHOPIFY_SECRET, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from '../helpers/system.js';
import { createFuzzer } from './lib/fuzz.js';
import { startServiceProcess, type WorkerProcess } from './lib/processes.js';
import { freePort } from './lib/services.js';
import { countAtProvider, eventually, orderWebhook, type Webhook } from './lib/workload.js';

const SOAK_MS = Number(process.env.SOAK_MS ?? 60_000);
/** Bounds a stall breaks and a busy shared machine does not (Shopify gives up after 5 s). */
const STALL_WEBHOOK_MS = 2_500;
const STALL_LIVE_MS = 500;
const WEBHOOKS_PER_SECOND = 20;
const PREVIEW_SHOPS = 6;
const PREVIEWS_PER_SHOP = 2;
const SLOW_CLIENTS = 140;
const PER_IP = 128;
const FUZZERS = 2;
const SHOP = 'soak.myshopify.com';
const RUNAWAY = '{% for a in (1..1000) %}{% for b in (1..1000) %}{% for c in (1..1000) %}x{% endfor %}{% endfor %}{% endfor %}';
const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/**
 * How the simulated clients behave between their own requests (Shopify's retry backoff, a browser backing off a 429,
 * a client reconnecting after a refusal). Load generation, not a test waiting for state: the assertions wait on the
 * service's answers and the database.
 */
const backOff = (ms: number) => delay(ms);

function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

interface Answer {
  status: number;
  body: string;
}

/**
 * One kind of client: its own source address (so the service's per-address cap counts it apart, as it would count
 * different machines) and a bounded keep-alive pool, like a real client's.
 */
function client(localAddress: string, maxSockets: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets, localAddress } as http.AgentOptions);
  return {
    agent,
    request(url: string, init: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<Answer | null> {
      return new Promise((resolve) => {
        try {
          const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers, agent }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
            res.on('error', () => resolve(null));
          });
          req.on('error', () => resolve(null));
          req.end(init.body);
        } catch {
          // Headers Node's client will not even send (the fuzzer's control characters): nothing reached the service.
          resolve(null);
        }
      });
    },
  };
}

function tally(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

describe(`faults: ${SOAK_MS / 1000} s soak of mixed load (FUZZ_SEED=${seed})`, () => {
  const prefix = `smsblossom-test:${uniqueName('soak')}`;
  const schema = uniqueName('soak');
  let service: WorkerProcess | undefined;
  let db: Database;
  let base: string;
  let sandbox: string;
  beforeAll(async () => {
    const [port, sandboxPort] = [await freePort(), await freePort()];
    base = `http://127.0.0.1:${port}`;
    sandbox = `http://127.0.0.1:${sandboxPort}`;
    service = await startServiceProcess(
      {
        REDIS_URL: TEST_REDIS_URL,
        REDIS_PREFIX: prefix,
        REDIS_EMBEDDED: 'false',
        DATABASE_URL: TEST_DATABASE_URL,
        DATABASE_SCHEMA: schema,
        SHOPIFY_API_SECRET: SHOPIFY_SECRET,
        SHOPIFY_API_KEY,
        ADMIN_TOKEN,
        PORT: String(port),
        HOST: '127.0.0.1',
        SMS_PROVIDER: 'sandbox',
        SANDBOX_PORT: String(sandboxPort),
        WORKER_QUEUES: 'events,automations,delivery',
        HOUSEKEEPING_SCHEDULES: 'false',
        HTTP_MAX_CONNECTIONS_PER_IP: String(PER_IP),
      },
      base,
    );
    db = await openDatabase({ url: TEST_DATABASE_URL, schema, poolSize: 2, dataDir: 'memory://' });
  });
  afterAll(async () => {
    await service?.stop();
    await db?.close();
    await deleteRedisPrefix(prefix);
    await dropSchema(schema);
  });

  it('no stall of webhooks or /health/live (percentiles printed against the 1 s / 100 ms targets); every order processed and sent once', async () => {
    const port = Number(new URL(base).port);
    const end = Date.now() + SOAK_MS;
    const bad: string[] = [];

    // Signed orders at a steady rate, each retried on 503 as Shopify would; latency of every answer.
    const orders: Webhook[] = Array.from({ length: Math.floor((SOAK_MS / 1000) * WEBHOOKS_PER_SECOND) }, (_, i) => orderWebhook(i, SHOP));
    const shopify = client('127.0.0.4', 64);
    const webhookMs: number[] = [];
    const webhookStatus = new Map<string, number>();
    const sendOrders = async () => {
      const inFlight: Promise<void>[] = [];
      // A clock ticking at the webhook rate: one order per tick, whatever the previous ones are doing.
      const ticks = clock(1000 / WEBHOOKS_PER_SECOND);
      for (const w of orders) {
        await ticks.next();
        inFlight.push(
          (async () => {
            for (let attempt = 0; attempt < 20; attempt++) {
              const t = Date.now();
              const res = await shopify.request(`${base}/webhooks/shopify`, { method: 'POST', headers: w.headers, body: w.body });
              webhookMs.push(Date.now() - t);
              tally(webhookStatus, String(res?.status ?? 'no answer'));
              if (res?.status === 200) return;
              if (res && res.status !== 503) {
                bad.push(`order ${w.webhookId} answered ${res.status}`);
                return;
              }
              await backOff(100 * 2 ** Math.min(attempt, 4));
            }
            bad.push(`order ${w.webhookId} never accepted`);
          })(),
        );
      }
      await ticks.return?.(undefined);
      await Promise.all(inFlight);
    };

    // The liveness probe, from an address of its own, ten times a second.
    const liveMs: number[] = [];
    const probe = async () => {
      const agent = new http.Agent({ keepAlive: true, localAddress: '127.0.0.2' } as http.AgentOptions);
      try {
        for await (const _tick of clock(100)) {
          if (Date.now() >= end || liveMs.length >= SOAK_MS / 50) break;
          const t = Date.now();
          const status = await new Promise<number>((resolve) => {
            const req = http.get({ host: '127.0.0.1', port, path: '/health/live', agent }, (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
            });
            req.on('error', () => resolve(0));
          });
          liveMs.push(Date.now() - t);
          if (status !== 200) bad.push(`/health/live answered ${status}`);
        }
      } finally {
        agent.destroy();
      }
    };

    // Merchants previewing a runaway template back to back: answered 422 (render limit), 429 (preview budget) or
    // 503 (render queue full), never anything worse.
    const merchants = client('127.0.0.5', PREVIEW_SHOPS * PREVIEWS_PER_SHOP);
    const previewStatus = new Map<string, number>();
    const previewer = async (shop: string) => {
      const headers = { ...(await merchantHeaders(shop, { expiresIn: Math.ceil(SOAK_MS / 1000) + 60 })), 'content-type': 'application/json' };
      const list = await merchants.request(`${base}/api/automations`, { headers });
      const automationId = (JSON.parse(list?.body ?? '{}') as { items: Array<{ id: number }> }).items[0]!.id;
      const loop = async () => {
        for (let i = 0; Date.now() < end && i < 10_000; i++) {
          const res = await merchants.request(`${base}/api/automations/${automationId}/preview`, { method: 'POST', headers, body: JSON.stringify({ template: RUNAWAY }) });
          tally(previewStatus, String(res?.status ?? 'no answer'));
          if (!res || ![422, 429, 503].includes(res.status)) bad.push(`preview answered ${res?.status ?? 'nothing'}`);
          // A budget-refused merchant's browser would not hammer; neither does this one.
          if (res?.status === 429) await backOff(250);
        }
      };
      await Promise.all(Array.from({ length: PREVIEWS_PER_SHOP }, loop));
    };

    // Clients sending a body one byte a second, reconnecting when cut off; more than one address may hold.
    let slowCut = 0;
    let slowDropped = 0;
    const slowClient = async () => {
      for (let i = 0; Date.now() < end && i < 1000; i++) {
        const openedAt = Date.now();
        await new Promise<void>((resolve) => {
          const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.3' });
          let timer: NodeJS.Timeout | undefined;
          let answer = '';
          socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
          socket.on('error', () => undefined);
          socket.on('connect', () => {
            socket.write('POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n');
            timer = setInterval(() => (Date.now() < end ? socket.write('x') : socket.destroy()), 1000);
          });
          socket.on('close', () => {
            clearInterval(timer);
            if (answer.startsWith('HTTP/1.1 408')) slowCut++;
            else if (!answer) slowDropped++;
            resolve();
          });
        });
        // Dropped at once (over the per-address cap): back off instead of spinning.
        if (Date.now() - openedAt < 100) await backOff(250);
      }
    };

    // The fuzzer, two requests at a time, one in a hundred malformed at the socket level.
    const { rnd, fuzzRequest, rawGarbage } = createFuzzer(seed);
    const fuzzClient = client('127.0.0.6', FUZZERS);
    const fuzzStatus = new Map<string, number>();
    const fuzzer = async () => {
      for (let i = 0; Date.now() < end && i < 50_000; i++) {
        if (rnd() < 0.01) {
          const answer = await rawGarbage(port);
          if (/^HTTP\/1\.1 5/.test(answer)) bad.push(`raw garbage answered ${answer}`);
          continue;
        }
        const r = fuzzRequest();
        const res = await fuzzClient.request(`${base}${r.path ?? '/webhooks/shopify'}`, {
          method: r.method ?? 'POST',
          headers: r.headers,
          body: r.method === 'GET' ? undefined : r.body,
        });
        tally(fuzzStatus, String(res?.status ?? 'no answer'));
        if (res && res.status >= 500 && res.status !== 503) bad.push(`fuzz ${r.kind} answered ${res.status}: ${res.body.slice(0, 200)}`);
      }
    };

    await Promise.all([
      sendOrders(),
      probe(),
      ...Array.from({ length: PREVIEW_SHOPS }, (_, i) => previewer(`soak-preview-${i}.myshopify.com`)),
      ...Array.from({ length: SLOW_CLIENTS }, slowClient),
      ...Array.from({ length: FUZZERS }, fuzzer),
    ]);

    for (const c of [shopify, merchants, fuzzClient]) c.agent.destroy();
    const figures = {
      webhooks: { sent: orders.length, answers: Object.fromEntries(webhookStatus), p50: percentile(webhookMs, 50), p99: percentile(webhookMs, 99), max: Math.max(...webhookMs) },
      live: { probes: liveMs.length, p50: percentile(liveMs, 50), p99: percentile(liveMs, 99), max: Math.max(...liveMs) },
      previews: Object.fromEntries(previewStatus),
      slow: { cutOffWith408: slowCut, droppedOverCap: slowDropped },
      fuzz: Object.fromEntries(fuzzStatus),
    };
    process.stdout.write(`soak (${SOAK_MS} ms, seed ${seed}): ${JSON.stringify(figures, null, 1)}\n`);

    expect(bad.slice(0, 20)).toEqual([]);
    // The targets (webhooks p99 < 1 s, /health/live p99 < 100 ms) are the figures printed above, met on a quiet
    // machine. What the run asserts are bounds only a stall breaks — a blocked event loop held a webhook 11.4 s and
    // /health/live 4 s — because the load generator, PostgreSQL and Redis share the service's two cores here, and a
    // CI run measured /health/live p99 at 115 ms without anything being wrong.
    expect(figures.webhooks.p99).toBeLessThan(STALL_WEBHOOK_MS);
    expect(figures.live.p99).toBeLessThan(STALL_LIVE_MS);
    expect(figures.live.probes).toBeGreaterThan((SOAK_MS / 100) * 0.5);
    // The load happened: renders ran out of time, slow bodies were cut off, the cap dropped the extra connections.
    expect(previewStatus.get('422') ?? 0).toBeGreaterThan(0);
    expect(slowCut).toBeGreaterThan(0);
    expect(slowDropped).toBeGreaterThan(0);

    // Nothing lost: every order processed, one message each, sent once.
    const ids = orders.map((w) => w.webhookId);
    const settled = await eventually(
      'every order processed and sent',
      async () => {
        const [row] = await db.query<{ processed: number; sent: number }>(
          `SELECT (SELECT count(*)::int FROM events WHERE webhook_id = ANY($1) AND status = 'processed') AS processed,
                  (SELECT count(*)::int FROM messages m JOIN shops s ON s.id = m.shop_id
                     WHERE s.domain = $2 AND m.trigger = 'order_paid' AND m.status IN ('sent', 'delivered')) AS sent`,
          [ids, SHOP],
        );
        return row!;
      },
      (c) => c.processed >= orders.length && c.sent >= orders.length,
      180_000,
    );
    expect(settled).toEqual({ processed: orders.length, sent: orders.length });
    const taken = ((await (await fetch(`${sandbox}/__sandbox/messages`)).json()) as { messages: SandboxMessage[] }).messages;
    expect(countAtProvider(taken).duplicated).toEqual([]);
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });
});
