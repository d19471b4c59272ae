/**
 * Runs the Shopify Admin sandbox on its own: `npm run shopify-sandbox -- [--port 4020] [--host 127.0.0.1]
 * [--customers 1000] [--secret S] [--api-key K] [--timezone America/New_York] [--webhook-url URL] [--bulk-delay-ms 200]`.
 * The secret and API key default to the service's own (SHOPIFY_API_SECRET / SHOPIFY_API_KEY, or their development
 * values), so a service started from the same environment can talk to it. Prints the base URL, stops on SIGTERM or SIGINT.
 */
import { parseArgs } from 'node:util';
import { loadConfigOrExit } from '../../config.js';
import { createLogger } from '../../logger.js';
import { closeOnSignals } from '../signals.js';
import { startShopifySandbox } from './server.js';

function integer(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) {
    process.stderr.write(`--${name} must be a non-negative integer, got "${value}"\n`);
    process.exit(2);
  }
  return Number(value);
}

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '4020' },
    host: { type: 'string', default: '127.0.0.1' },
    customers: { type: 'string', default: '1000' },
    secret: { type: 'string' },
    'api-key': { type: 'string' },
    timezone: { type: 'string' },
    'webhook-url': { type: 'string' },
    'bulk-delay-ms': { type: 'string' },
  },
  strict: true,
});

const { shopify } = loadConfigOrExit();
const apiKey = values['api-key'] ?? shopify.apiKey;
if (apiKey === undefined) {
  process.stderr.write('--api-key is required when SHOPIFY_API_KEY is not set in production\n');
  process.exit(2);
}
const logger = createLogger({ level: 'info', name: 'shopify-sandbox' });
const sandbox = await startShopifySandbox({
  port: integer('port', values.port, 4020),
  host: values.host!,
  customers: integer('customers', values.customers, 1000),
  secret: values.secret ?? shopify.apiSecret,
  apiKey,
  logger,
  ...(values.timezone !== undefined ? { timezone: values.timezone } : {}),
  ...(values['webhook-url'] !== undefined ? { webhookUrl: values['webhook-url'] } : {}),
  ...(values['bulk-delay-ms'] !== undefined ? { bulkDelayMs: integer('bulk-delay-ms', values['bulk-delay-ms'], 200) } : {}),
});
process.stdout.write(`${sandbox.url}\n`);

closeOnSignals('shopify sandbox', () => sandbox.close(), logger);
