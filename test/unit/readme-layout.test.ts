/**
 * The README's Layout section is checked against the tree: every path it names exists, and every folder and module at
 * the top of src/ (and every folder of test/, scripts/ and bench/'s place) is named there, so a new folder cannot
 * arrive without a line that says what it is for.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT as ROOT } from '../helpers/spawn.js';

/** The paths the Layout block starts its lines with (`src/db/`, `test/unit, test/integration` …). */
function layoutPaths(): string[] {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = /^## Layout\n([\s\S]*?)^## /m.exec(readme)?.[1];
  if (!section) throw new Error('README has no "## Layout" section');
  const block = /```\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('README\'s Layout section has no code block');
  return block
    .split('\n')
    .filter((line) => line.trim() !== '')
    .flatMap((line) => {
      // The names come first, separated by commas; two or more spaces start the description.
      const names = line.split(/\s{2,}/)[0]!;
      return names.split(',').map((n) => n.trim());
    });
}

/** What a reader must find in the Layout: top-level folders and modules of src/, the folders of test/. */
function expectedPaths(): string[] {
  const src = fs
    .readdirSync(path.join(ROOT, 'src'), { withFileTypes: true })
    .filter((e) => e.isDirectory() || e.name.endsWith('.ts'))
    .map((e) => `src/${e.name}${e.isDirectory() ? '/' : ''}`);
  const tests = fs
    .readdirSync(path.join(ROOT, 'test'), { withFileTypes: true })
    .filter((e) => e.isDirectory() && !['helpers', 'fixtures'].includes(e.name))
    .map((e) => `test/${e.name}`);
  return [...src, ...tests, 'bench/', 'scripts/'];
}

describe("README's Layout section", () => {
  const named = layoutPaths();

  it('names only paths that exist', () => {
    const missing = named.filter((p) => !fs.existsSync(path.join(ROOT, p)));
    expect(missing, 'paths in the Layout section that are not in the tree').toEqual([]);
  });

  it('names every folder and module at the top of src/ and every folder of tests', () => {
    const covered = (p: string) => named.some((n) => n === p || n.startsWith(p));
    const unnamed = expectedPaths().filter((p) => !covered(p));
    expect(unnamed, 'add a line for each to the README\'s Layout section').toEqual([]);
  });
});
