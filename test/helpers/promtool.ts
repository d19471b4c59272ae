/**
 * Prometheus's own checker of the exposition format, `promtool check metrics`: the reference for what a scrape must
 * parse as. From Debian's `prometheus` package (`apt-get install prometheus`, or only the binary:
 * `apt-get download prometheus && dpkg -x prometheus_*.deb <dir>`, which `.ci/run` does into `.ci-tools/prometheus`);
 * PROMTOOL_PATH overrides.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const CANDIDATES = [path.resolve('.ci-tools/prometheus/usr/bin/promtool'), '/usr/bin/promtool', '/usr/local/bin/promtool'];

export const PROMTOOL = process.env.PROMTOOL_PATH ?? CANDIDATES.find((p) => fs.existsSync(p)) ?? 'promtool';

/**
 * prom-client's default metrics that promtool's linter flags: gauges it names `_total` (Node's active handles,
 * requests and resources). The library's names, kept as every prom-client user's dashboards know them.
 */
const LIBRARY_NAMES = /^smsblossom_nodejs_active_(?:handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/;

/**
 * Runs `promtool check metrics` on `exposition`. Rejects when promtool cannot parse it (exit 1: not the exposition
 * format); resolves with the linter's findings (exit 3) other than those on prom-client's own default metrics.
 */
export function promtoolProblems(exposition: string): Promise<string[]> {
  if (PROMTOOL !== 'promtool' && !fs.existsSync(PROMTOOL)) throw new Error(`promtool not found at ${PROMTOOL}`);
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.on('error', (err) => reject(new Error(`promtool could not run (${err.message}): apt-get install prometheus, or set PROMTOOL_PATH`)));
    child.on('close', (code) => {
      if (code !== 0 && code !== 3) return reject(new Error(`promtool check metrics exited ${code}: ${output}`));
      resolve(
        output
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l !== '' && !LIBRARY_NAMES.test(l)),
      );
    });
    child.stdin.end(exposition);
  });
}
