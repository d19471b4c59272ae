#!/usr/bin/env node
/**
 * `npm run build`: compiles src/ to dist/ with tsc (tsconfig.build.json: JavaScript and source maps; imported JSON
 * is emitted by tsc) and copies what the compiled code reads from disk beside it (the SQL migrations, the Shopify
 * sandbox's GraphQL schema).
 *
 *   node scripts/build.mjs              clean build; exits 1 on a type error
 *   node scripts/build.mjs --if-stale   build only when a file under src/ (or a tsconfig, or package.json) is newer
 *                                       than the last build; used before `npm start` and by the test suite's setup
 *
 * Plain JavaScript run by node: it runs before anything is compiled and must not need tsx.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIST = path.join(ROOT, 'dist');
/** Written after a build without errors; its mtime is when that build started. */
const STAMP = path.join(DIST, '.build-stamp');
/** Held while a build runs, so two test runs or a test run and `npm start` do not write dist/ at once. */
const LOCK = path.join(ROOT, '.build-lock');
/** Files copied as they are, relative to src/ (the compiled code finds them beside itself). */
const ASSET_DIRS = ['db/migrations', 'sandbox/shopify/schema'];
const INPUTS = ['src', 'tsconfig.json', 'tsconfig.build.json', 'package.json'];

function newestMtime(p) {
  const st = fs.statSync(p, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const entry of fs.readdirSync(p)) newest = Math.max(newest, newestMtime(path.join(p, entry)));
  return newest;
}

function isStale() {
  const stamp = fs.statSync(STAMP, { throwIfNoEntry: false });
  if (!stamp) return true;
  return INPUTS.some((input) => newestMtime(path.join(ROOT, input)) > stamp.mtimeMs);
}

function tscPath() {
  try {
    return createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    return undefined;
  }
}

/** `clean`: empty dist/ first, so no output of a deleted source survives (not while tests may be running from it). */
function build(clean) {
  const tsc = tscPath();
  if (!tsc) {
    // A production install (`npm ci --omit=dev`) has no compiler: run the dist/ that was built before packaging.
    if (fs.existsSync(path.join(DIST, 'cli.js'))) {
      console.error('build: typescript is not installed; using the existing dist/');
      return 0;
    }
    console.error('build: dist/ is missing and typescript is not installed: run `npm install` (with dev dependencies), then `npm run build`');
    return 1;
  }
  const started = new Date();
  if (clean) fs.rmSync(DIST, { recursive: true, force: true });
  const result = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' });
  for (const dir of ASSET_DIRS) fs.cpSync(path.join(ROOT, 'src', dir), path.join(DIST, dir), { recursive: true });
  if (result.status !== 0) {
    console.error(`build: tsc failed (exit ${result.status ?? result.signal})`);
    return 1;
  }
  fs.writeFileSync(STAMP, '');
  fs.utimesSync(STAMP, started, started);
  return 0;
}

function withLock(fn) {
  const deadline = Date.now() + 5 * 60_000;
  for (;;) {
    try {
      fs.mkdirSync(LOCK);
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      // A lock older than any build is left over from a killed one.
      const st = fs.statSync(LOCK, { throwIfNoEntry: false });
      if (st && Date.now() - st.mtimeMs > 5 * 60_000) fs.rmSync(LOCK, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`build: ${LOCK} is held by another build`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(LOCK, { recursive: true, force: true });
  }
}

const ifStale = process.argv.includes('--if-stale');
// Checked again under the lock: a build that held it may have just brought dist/ up to date.
process.exitCode = withLock(() => (ifStale ? (isStale() ? build(false) : 0) : build(true)));
