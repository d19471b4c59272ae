/**
 * The server side of the intake benchmark, run as a child process so the load generator does not share its event
 * loop. Modes:
 *   full  — SMS Blossom's API (webhook intake: verify, persist, enqueue), no workers;
 *   bare  — a Fastify route that only calls `queue.add` with the same payload: the ratio's denominator.
 * Prints `READY <port>` when listening; stops on SIGTERM.
 */
import { Queue } from 'bullmq';
import Fastify from 'fastify';
import { loadConfigOrExit, withOverrides } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { getRedisConnection } from '../src/queue/redis.js';
import { startSystem } from '../src/system.js';

const mode = process.argv[2];
const config = withOverrides(loadConfigOrExit(), { http: { port: 0, host: '127.0.0.1' } });

if (mode === 'full') {
  const system = await startSystem({ config, api: true, workers: [], logger: createLogger({ level: 'silent' }) });
  process.stdout.write(`READY ${new URL(system.url!).port}\n`);
  process.once('SIGTERM', () => void system.stop().then(() => process.exit(0)));
} else if (mode === 'bare') {
  const connection = getRedisConnection({ url: config.redis.url }, 'producer');
  const queue = new Queue('bare', { connection, prefix: config.redis.prefix, defaultJobOptions: { removeOnComplete: 100, removeOnFail: 50 } });
  const app = Fastify({ bodyLimit: 1024 * 1024 });
  app.post('/bare', async (req) => {
    const job = await queue.add('orders/paid', { raw: req.body, requestId: req.id });
    return { ok: true, id: job.id };
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  process.stdout.write(`READY ${typeof address === 'object' && address ? address.port : 0}\n`);
  process.once('SIGTERM', () => void app.close().then(() => queue.close()).then(() => process.exit(0)));
} else {
  process.stderr.write('usage: intakeServer.ts full|bare\n');
  process.exit(2);
}
