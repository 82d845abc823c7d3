import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";

/**
 * The persistent cache tier outlives the process, but writes made to the database while
 * edgecache was not running never reached the planner. So a clean shutdown leaves a stamp
 * of the database files beside the cache file; at start, a missing or different stamp
 * (another program wrote, or edgecache crashed) means the persistent tier cannot be
 * trusted and is emptied. A cold cache costs hit rate; a stale one costs correctness.
 */
export function databaseStamp(databasePath: string): string {
  const parts = [databasePath, `${databasePath}-wal`].map((p) => {
    if (!existsSync(p)) return null;
    const s = statSync(p);
    // ino and ctime too: tools can restore an mtime (cp -p, rsync -t), not a ctime.
    return [s.ino, s.size, s.mtimeMs, s.ctimeMs];
  });
  return JSON.stringify(parts);
}

const stampPath = (cacheFile: string) => `${cacheFile}-stamp`;

/** Whether the stamp left at the last clean shutdown matches; the stamp is consumed. */
export function takeStamp(cacheFile: string, current: string): boolean {
  const path = stampPath(cacheFile);
  if (!existsSync(path)) return false;
  const saved = readFileSync(path, "utf8");
  rmSync(path, { force: true });
  return saved === current;
}

export function leaveStamp(cacheFile: string, current: string): void {
  writeFileSync(stampPath(cacheFile), current);
}
