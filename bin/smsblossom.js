#!/usr/bin/env node
// The installed `smsblossom` command: the compiled CLI in dist/ (`npm run build`; `npm start` and the other
// production scripts build it when it is missing or stale). Plain node, so signals reach the process directly.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('smsblossom: dist/ is missing: run `npm run build` first\n');
  process.exit(1);
}
process.setSourceMapsEnabled(true);
const { runFromCli } = await import(cli.href);
await runFromCli(process.argv.slice(2));
