/** The `--queues` flag of `smsblossom worker`: which queues a worker process serves. */
import { QUEUE_NAMES, type QueueName } from '../config.js';
import { AppError } from '../errors.js';

/**
 * Parses `--queues a,b` (or `--queues=a,b`) from argv into distinct queue names, in the order given; undefined when
 * the flag is absent. A flag with no names (`--queues`, `--queues=`, `--queues ,`, `--queues --other`) is an error
 * rather than an empty list: a worker process serving no queue would look healthy and do nothing.
 */
export function queuesFromArgv(argv: readonly string[]): QueueName[] | undefined {
  const i = argv.findIndex((a) => a === '--queues' || a.startsWith('--queues='));
  if (i < 0) return undefined;
  const arg = argv[i]!;
  const value = arg === '--queues' ? argv[i + 1] : arg.slice('--queues='.length);
  const names = value === undefined || value.startsWith('-') ? [] : value.split(',').map((s) => s.trim()).filter(Boolean);
  if (!names.length) throw new AppError('VALIDATION_FAILED', `--queues needs a comma-separated list of queue names (${QUEUE_NAMES.join(', ')})`);
  for (const n of names) {
    if (!(QUEUE_NAMES as readonly string[]).includes(n)) {
      throw new AppError('UNKNOWN_QUEUE', `unknown queue "${n}" (known: ${QUEUE_NAMES.join(', ')})`);
    }
  }
  return [...new Set(names)] as QueueName[];
}
