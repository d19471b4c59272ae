import type { Logger } from '../logger.js';

/**
 * Closes a sandbox on the first SIGTERM or SIGINT and sets the exit code by how the close went; the process ends
 * when nothing else holds the event loop. Shared by the sandboxes' command-line entries.
 */
export function closeOnSignals(name: string, close: () => Promise<void>, logger: Logger): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, `${name} stopping`);
    close().then(
      () => {
        process.exitCode = 0;
      },
      (err: unknown) => {
        logger.error({ err }, `${name} did not close cleanly`);
        process.exitCode = 1;
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
