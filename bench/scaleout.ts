/**
 * `npm run bench:scale-out`: messages per second of the README's "Scaling out" recipe with 1 and with 2 worker processes
 * per role (events+automations, delivery+campaigns), on one Redis with PostgreSQL reached directly and on a 3-master
 * Redis Cluster with PostgreSQL behind PgBouncer in transaction mode (test/helpers/recipe.ts, the processes the
 * scale-out suite runs). Per run: a campaign to BENCH_SCALEOUT_RECIPIENTS subscribers (send → the last one at the
 * provider) and BENCH_SCALEOUT_ORDERS signed `orders/paid` webhooks through the API (first sent → the last
 * confirmation at the provider). The provider is the Mitto sandbox in this process. Prints a table and one JSON line;
 * writes bench/results/scaleout-<date>.json.
 *
 * Environment:
 *   BENCH_SCALEOUT_RECIPIENTS   campaign recipients per run (5000)
 *   BENCH_SCALEOUT_ORDERS       orders per run (1000)
 *   BENCH_SCALEOUT_WORKERS      worker processes per role to compare (1,2)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { orderWebhook, sendLikeShopify } from '../test/faults/lib/workload.js';
import { sessionToken } from '../test/helpers/merchant.js';
import { inspectDatabase, seedCampaignShop, startRecipe, TOPOLOGIES, uniqueShopDomain, type Recipe } from '../test/helpers/recipe.js';

const recipients = Number(process.env.BENCH_SCALEOUT_RECIPIENTS ?? 5_000);
const orders = Number(process.env.BENCH_SCALEOUT_ORDERS ?? 1_000);
const workerCounts = (process.env.BENCH_SCALEOUT_WORKERS ?? '1,2').split(',').map(Number);

interface Row {
  topology: string;
  workers: number;
  campaignMsgPerSec: number;
  /** Share of the machine's CPU time (all cores) busy while the campaign was sent. */
  campaignCpuBusy: number;
  orderMsgPerSec: number;
  orderCpuBusy: number;
}

/** Busy and total CPU time of the machine so far, all cores (os.cpus()). */
function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle;
    total += t;
    busy += t - c.times.idle;
  }
  return { busy, total };
}

/** `fn`'s result and the share of the machine's CPU that was busy meanwhile. */
async function measured<T>(fn: () => Promise<T>): Promise<{ value: T; cpuBusy: number }> {
  const before = cpuTimes();
  const value = await fn();
  const after = cpuTimes();
  return { value, cpuBusy: (after.busy - before.busy) / Math.max(1, after.total - before.total) };
}

/** Resolves when `count()` reaches `n`, checking every 100 ms; rejects past `timeoutMs`. */
async function until(what: string, count: () => number, n: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (count() < n) {
    if (Date.now() > deadline) throw new Error(`${what}: ${count()} of ${n} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function campaignRate(recipe: Recipe, db: ReturnType<typeof inspectDatabase>): Promise<number> {
  const shop = uniqueShopDomain('bench-camp');
  await seedCampaignShop(db, shop, recipients, '+4177');
  const auth = async () => ({ authorization: `Bearer ${await sessionToken(shop)}` });
  const created = await fetch(`${recipe.apis[0]}/api/campaigns`, {
    method: 'POST',
    headers: { ...(await auth()), 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'Bench', body: 'Hi {{ customer.firstName }}, the bench sale is on', filter: { tags: { any: ['fan'] } } }),
  });
  if (created.status !== 201) throw new Error(`campaign not created: ${created.status} ${await created.text()}`);
  const { id } = (await created.json()) as { id: number };
  const ours = () => recipe.sandbox.messages().filter((m) => m.text.includes('the bench sale is on') && m.to.startsWith('+4177')).length;
  const before = ours();
  const started = performance.now();
  const sent = await fetch(`${recipe.apis[0]}/api/campaigns/${id}/send`, { method: 'POST', headers: await auth() });
  if (sent.status !== 202) throw new Error(`campaign not sent: ${sent.status}`);
  await until('campaign messages at the provider', () => ours() - before, recipients, 600_000);
  return recipients / ((performance.now() - started) / 1000);
}

async function orderRate(recipe: Recipe): Promise<number> {
  const shop = uniqueShopDomain('bench-orders');
  const webhooks = Array.from({ length: orders }, (_, i) => orderWebhook(i, shop));
  const confirmations = () => recipe.sandbox.messages().filter((m) => m.to.startsWith('+1201555')).length;
  const before = confirmations();
  const started = performance.now();
  const result = await sendLikeShopify(recipe.apis[0]!, webhooks, 32, 600_000);
  if (result.unexpected.length) throw new Error(`unexpected answers: ${JSON.stringify(result.unexpected.slice(0, 3))}`);
  await until('order confirmations at the provider', () => confirmations() - before, orders, 600_000);
  return orders / ((performance.now() - started) / 1000);
}

const rows: Row[] = [];
for (const [label, build] of TOPOLOGIES) {
  const topology = await build();
  try {
    for (const workers of workerCounts) {
      const recipe = await startRecipe(topology, { apis: 1, eventsWorkers: workers, deliveryWorkers: workers, housekeepingWorkers: 0 });
      const db = inspectDatabase(topology);
      try {
        const order = await measured(() => orderRate(recipe));
        const campaign = await measured(() => campaignRate(recipe, db));
        rows.push({ topology: label, workers, campaignMsgPerSec: campaign.value, campaignCpuBusy: campaign.cpuBusy, orderMsgPerSec: order.value, orderCpuBusy: order.cpuBusy });
      } finally {
        await db.end();
        await recipe.stop();
      }
    }
  } finally {
    await topology.stop();
  }
}

const table = [
  '| topology | worker processes per role | campaign messages/s | CPU busy | order confirmations/s | CPU busy |',
  '|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.topology} | ${r.workers} | ${r.campaignMsgPerSec.toFixed(0)} | ${(r.campaignCpuBusy * 100).toFixed(0)}% | ${r.orderMsgPerSec.toFixed(0)} | ${(r.orderCpuBusy * 100).toFixed(0)}% |`,
  ),
].join('\n');
const result = { bench: 'scaleout', date: new Date().toISOString(), machine: { cores: os.availableParallelism(), node: process.version }, recipients, orders, rows };
console.log(table);
console.log(JSON.stringify(result));
await mkdir('bench/results', { recursive: true });
await writeFile(`bench/results/scaleout-${result.date.slice(0, 10)}.json`, `${JSON.stringify(result, null, 2)}\n`);
