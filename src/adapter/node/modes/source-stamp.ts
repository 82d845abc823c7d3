import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { LogStart } from "../../../core/change-log/contract.ts";
import { decodeLogStart, encodeLogStart } from "../../../core/change-log/in-process.ts";

/**
 * The persistent cache tier outlives the process. Its entries carry the position of the
 * in-process change log they were loaded at, so a clean shutdown leaves that log's state
 * beside the cache file, with what the cache knew of the log's past (its retained records
 * and their summary: Cache.history), and the next process resumes it: each entry is still
 * checked against the changes since it was loaded, by what concerns it. The data API also leaves a stamp of the database
 * files, since writes made while edgecache was not running never reached the log: a
 * missing or different stamp (another program wrote, or edgecache crashed) starts a new
 * log, and entries of the old one are refused. A cold cache costs hit rate; a stale one
 * costs correctness.
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

/** What a clean shutdown leaves: the log to resume and, for the data API, the database stamp. */
export interface Stamp {
  database?: string;
  log: LogStart;
}

const stampPath = (cacheFile: string) => `${cacheFile}-stamp`;

/** The stamp left at the last clean shutdown, if any; it is consumed (a crash leaves none). */
export function takeStamp(cacheFile: string): Stamp | undefined {
  const path = stampPath(cacheFile);
  if (!existsSync(path)) return undefined;
  try {
    const saved = JSON.parse(readFileSync(path, "utf8")) as { database?: string; log: string };
    const log = typeof saved.log === "string" ? decodeLogStart(saved.log) : undefined;
    return log && { database: saved.database, log };
  } catch {
    return undefined; // unreadable (an older format): start a new log
  } finally {
    rmSync(path, { force: true });
  }
}

export function leaveStamp(cacheFile: string, stamp: Stamp): void {
  const saved = { database: stamp.database, log: encodeLogStart(stamp.log) };
  writeFileSync(stampPath(cacheFile), JSON.stringify(saved));
}
