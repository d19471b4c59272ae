/**
 * Headless Chromium for the browser tests (playwright-core drives an installed Chromium; it bundles none) and the
 * screenshots they keep as test artifacts, in test-artifacts/screenshots/ (gitignored; .ci/run prints the path).
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { PROJECT_ROOT } from './spawn.js';

/** Debian's package (/usr/bin/chromium; `.ci/run` installs it); CHROMIUM_PATH overrides. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p)) ?? '/usr/bin/chromium';

export const SCREENSHOT_DIR = path.join(PROJECT_ROOT, 'test-artifacts', 'screenshots');

export async function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium, or set CHROMIUM_PATH`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] });
}

/**
 * Saves screenshots as `<flow>-<nn>-<step>.png`, numbered in the order taken, so a run's pictures read as the steps a
 * person took: of the whole page, of one element, or of a region of the page (`clip`, in page coordinates: the part of
 * a long page that matters). Returns the function that takes one; it answers the file's path.
 */
export function screenshots(flow: string): (target: Page | Locator, step: string, clip?: { x: number; y: number; width: number; height: number }) => Promise<string> {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  // The last run's pictures of this flow go first: a step renamed or no longer reached leaves no stale file behind.
  for (const f of fs.readdirSync(SCREENSHOT_DIR)) if (f.startsWith(`${flow}-`) && f.endsWith('.png')) fs.rmSync(path.join(SCREENSHOT_DIR, f));
  let n = 0;
  return async (target, step, clip) => {
    const file = path.join(SCREENSHOT_DIR, `${flow}-${String(++n).padStart(2, '0')}-${step}.png`);
    await ('goto' in target ? target.screenshot({ path: file, fullPage: true, ...(clip ? { clip } : {}) }) : target.screenshot({ path: file }));
    return file;
  };
}
