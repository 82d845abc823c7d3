import { randomBytes } from "node:crypto";
import { closeSync, openSync, readdirSync, statSync, truncateSync, writeSync } from "node:fs";
import { basename, dirname } from "node:path";

/** Ways to damage a SQLite file that still opens, for the repair tests. */

/** Overwrites four pages in the middle with random bytes: it opens, and reads of them fail. */
export function overwritePages(path: string): void {
  const fd = openSync(path, "r+");
  writeSync(fd, randomBytes(4 * 4096), 0, 4 * 4096, 8 * 4096);
  closeSync(fd);
}

/** Cuts the file short in the middle of a page. */
export function cutShort(path: string): void {
  truncateSync(path, Math.floor(statSync(path).size / 2) + 100);
}

/** The files a damaged `path` was moved aside to (`<name>.damaged-<time>`). */
export function keptAside(path: string): string[] {
  return readdirSync(dirname(path)).filter((f) => f.startsWith(`${basename(path)}.damaged-`));
}
