import {
  existsSync,
  linkSync,
  lstatSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { EdgecacheError } from "../../core/errors.ts";

/**
 * One process per cache file. Two processes on one file would each follow a change log of
 * their own: a write through one would never reach what the other serves, and a start
 * without a stamp empties the file under the other. So a process takes `<file>.lock` before
 * it opens the file, and a second one is refused with the first one's pid.
 *
 * The lock file holds the holder's pid and, on Linux, the pid's start time (so a pid the
 * system reused for another program is not mistaken for the holder). It is created whole
 * (written aside, then hard-linked into place, which fails if one exists); a lock whose
 * process is gone (a crash, kill -9) is stale and taken over.
 */
export interface FileLock {
  readonly path: string;
  /** Removes the lock file if it is still this process's. */
  release(): void;
}

interface Holder {
  pid: number;
  /** /proc/<pid>/stat start time (clock ticks since boot); absent where there is no /proc. */
  start?: string;
}

/** Cache files this process holds (a second lock in one process is refused too). */
const held = new Map<string, string>();
let exitHook = false;

/**
 * Takes the lock on `file` or throws E_IN_USE naming the process that holds it.
 *
 * @example
 * const lock = lockFile("/srv/app.cache.db");
 * // ... open and use the file ...
 * lock.release();
 */
export function lockFile(file: string): FileLock {
  // One lock per file, however it is named: a symlink's own `.lock` would let a second
  // process in to empty the first one's entries.
  const path = `${realFile(file)}.lock`;
  if (held.has(path)) throw inUse(file, path, { pid: process.pid }, true);
  const mine = JSON.stringify(selfHolder());
  for (let attempt = 0; attempt < 5; attempt++) {
    if (create(path, mine)) {
      held.set(path, mine);
      hookExit();
      return { path, release: () => release(path) };
    }
    const content = readSettled(path);
    if (content === undefined) continue; // released meanwhile: try again
    const holder = parse(content);
    if (holder && alive(holder)) throw inUse(file, path, holder, false);
    takeOver(path, content);
  }
  throw new EdgecacheError("E_IN_USE", "cache", `cannot take the lock ${path}: it keeps changing`);
}

/**
 * The file's real path, symlinks resolved; for a file not there yet, its directory's real
 * path and its name (a dangling symlink: where it points, which is where it will be made).
 */
function realFile(file: string, depth = 0): string {
  try {
    return realpathSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  let link: string | undefined;
  try {
    if (lstatSync(file).isSymbolicLink()) link = readlinkSync(file);
  } catch {
    // not there at all
  }
  // 40: Linux's own limit on symlinks followed in one lookup (ELOOP).
  if (link !== undefined && depth < 40) return realFile(resolve(dirname(file), link), depth + 1);
  try {
    return join(realpathSync(dirname(file)), basename(file));
  } catch {
    return resolve(file); // no such directory: opening the file fails anyway
  }
}

function release(path: string): void {
  const mine = held.get(path);
  if (mine === undefined) return;
  held.delete(path);
  try {
    if (readFileSync(path, "utf8") === mine) unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Creates the lock file with its whole content at once; false if one exists. */
function create(path: string, content: string): boolean {
  const aside = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  try {
    // Inside the try: a write that fails after making the file (ENOSPC) leaves it otherwise.
    writeFileSync(aside, content);
    linkSync(aside, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    rmSync(aside, { force: true });
  }
}

/** The lock file's content; undefined if it is gone. */
function readSettled(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * Moves a stale lock out of the way. Two processes may find the same stale lock: each
 * renames what is there, and one that finds it took a fresh lock instead (the other's, made
 * meanwhile) puts that back.
 */
function takeOver(path: string, stale: string): void {
  const aside = `${path}.stale.${process.pid}`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  try {
    if (readFileSync(aside, "utf8") !== stale) linkSync(aside, path);
  } catch {
    // another lock is in place already: the next attempt reads it
  } finally {
    rmSync(aside, { force: true });
  }
}

function parse(content: string): Holder | undefined {
  try {
    const h = JSON.parse(content) as Holder;
    return Number.isSafeInteger(h.pid) && h.pid > 0 ? h : undefined;
  } catch {
    return undefined; // not ours, or cut short by a crash: stale
  }
}

function alive(holder: Holder): boolean {
  // This process's own pid in a lock it does not hold: a previous run in a container, where
  // pids start over.
  if (holder.pid === process.pid) return false;
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const start = startTime(holder.pid);
  return holder.start === undefined || start === undefined || start === holder.start;
}

function selfHolder(): Holder {
  const start = startTime(process.pid);
  return start === undefined ? { pid: process.pid } : { pid: process.pid, start };
}

/** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. */
function startTime(pid: number): string | undefined {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return undefined;
  try {
    const text = readFileSync(stat, "utf8");
    // Fields after the command name, which may hold spaces: the state is field 3.
    return text.slice(text.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function inUse(file: string, path: string, holder: Holder, self: boolean): EdgecacheError {
  const who = self ? "this process" : `pid ${holder.pid}`;
  return new EdgecacheError(
    "E_IN_USE",
    "cache",
    `${file} is in use by another edgecache (${who}; lock ${path}): stop it, or give this one a cache file of its own (--cache-file, or --no-cache-file). Several nodes over one database share Redis (--redis), each with its own cache file.`,
  );
}

/** A process that exits without closing (an error, process.exit) leaves no lock behind. */
function hookExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.once("exit", () => {
    for (const path of [...held.keys()]) release(path);
  });
}
