/**
 * A delivery worker process for the killed-worker test: `node --import tsx test/helpers/deliveryWorkerChild.ts`,
 * configured by the environment (REDIS_*, DATABASE_*, MITTO_API_URL/KEY pointing at the test's sandbox, PUBLIC_URL
 * pointing at the test's API). Runs {@link startFastDeliveryWorker} with the real Mitto client, writes
 * `{"event":"ready"}` to stdout, and waits to be killed.
 */
import { loadConfig } from '../../src/config.js';
import { createMittoProvider } from '../../src/messages/providers/mitto.js';
import { startSystem } from '../../src/system.js';
import { startFastDeliveryWorker } from './deliveryWorker.js';

const config = loadConfig();
const system = await startSystem({ config, api: false, workers: [] });
const provider = createMittoProvider({ baseUrl: config.sms.mittoApiUrl, apiKey: config.sms.mittoApiKey, timeoutMs: config.sms.timeoutMs });
const fast = startFastDeliveryWorker({ ...system, provider, publicUrl: config.sms.publicUrl });
await fast.worker.waitUntilReady();
process.stdout.write(`${JSON.stringify({ event: 'ready', pid: process.pid })}\n`);
