/**
 * Issue 13 (Growth): `smsblossom contacts import` streams a file of any size — parsed as a stream, stored a page at a
 * time, memory bounded — with a progress bar, a summary of imported and rejected rows (the first listed, all counted,
 * every one written to a rejects file with its line) and exit 1 when any row was rejected. The CSV rules are the
 * route's: the same parser options and the same row checks, so a file reads the same through either.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importContactsStream, parseContactsCsv } from '../../src/contacts/import.js';
import { openDatabase, type Database } from '../../src/db/client.js';
import { migrate } from '../../src/db/migrate.js';
import { getShopByDomain, upsertShop } from '../../src/db/shops.js';
import { run } from '../helpers/spawn.js';
import { deleteRedisPrefix, dropSchema, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from '../helpers/system.js';

const schema = uniqueName('import');
const prefix = `smsblossom-test:${uniqueName('import')}`;
const ENV = { DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema, REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix, REDIS_EMBEDDED: 'false' };
const SHOP = 'stream-blooms.myshopify.com';
/** Prints the process's peak resident set (kB) as it exits: the CLI is measured from inside, on any platform. */
const PEAK_RSS = 'data:text/javascript,process.on("exit",()=>process.stderr.write("peak_rss_kb="+process.resourceUsage().maxRSS+"\\n"))';

const ROWS = 200_000;
const phoneOf = (i: number) => `+1415${String(2_000_000 + i).padStart(7, '0')}`;
/** Lines (1-based, the header is 1) written as bad rows, and what the import must say about them. */
const BAD: Record<number, (n: number) => string> = {
  1_001: () => 'nope,Bad,,',
  50_002: () => '+14152000100,Twice,,', // the number of line 102
  150_003: () => `${phoneOf(ROWS + 10)},Ok,,not-a-state`,
  199_990: () => '+14158888888,"Unclosed,,', // a quote opened and never closed: the rows after it are recovered
};

async function writeCsv(file: string): Promise<void> {
  const handle = await fs.open(file, 'w');
  try {
    let chunk = 'phone,first_name,tags,consent\n';
    for (let line = 2; line <= ROWS + 1; line++) {
      chunk += BAD[line] ? `${BAD[line]!(line)}\n` : `${phoneOf(line - 2)},Fan${line},vip;spring,subscribed\n`;
      if (chunk.length > 1 << 20) {
        await handle.write(chunk);
        chunk = '';
      }
    }
    await handle.write(chunk);
  } finally {
    await handle.close();
  }
}

describe('contacts import as a stream', () => {
  let dir: string;
  let db: Database;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smsblossom-import-'));
    db = await openDatabase({ url: TEST_DATABASE_URL, schema, poolSize: 2, dataDir: 'memory://' });
    await migrate(db);
    await upsertShop(db.db, SHOP);
  });
  afterAll(async () => {
    await db?.close();
    await fs.rm(dir, { recursive: true, force: true });
    await dropSchema(schema);
    await deleteRedisPrefix(prefix);
  });

  it('reads a file the same way as the route does: the same rows kept and the same errors, a broken quote recovered', async () => {
    const csv = 'phone,first_name\n+14155550201,"Ada\n+14155550202,Grace\n+14155550203,"Hedy"\n+14155550204,Bo\nnope,x\n+14155550202,again\n';
    const whole = parseContactsCsv(csv, { countryCode: null });
    const shop = (await getShopByDomain(db.db, SHOP))!;
    const streamed = await importContactsStream(db.db, shop, () => Readable.from([Buffer.from(csv.slice(0, 20)), Buffer.from(csv.slice(20))]));
    expect(streamed.errors).toEqual(whole.errors);
    expect(streamed).toMatchObject({ rows: whole.rows.length + whole.errors.length, imported: whole.rows.length, rejected: whole.errors.length });
  });

  it(`imports ${ROWS.toLocaleString('en-US')} rows through the CLI with bounded memory: counts, bad rows by line, a rejects file, exit 1`, async () => {
    const file = path.join(dir, 'contacts.csv');
    await writeCsv(file);
    // The JavaScript heap capped at 128 MB: enough for a page and the numbers seen, far from enough for 200k parsed rows.
    const args = ['--max-old-space-size=128', '--import', PEAK_RSS, 'bin/smsblossom.js', 'contacts', 'import', file, '--shop', SHOP];
    const res = await run(process.execPath, args, ENV, 300_000);
    expect(res.code, res.stderr).toBe(1);
    // The 4 bad rows, and the unclosed quote's line: the rows it swallowed are stored on the second reading.
    const good = ROWS - 4;
    expect(res.stdout).toContain(`Imported ${good} of ${ROWS} rows (${good} new, 0 updated); 4 rejected`);
    expect(res.stdout).toContain('line 1001: phone: not a valid phone number');
    expect(res.stdout).toContain('line 50002: phone: the same number as line 102');
    expect(res.stdout).toContain('line 150003: consent: "not-a-state" is not one of subscribed, unsubscribed, not_subscribed');
    expect(res.stdout).toContain('line 199990: unreadable row: a quote (") is opened and not closed on this line');
    expect(res.stderr).toMatch(/Importing \[.*\] 100% \| 200000 rows/);
    const rejects = await fs.readFile(`${file}.rejects.csv`, 'utf8');
    expect(rejects.trim().split('\n')).toHaveLength(5);
    expect(rejects).toContain('50002,"phone: the same number as line 102"');

    const [count] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM contacts WHERE shop_id = (SELECT id FROM shops WHERE domain = $1) AND phone BETWEEN $2 AND $3`,
      [SHOP, phoneOf(0), phoneOf(ROWS + 10)],
    );
    expect(count!.n).toBe(good);
    const [last] = await db.query<{ first_name: string }>(`SELECT first_name FROM contacts WHERE phone = $1`, [phoneOf(ROWS - 1)]);
    expect(last?.first_name).toBe(`Fan${ROWS + 1}`);

    const peak = Number(/peak_rss_kb=(\d+)/.exec(res.stderr)?.[1]);
    expect(peak).toBeGreaterThan(0);
    // The heap cap above is what refuses a file read whole; RSS adds the runtime (~150 MB before any row on Node 24).
    expect(peak / 1024).toBeLessThan(400);
  }, 360_000);
});
