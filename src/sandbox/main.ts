/**
 * Runs the Mitto-compatible sandbox on its own: `tsx src/sandbox/main.ts [--port 4010] [--host 127.0.0.1]
 * [--api-key KEY] [--seed N] [--dlr-delay-ms 50]`. Prints the base URL, stops on SIGTERM or SIGINT.
 */
import { parseArgs } from 'node:util';
import { createLogger } from '../logger.js';
import { createSandbox } from './server.js';
import { closeOnSignals } from './signals.js';

function integer(name: string, value: string | undefined, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  if (!/^-?\d+$/.test(value)) {
    process.stderr.write(`--${name} must be an integer, got "${value}"\n`);
    process.exit(2);
  }
  return Number(value);
}

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '4010' },
    host: { type: 'string', default: '127.0.0.1' },
    'api-key': { type: 'string' },
    seed: { type: 'string' },
    'dlr-delay-ms': { type: 'string' },
  },
  strict: true,
});

const port = integer('port', values.port, 4010)!;
const logger = createLogger({ level: 'info', name: 'sms-sandbox' });
const sandbox = await createSandbox({
  logger,
  ...(values['api-key'] !== undefined ? { apiKey: values['api-key'] } : {}),
  ...(values.seed !== undefined ? { seed: integer('seed', values.seed, undefined)! } : {}),
  ...(values['dlr-delay-ms'] !== undefined ? { dlrDelayMs: integer('dlr-delay-ms', values['dlr-delay-ms'], undefined)! } : {}),
});
const url = await sandbox.listen(port, values.host);
process.stdout.write(`${url}\n`);

closeOnSignals('sandbox', () => sandbox.close(), logger);
