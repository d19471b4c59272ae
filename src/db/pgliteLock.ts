/**
 * One process at a time on an embedded database. PGlite is PostgreSQL compiled to run inside one process: a second
 * process that opens the same directory gets its own copy of the database in memory, and what it writes is lost to
 * the first (a `contacts import` beside the running service reported its rows imported, and the service never saw
 * them). So the process that opens the directory holds a lock file there, and another is refused with a message that
 * says who holds it and what to do instead.
 *
 * The lock file (`<dir>/smsblossom.lock`) is created atomically (`O_CREAT | O_EXCL`) and holds the owner's pid and
 * command. A lock whose process is gone (killed, crashed) is taken over. It is removed on close and when the process
 * exits. Opening the same directory twice in one process shares the one lock (a count of holders).
 */
import fs from 'node:fs';
import path from 'node:path';
import { AppError } from '../errors.js';

export const LOCK_FILE = 'smsblossom.lock';

interface LockOwner {
  pid: number;
  command: string;
}

/** Locks this process holds, by lock file path, with the number of open databases using each. */
const held = new Map<string, number>();
let exitHookInstalled = false;

function readOwner(file: string): LockOwner | null {
  try {
    const owner = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LockOwner>;
    return Number.isSafeInteger(owner.pid) && owner.pid! > 0 ? { pid: owner.pid!, command: String(owner.command ?? '') } : null;
  } catch {
    // Unreadable, or written halfway by a process killed at that moment: nobody can be holding it.
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tryCreate(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    fs.writeSync(fd, JSON.stringify({ pid: process.pid, command: ['smsblossom', ...process.argv.slice(2)].join(' ') } satisfies LockOwner));
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

function releaseAllOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const file of held.keys()) removeIfOurs(file);
    held.clear();
  });
}

function removeIfOurs(file: string): void {
  if (readOwner(file)?.pid !== process.pid) return;
  try {
    fs.unlinkSync(file);
  } catch {
    // Already gone: nothing to release.
  }
}

/**
 * Takes the lock on the embedded database in `dir`, or throws AppError DATABASE_IN_USE naming the process that holds
 * it. Returns the release function (idempotent).
 */
export function lockPgliteDirectory(dir: string): () => void {
  const file = path.join(dir, LOCK_FILE);
  const count = held.get(file);
  if (count === undefined) {
    // Two attempts: the second after removing a lock whose owner is gone.
    for (let attempt = 0; ; attempt++) {
      if (tryCreate(file)) break;
      const owner = readOwner(file);
      if (owner && owner.pid !== process.pid && isAlive(owner.pid)) {
        throw new AppError(
          'DATABASE_IN_USE',
          `the embedded database in ${dir} is in use by process ${owner.pid}${owner.command ? ` (${owner.command})` : ''}; ` +
            'stop it, or use the HTTP API, or set DATABASE_URL to a PostgreSQL server',
          { details: { dataDir: dir, pid: owner.pid } },
        );
      }
      if (attempt > 0) throw new AppError('DATABASE_IN_USE', `the embedded database in ${dir}: cannot take its lock file ${file}`);
      // A stale lock: its process is gone. Read again just before removing, so a lock another process has just
      // taken over is left alone.
      if (readOwner(file)?.pid === owner?.pid) fs.rmSync(file, { force: true });
    }
    releaseAllOnExit();
  }
  held.set(file, (count ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const left = (held.get(file) ?? 1) - 1;
    if (left > 0) {
      held.set(file, left);
      return;
    }
    held.delete(file);
    removeIfOurs(file);
  };
}
