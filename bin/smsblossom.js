#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so the installed command and `npm run cli` run the same code.
import { register } from 'tsx/esm/api';

register();
const { runFromCli } = await import('../src/cli.ts');
await runFromCli(process.argv.slice(2));
