/**
 * A worker process for shutdown tests: `node --import tsx test/helpers/workerChild.ts`, configured by the environment
 * like `smsblossom worker --queues events`, but serving `events` with {@link slowProcessor}.
 *
 * Signal handling mirrors `runUntilSignalled` in src/cli.ts (not exported, and the CLI cannot be handed a processor):
 * on SIGTERM/SIGINT stop the system and let the process end by itself; a second signal exits at once. The process is
 * not made to exit after stopping: a handle left open by `stop()` keeps it alive, and the test sees that as a hang.
 *
 * Writes one JSON line to stdout at each step, `{"event":"ready"|"stopping"|"stopped"|"stop-failed"}`, for the test to
 * wait on.
 */
import { loadConfig } from '../../src/config.js';
import { startSystem } from '../../src/system.js';
import { slowProcessor } from './slowJob.js';

const say = (event: string, extra: Record<string, unknown> = {}) => process.stdout.write(`${JSON.stringify({ event, ...extra })}\n`);

const config = loadConfig();
const system = await startSystem({
  config,
  api: false,
  workers: ['events'],
  processors: { events: slowProcessor(config.redis.prefix) },
});

let signalled = false;
const onSignal = (signal: NodeJS.Signals) => {
  if (signalled) process.exit(1);
  signalled = true;
  const stopping = system.stop();
  // Said after stop() has begun: by then every worker is closing and takes no new job.
  say('stopping', { signal });
  stopping.then(
    () => say('stopped'),
    (err: Error) => {
      say('stop-failed', { error: err.message });
      process.exitCode = 1;
    },
  );
};
process.on('SIGTERM', onSignal);
process.on('SIGINT', onSignal);
say('ready', { pid: process.pid });
