/**
 * The server side of the pipeline benchmark, run as a child process so the load generator does not share its event
 * loop. Modes:
 *   full   — SMS Blossom all-in-one: the API and the events, automations and delivery workers, sending to the bundled
 *            sandbox through the real Mitto client. Prints `READY <apiPort> <sandboxUrl>`.
 *   chain  — the ratio's denominator: three BullMQ queues whose no-op workers each add the job to the next queue, with
 *            the same concurrencies as SMS Blossom's workers. Prints `READY 0`.
 * Stops on SIGTERM.
 */
import { Queue, Worker } from 'bullmq';
import { loadConfigOrExit, withOverrides } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { getRedisConnection } from '../src/queue/redis.js';
import { startSystem } from '../src/system.js';

const CHAIN = ['chain-a', 'chain-b', 'chain-c'] as const;

const mode = process.argv[2];
const config = withOverrides(loadConfigOrExit(), { http: { port: 0, host: '127.0.0.1' } });

if (mode === 'full') {
  const system = await startSystem({
    config,
    api: true,
    workers: ['events', 'automations', 'delivery'],
    logger: createLogger({ level: 'silent' }),
  });
  if (!system.sandbox) throw new Error('the pipeline benchmark needs SMS_PROVIDER=sandbox');
  const address = system.sandbox.app.server.address();
  const sandboxPort = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`READY ${new URL(system.url!).port} http://127.0.0.1:${sandboxPort}\n`);
  process.once('SIGTERM', () => void system.stop().then(() => process.exit(0)));
} else if (mode === 'chain') {
  const { concurrency } = config.workers;
  const producer = getRedisConnection({ url: config.redis.url }, 'producer');
  const next = [new Queue(CHAIN[1], { connection: producer, prefix: config.redis.prefix }), new Queue(CHAIN[2], { connection: producer, prefix: config.redis.prefix })];
  const opts = { removeOnComplete: 100, removeOnFail: 50 };
  // The last hop keeps its completed jobs so the benchmark can read each one's finish time.
  const lastOpts = { removeOnComplete: false, removeOnFail: 50 };
  const workerConcurrency = [concurrency.events, concurrency.automations, concurrency.delivery];
  const workers = CHAIN.map(
    (name, i) =>
      new Worker(
        name,
        async (job) => {
          if (i < 2) await next[i]!.add(job.name, job.data, i === 1 ? lastOpts : opts);
        },
        {
          connection: getRedisConnection({ url: config.redis.url }, 'worker'),
          prefix: config.redis.prefix,
          concurrency: workerConcurrency[i],
        },
      ),
  );
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  process.stdout.write('READY 0\n');
  process.once('SIGTERM', () =>
    void Promise.allSettled(workers.map((w) => w.close()))
      .then(() => Promise.allSettled(next.map((q) => q.close())))
      .then(() => process.exit(0)),
  );
} else {
  process.stderr.write('usage: pipelineServer.ts full|chain\n');
  process.exit(2);
}
