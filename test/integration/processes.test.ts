/**
 * `smsblossom start` on several processes (PROCESSES): two processes behind one port, one Redis and one PostgreSQL
 * deliver every order confirmation exactly once, both take part, one that dies is replaced, and a SIGTERM stops them all. On the embedded PGlite
 * the default is one process (no supervisor), and asking for more is a configuration error. A process that cannot start
 * (its port taken) fails the whole start with exit 1.
 */
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.js';
import type { SandboxMessage } from '../../src/sandbox/server.js';
import { freePort } from '../faults/lib/services.js';
import { countAtProvider, orderMessageRefs, orderWebhook, sendLikeShopify } from '../faults/lib/workload.js';
import { promtoolProblems } from '../helpers/promtool.js';
import { isAlive, portAccepts, run, serviceEnv, spawnLogged } from '../helpers/spawn.js';
import { deleteRedisPrefix, dropSchema, SHOPIFY_SECRET, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from '../helpers/system.js';

const ORDERS = 50;
const SHUTDOWN_TIMEOUT_MS = 10_000;

interface LogLine {
  msg?: string;
  pid?: number;
  url?: string;
  queue?: string;
  processes?: number;
  pids?: number[];
  exitedPid?: number;
  signal?: string;
}

/** The sample counting completed delivery jobs. */
const DELIVERY_COMPLETED = 'smsblossom_job_duration_seconds_count{queue="delivery",outcome="completed"}';

/** A GET on a connection of its own (no keep-alive agent), so that the primary hands it to the next process. */
function getOnNewConnection(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** The value of one sample (`name{labels}` exactly as exposed) in Prometheus text; undefined when absent. */
function metricValue(body: string, sample: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

/** `node dist/cli.js start` with `vars`, its JSON log lines collected as they come. */
const startService = (vars: Record<string, string>) =>
  spawnLogged<LogLine>(process.execPath, ['dist/cli.js', 'start'], { LOG_LEVEL: 'info', PORT: '0', HOST: '127.0.0.1', ...vars });

describe('start on several processes (PROCESSES=2, PostgreSQL)', () => {
  const schema = uniqueName('procs');
  const prefix = `smsblossom-test:${uniqueName('procs')}`;
  const pids: number[] = [];
  let db: Database | undefined;
  afterAll(async () => {
    // Only reached with a process left over when an assertion failed: do not leave it running.
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await db?.close();
    await dropSchema(schema);
    await deleteRedisPrefix(prefix);
  });

  it('delivers each order confirmation once, through both processes; replaces one that dies; stops them all on SIGTERM', { timeout: 180_000 }, async () => {
    const sandboxPort = await freePort();
    const service = startService(
      serviceEnv(prefix, schema, { PROCESSES: '2', SMS_PROVIDER: 'sandbox', SANDBOX_PORT: String(sandboxPort), SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) }),
    );
    pids.push(service.proc.pid!);
    const serving = await service.waitForLine('all processes serving', (l) => l.msg === 'All processes serving');
    expect(serving.processes).toBe(2);
    const children = serving.pids!;
    pids.push(...children);
    expect(new Set(children).size).toBe(2);
    expect(children).not.toContain(service.proc.pid);
    // Each process listens, on the one port the primary shares between them. (A process's log lines may reach the pipe
    // after the supervisor's: wait for them.)
    for (const pid of children) await service.waitForLine(`process ${pid} listening`, (l) => l.msg === 'SMS Blossom is listening' && l.pid === pid);
    const listening = service.lines.filter((l) => l.msg === 'SMS Blossom is listening');
    expect(new Set(listening.map((l) => l.pid))).toEqual(new Set(children));
    expect(new Set(listening.map((l) => l.url)).size).toBe(1);
    const base = listening[0]!.url!;
    expect((await fetch(`${base}/health/ready`)).status).toBe(200);

    const shop = 'two-processes.myshopify.com';
    const sent = await sendLikeShopify(base, Array.from({ length: ORDERS }, (_, i) => orderWebhook(i, shop)), 16);
    expect(sent.unexpected).toEqual([]);

    db = await openDatabase({ url: TEST_DATABASE_URL, schema, poolSize: 2, dataDir: 'memory://' });
    const sandbox = `http://127.0.0.1:${sandboxPort}`;
    const refs = await vi.waitFor(
      async () => {
        const ids = await orderMessageRefs(db!);
        if (ids.size < ORDERS) throw new Error(`${ids.size} of ${ORDERS} order confirmations stored`);
        const taken = ((await (await fetch(`${sandbox}/__sandbox/messages`)).json()) as { messages: SandboxMessage[] }).messages;
        const count = countAtProvider(taken, ids);
        if (count.references < ORDERS) throw new Error(`${count.references} of ${ORDERS} order confirmations at the provider`);
        return ids;
      },
      { timeout: 90_000, interval: 250 },
    );
    expect(refs.size).toBe(ORDERS);
    const taken = ((await (await fetch(`${sandbox}/__sandbox/messages`)).json()) as { messages: SandboxMessage[] }).messages;
    expect(countAtProvider(taken, refs)).toEqual({ accepted: ORDERS, references: ORDERS, duplicated: [] });
    // Both processes ran jobs.
    const workedBy = new Set(service.lines.filter((l) => l.msg === 'Job completed').map((l) => l.pid));
    expect(workedBy).toEqual(new Set(children));

    // Whichever process takes a scrape, /metrics counts the whole service: every process's webhooks and delivery jobs
    // summed, the gauges read from Redis and the database once. (A connection of its own per scrape: the primary hands
    // connections to the processes in turn.)
    // A delivery job is counted once it completes, a moment after the provider took its message: wait for the last.
    await vi.waitFor(
      async () => {
        const count = metricValue((await getOnNewConnection(`${base}/metrics`)).body, DELIVERY_COMPLETED) ?? 0;
        if (count < ORDERS) throw new Error(`${count} of ${ORDERS} delivery jobs counted`);
      },
      { timeout: 30_000, interval: 100 },
    );
    for (let scrape = 0; scrape < 4; scrape++) {
      const { status, body } = await getOnNewConnection(`${base}/metrics`);
      expect(status, body).toBe(200);
      expect(metricValue(body, 'smsblossom_webhooks_total{topic="orders/paid",outcome="accepted"}')).toBe(ORDERS);
      expect(metricValue(body, DELIVERY_COMPLETED)).toBeGreaterThanOrEqual(ORDERS);
      expect(body.match(/^# TYPE smsblossom_queue_jobs gauge$/gm)).toHaveLength(1);
      expect(metricValue(body, 'smsblossom_messages{status="delivered"}')).toBeGreaterThanOrEqual(0);
      expect(await promtoolProblems(body)).toEqual([]);
    }

    // A process that dies is replaced.
    const [victim, survivor] = children as [number, number];
    process.kill(victim, 'SIGKILL');
    const replacement = await service.waitForLine('a process started again', (l) => l.msg === 'Workers started' && !children.includes(l.pid!));
    pids.push(replacement.pid!);
    expect(service.lines.find((l) => l.msg === 'A process exited unexpectedly: starting another')).toMatchObject({ exitedPid: victim, signal: 'SIGKILL' });
    expect((await fetch(`${base}/health/ready`)).status).toBe(200);

    const port = Number(new URL(base).port);
    service.proc.kill('SIGTERM');
    const result = await service.exited;
    expect(result, service.stderr()).toEqual({ code: 0, signal: null });
    // Each process stopped gracefully, then the primary.
    expect(service.lines.filter((l) => l.msg === 'Stopped').map((l) => l.pid).sort()).toEqual([survivor, replacement.pid, service.proc.pid].sort());
    for (const pid of [survivor, replacement.pid!]) expect(isAlive(pid)).toBe(false);
    expect(await portAccepts(port)).toBe(false);
    expect(await portAccepts(sandboxPort)).toBe(false);
  });
});

describe('start on several processes that cannot serve', () => {
  const schema = uniqueName('procsfail');
  const prefix = `smsblossom-test:${uniqueName('procsfail')}`;
  afterAll(async () => {
    await dropSchema(schema);
    await deleteRedisPrefix(prefix);
  });

  it('fails the start with exit 1 when a process cannot start (its port is taken), leaving none behind', { timeout: 120_000 }, async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const service = startService(serviceEnv(prefix, schema, { PROCESSES: '2', PORT: String(port) }));
      const result = await service.exited;
      expect(result, service.stderr()).toEqual({ code: 1, signal: null });
      expect(service.stderr()).toContain('EADDRINUSE');
      const failed = service.lines.find((l) => l.msg === 'A process failed to start: stopping the others');
      expect(failed?.exitedPid).toBeDefined();
      const forked = service.lines.filter((l) => l.msg === 'Database ready' && l.pid !== service.proc.pid).map((l) => l.pid!);
      for (const pid of forked) expect(isAlive(pid)).toBe(false);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});

describe('start on the embedded PGlite', () => {
  const prefix = `smsblossom-test:${uniqueName('procs-pglite')}`;
  let dataDir: string | undefined;
  afterAll(async () => {
    await deleteRedisPrefix(prefix);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('refuses PROCESSES=2 without DATABASE_URL, naming the setting, exit 2', async () => {
    const r = await run(process.execPath, ['dist/cli.js', 'start'], { PROCESSES: '2', REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^smsblossom: invalid configuration: PROCESSES: must be 1 with the embedded database .*set DATABASE_URL/m);
  });

  it('runs one process by default, saying why when the machine has more cores', { timeout: 120_000 }, async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'smsblossom-procs-'));
    const service = startService({ REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix, REDIS_EMBEDDED: 'false', DATA_DIR: dataDir, HOUSEKEEPING_SCHEDULES: 'false' });
    try {
      const listening = await service.waitForLine('listening', (l) => l.msg === 'SMS Blossom is listening');
      // No supervisor: the process started is the one that serves.
      expect(listening.pid).toBe(service.proc.pid);
      expect(service.lines.some((l) => l.msg === 'Starting processes')).toBe(false);
      if (os.availableParallelism() > 1) {
        const why = await service.waitForLine('the reason for one process', (l) => Boolean(l.msg?.startsWith('Running one process')));
        expect(why.msg).toContain('PGlite');
        expect(why.pid).toBe(service.proc.pid);
      }
    } finally {
      service.proc.kill('SIGTERM');
    }
    expect(await service.exited).toEqual({ code: 0, signal: null });
  });
});
