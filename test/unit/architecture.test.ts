/**
 * The layering of src/ (rules in .dependency-cruiser.cjs): no import cycle, db/ at the bottom importing nothing above
 * it, queries only in db/, nothing from scripts/, test/ or bench/. The same rules run on a small tree with one breach
 * of each, so a rule that stopped matching (a renamed folder, a changed pattern) fails here instead of passing silently.
 *
 * Imports alone cannot see a query built on a `Db` handed in (`db.query.shops.findFirst()`, `db.execute('…')`): the
 * type checker can, by where the method called is declared.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { cruise, type ICruiseOptions, type IViolation } from 'dependency-cruiser';
import ts from 'typescript';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT as ROOT } from '../helpers/spawn.js';

/** The rule breaches of `baseDir/src`; the project's tsconfig resolves its `.js` specifiers to `.ts` files. */
async function violations(baseDir: string, tsConfigFile?: string): Promise<IViolation[]> {
  const options: ICruiseOptions = await extractDepcruiseOptions(path.join(ROOT, '.dependency-cruiser.cjs'));
  const transpile = tsConfigFile ? { tsConfig: extractTSConfig(tsConfigFile) } : undefined;
  const result = await cruise(['src'], { ...options, baseDir, validate: true, tsConfig: tsConfigFile ? options.tsConfig : undefined }, undefined, transpile);
  if (typeof result.output === 'string') throw new Error('dependency-cruiser returned text, not a result');
  return result.output.summary.violations;
}

/** Where the query builder and the drivers declare their API. */
const DATABASE_API = /\/node_modules\/(@types\/)?(drizzle-orm|pg|pg-[a-z-]+|@electric-sql\/pglite)\//;

/** `file:line expression` of each use of the database API in src/ outside src/db/, per the type checker. */
function databaseApiOutsideDb(root: string, tsConfigFile: string): string[] {
  const config = ts.readConfigFile(tsConfigFile, ts.sys.readFile);
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, root);
  const sources = ts.sys.readDirectory(path.join(root, 'src'), ['.ts']);
  const program = ts.createProgram(sources, { ...parsed.options, noEmit: true });
  const checker = program.getTypeChecker();
  const found: string[] = [];
  for (const file of program.getSourceFiles()) {
    const rel = path.relative(root, file.fileName).split(path.sep).join('/');
    if (!rel.startsWith('src/') || rel.startsWith('src/db/')) continue;
    const visit = (node: ts.Node): void => {
      if (ts.isPropertyAccessExpression(node)) {
        const declaredIn = checker.getSymbolAtLocation(node.name)?.declarations?.[0]?.getSourceFile().fileName ?? '';
        if (DATABASE_API.test(declaredIn)) found.push(`${rel}:${file.getLineAndCharacterOfPosition(node.getStart()).line + 1} ${node.getText()}`);
      }
      ts.forEachChild(node, visit);
    };
    visit(file);
  }
  return found;
}

const describeViolation = (v: IViolation) =>
  `${v.rule.name}: ${v.from} → ${v.to}${v.cycle?.length ? ` (cycle: ${v.cycle.map((c) => c.name).join(' → ')})` : ''}`;

describe('the layering of src/', () => {
  it('has no import cycle, no upward import from db/, no query outside db/ and no import of scripts/', async () => {
    const found = await violations(ROOT, path.join(ROOT, 'tsconfig.json'));
    expect(found.map(describeViolation)).toEqual([]);
  }, 60_000);

  it('builds no query outside db/ on a database handle it was given', () => {
    expect(databaseApiOutsideDb(ROOT, path.join(ROOT, 'tsconfig.json'))).toEqual([]);
  }, 120_000);

  describe('the rules catch each breach', () => {
    let tree: string;
    beforeAll(async () => {
      tree = await fs.mkdtemp(path.join(os.tmpdir(), 'smsblossom-layers-'));
      const files: Record<string, string> = {
        // a cycle through a run-time import
        'src/cli.ts': "import { pool } from './queue/worker.js';\nexport const run = () => pool;\n",
        'src/queue/worker.ts': "import { run } from '../cli.js';\nexport const pool = 1;\nexport const again = () => run;\n",
        // a type-only cycle is erased at run time: allowed
        'src/http/app.ts': "import type { Route } from './route.js';\nexport interface Deps { route?: Route }\nexport const app = 1;\n",
        'src/http/route.ts': "import type { Deps } from './app.js';\nexport type Route = (d: Deps) => void;\n",
        // db/ importing the domain, and a leaf it may import
        'src/db/segments.ts': "import { parse } from '../campaigns/segments.js';\nimport { AppError } from '../errors.js';\nexport const q = [parse, AppError];\n",
        'src/campaigns/segments.ts': 'export const parse = 1;\n',
        'src/errors.ts': 'export class AppError extends Error {}\n',
        // a query outside db/: drizzle, a table object; a row type is fine
        'src/messages/replies.ts':
          "import { eq } from 'drizzle-orm';\nimport { shops } from '../db/schema.js';\nimport type { Shop } from '../db/schema.js';\nexport const w = (s: Shop) => eq(shops.id, s.id);\n",
        'src/db/schema.ts': "import { pgTable } from 'drizzle-orm/pg-core';\nexport const shops = pgTable('shops', {});\nexport type Shop = { id: number };\n",
        // src/ importing a script
        'src/smoke.ts': "import { runSmoke } from '../scripts/enqueueSmoke.js';\nexport const s = runSmoke;\n",
        'scripts/enqueueSmoke.ts': 'export const runSmoke = 1;\n',
        // queries on a handle, with no import the rules above would see
        'src/db/client.ts': "import type { NodePgDatabase } from 'drizzle-orm/node-postgres';\nexport type Db = NodePgDatabase;\n",
        'src/housekeeping/tasks.ts':
          "import type { Db } from '../db/client.js';\nexport const run = (db: Db) => db.execute('DELETE FROM events');\nexport const own = (d: { execute(): void }) => d.execute();\n",
      };
      for (const [file, text] of Object.entries(files)) {
        await fs.mkdir(path.dirname(path.join(tree, file)), { recursive: true });
        await fs.writeFile(path.join(tree, file), text);
      }
      await fs.symlink(path.join(ROOT, 'node_modules'), path.join(tree, 'node_modules'), 'dir');
    });
    afterAll(async () => {
      await fs.rm(tree, { recursive: true, force: true });
    });

    it('reports exactly the breaches planted', async () => {
      // A package resolves through the tree's link to the project's node_modules: named from node_modules/ on.
      const found = (await violations(tree)).map((v) => `${v.rule.name}: ${v.from} → ${v.to.replace(/^.*node_modules\//, '')}`).sort();
      expect(found).toEqual(
        [
          'db-imports-upward: src/db/segments.ts → src/campaigns/segments.ts',
          // one report per cycle
          'no-cycle: src/cli.ts → src/queue/worker.ts',
          'query-outside-db: src/messages/replies.ts → drizzle-orm/index.d.ts',
          'src-imports-outside-src: src/smoke.ts → scripts/enqueueSmoke.ts',
          'table-outside-db: src/messages/replies.ts → src/db/schema.ts',
        ].sort(),
      );
    }, 60_000);

    it('sees a query built on a handle', () => {
      expect(databaseApiOutsideDb(tree, path.join(ROOT, 'tsconfig.json'))).toEqual(['src/housekeeping/tasks.ts:2 db.execute']);
    }, 60_000);
  });
});
