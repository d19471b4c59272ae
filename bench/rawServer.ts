/**
 * The raw BullMQ reference, run as a process of its own so its CPU time is measured like the service's. Modes:
 *   chain  — three queues whose no-op workers each add the job to the next queue, with SMS Blossom's default
 *            events, automations and delivery concurrencies; the last hop keeps its completed jobs so the benchmark
 *            can read when each finished;
 *   single — one queue of no-op jobs, processed with the delivery worker's default concurrency.
 * Environment: REDIS_URL, REDIS_PREFIX, and the concurrencies EVENTS_CONCURRENCY, AUTOMATIONS_CONCURRENCY,
 * DELIVERY_CONCURRENCY (SMS Blossom's defaults when unset). Prints READY once its workers are connected, starts them
 * when a line arrives on stdin, stops on SIGTERM.
 */
import { createInterface } from 'node:readline';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfigOrExit } from '../src/config.js';
import { CHAIN, SINGLE } from './lib.js';

const mode = process.argv[2];
if (mode === 'chain' || mode === 'single') {
  // The same parsing of the same variables as the service: equal concurrencies by construction.
  const config = loadConfigOrExit();
  const { concurrency } = config.workers;
  const prefix = config.redis.prefix;
  const connect = () => new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const producer = connect();
  const next = [new Queue(CHAIN[1], { connection: producer, prefix }), new Queue(CHAIN[2], { connection: producer, prefix })];
  const opts = { removeOnComplete: 100, removeOnFail: 50 };
  const lastOpts = { removeOnComplete: false, removeOnFail: 50 };
  const workers =
    mode === 'chain'
      ? CHAIN.map(
          (name, i) =>
            new Worker(
              name,
              async (job) => {
                if (i < 2) await next[i]!.add(job.name, job.data, i === 1 ? lastOpts : opts);
              },
              { connection: connect(), prefix, concurrency: [concurrency.events, concurrency.automations, concurrency.delivery][i], autorun: false },
            ),
        )
      : [new Worker(SINGLE, async () => undefined, { connection: connect(), prefix, concurrency: concurrency.delivery, autorun: false })];
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  process.stdout.write('READY\n');
  createInterface({ input: process.stdin }).once('line', () => {
    for (const w of workers) void w.run();
  });
  process.once('SIGTERM', () =>
    void Promise.allSettled(workers.map((w) => w.close()))
      .then(() => Promise.allSettled(next.map((q) => q.close())))
      .then(() => process.exit(0)),
  );
} else {
  process.stderr.write('usage: rawServer.ts chain|single\n');
  process.exit(2);
}
