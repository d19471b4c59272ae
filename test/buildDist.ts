/**
 * Vitest global setup: brings dist/ up to date once per run (scripts/build.mjs --if-stale), for the tests that run
 * the compiled service the way production does (bin/smsblossom.js, `npm start`). A type error elsewhere in a work in
 * progress does not stop the suite: tsc still emits, and `npm run typecheck` is where type errors fail.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from './helpers/spawn.js';

export default function setup(): void {
  const r = spawnSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  if (r.status === 0) return;
  if (!fs.existsSync(path.join(PROJECT_ROOT, 'dist/cli.js'))) throw new Error(`build failed:\n${r.stdout}${r.stderr}`);
  process.stderr.write(`dist/ built with errors (the tests that run it may fail):\n${r.stdout}${r.stderr}`);
}
