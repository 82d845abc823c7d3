import { existsSync } from "node:fs";
import Database from "better-sqlite3";
import type { CacheEntry } from "../core/entries/entry.ts";
import { extend } from "../core/entries/extend.ts";
import { badOption, checkOptionNames, EdgecacheError, type OptionNames } from "../core/errors.ts";
import type { Warner } from "../core/report.ts";
import type {
  BatchStore,
  ClosableStore,
  EvictingStore,
  ListableStore,
  LogKeepingStore,
  MeasuredStore,
  StoreSize,
} from "../core/store.ts";
import { enterWal } from "../database/sqlite/file.ts";
import { checkIntegrity, describeError, isDamage, moveAside } from "./sqlite-damage.ts";

export interface SqliteStoreOptions {
  /** Database file; created if missing. Reopening the same path finds the same entries. */
  path: string;
  /** Clock in epoch milliseconds, for fake clocks in tests. Default `Date.now`. */
  now?: () => number;
  /** Table holding the entries. Default `edgecache_entries`. */
  tableName?: string;
  /**
   * Upper bound on the bytes the entries occupy in the file: key, body and the rest of
   * the entry as stored. Default 256 MiB.
   */
  maxBytes?: number;
  /**
   * Upper bound on the number of entries. Default 100 000: an entry this process stored or
   * read is registered in the dependency index while the file holds it (some 600 bytes of
   * heap each), so this bounds memory as well as disk.
   */
  maxEntries?: number;
  /**
   * A damaged file (not a database, or corrupt), found at open or by any later call, is
   * moved aside as `<path>.damaged-<time>` and a new one started, with one warning. Only for
   * a file no other process has open (edgecache serve and proxy lock theirs). Default false:
   * calls fail with E_STORE_UNAVAILABLE saying the file is damaged.
   */
  repair?: boolean;
  /**
   * Holds the file's lock for as long as the store is open (SQLite's exclusive locking
   * mode): another store opening the same file, in this process or another and under any
   * name (a hard link, a symlink, a bind mount), fails at once with E_IN_USE. The lock is
   * the kernel's, on the file itself, so it goes with the process. Default false: processes
   * may share the file.
   */
  exclusive?: boolean;
  /** Where the repair's warning goes. Default `console`. */
  logger?: Warner;
}

const NAME = "sqlite";

/** The options SqliteStoreOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<SqliteStoreOptions> = {
  exclusive: true,
  logger: true,
  maxBytes: true,
  maxEntries: true,
  now: true,
  path: true,
  repair: true,
  tableName: true,
};
const DEFAULT_TABLE = "edgecache_entries";
const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;
const DEFAULT_MAX_ENTRIES = 100_000;
/**
 * Rows evicted per write at most: a bound lowered between two runs is reached over the
 * next writes, so no single write stalls on a large backlog.
 */
const EVICT_BATCH = 1000;
/** Expired rows are swept at most this often, by the next write. */
const PURGE_INTERVAL_MS = 60_000;
/** Rows removed per sweep, so one write never stalls on a large backlog. */
const PURGE_BATCH = 1000;
/** Keys fetched per query while listing, so no statement stays open across an await. */
const KEYS_PAGE = 500;
/**
 * Keys one DELETE takes at most: a write's removal is one statement, not one per key (each a
 * call into the driver), and no more than this many statements are prepared, one per count.
 */
const DELETE_BATCH = 50;
/** How long a write waits for another connection's lock before failing. */
const BUSY_TIMEOUT_MS = 5000;

/** Everything in a CacheEntry except the body, stored as JSON in `meta`. */
type EntryMeta = Omit<CacheEntry, "body">;

interface Row {
  body: Uint8Array;
  meta: string;
}

/** A write as the file takes it; null meta: the entry has expired, the key only goes. */
interface Write {
  key: string;
  body: Uint8Array;
  meta: string | null;
  expiresAt: number | null;
}

/** A write replaces whatever was there, so an expired one (ttl 0, negative, NaN) only removes. */
function toWrite(key: string, entry: CacheEntry, ttlMs: number, at: number): Write {
  const { body, ...rest } = entry;
  if (!(ttlMs > 0)) return { key, body, meta: null, expiresAt: null };
  const meta = guard("cannot serialise entry (meta must be JSON)", () =>
    JSON.stringify(rest satisfies EntryMeta),
  );
  return { key, body, meta, expiresAt: ttlMs === Number.POSITIVE_INFINITY ? null : at + ttlMs };
}

/** The entry a row holds, or undefined when its meta does not parse (a damaged row). */
function rowEntry(row: Row): CacheEntry | undefined {
  let meta: EntryMeta;
  try {
    meta = JSON.parse(row.meta) as EntryMeta;
  } catch {
    return undefined;
  }
  // A view over the driver's Buffer: same bytes, plain Uint8Array, no copy.
  const body = new Uint8Array(row.body.buffer, row.body.byteOffset, row.body.byteLength);
  return extend(meta, { body });
}

/** What a removed row held: whether it was live then, and its share of the totals. */
interface Removed {
  key: string;
  expires_at: number | null;
  size: number;
}

/**
 * A persistent tier in one SQLite file (WAL mode): entries survive a restart and can
 * be shared by processes on one machine. `entry.meta` must be JSON-serialisable.
 *
 * The file is bounded by `maxBytes` and `maxEntries`. Past either, the least recently
 * written entries are evicted (and reported to `onEvict` listeners). Written, not read:
 * the reads that reach this tier are the memory tier's misses, so keeping a read order
 * here would turn each into a write for what the memory tier in front already knows
 * (hot entries stay there). Rows are in write order already (rowid), so this costs no
 * index. The entry count and bytes are kept in a row of their own, updated in the same
 * transaction as the entries, so they hold across processes and restarts without a scan.
 *
 * @example
 * ```ts
 * const store = sqliteStore({ path: "./cache.db" });
 * await store.set("users?id=1", entry, 3_600_000);
 * const hit = await store.get("users?id=1");
 * await store.close();
 * ```
 */
export function sqliteStore(
  options: SqliteStoreOptions,
): ListableStore & MeasuredStore & ClosableStore & EvictingStore & BatchStore & LogKeepingStore {
  if (typeof options !== "object" || options === null) {
    badOption(NAME, "options", "an object", options);
  }
  checkOptionNames(NAME, options, OPTIONS);
  const {
    path,
    now = Date.now,
    tableName = DEFAULT_TABLE,
    maxBytes = DEFAULT_MAX_BYTES,
    maxEntries = DEFAULT_MAX_ENTRIES,
    repair = false,
    exclusive = false,
    logger = console,
  } = options;
  if (typeof path !== "string" || path === "") badOption(NAME, "path", "a file path", path);
  if (typeof now !== "function") badOption(NAME, "now", "a function", now);
  if (!isPositiveInteger(maxBytes)) badOption(NAME, "maxBytes", "a positive integer", maxBytes);
  if (!isPositiveInteger(maxEntries)) {
    badOption(NAME, "maxEntries", "a positive integer", maxEntries);
  }
  if (typeof repair !== "boolean") badOption(NAME, "repair", "true or false", repair);
  if (typeof exclusive !== "boolean") badOption(NAME, "exclusive", "true or false", exclusive);
  // The name is spliced into SQL, so only plain identifiers are accepted.
  if (typeof tableName !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(tableName)) {
    badOption(NAME, "tableName", "an identifier ([A-Za-z_][A-Za-z0-9_]*)", tableName);
  }

  // Due at once, so the first write after a restart sweeps what expired meanwhile.
  let lastPurge = now() - PURGE_INTERVAL_MS;
  let evictions = 0;
  const evictListeners: ((key: string) => void)[] = [];

  // expires_at is NULL for an entry that never expires; a row is live while
  // expires_at > now.
  const table = `"${tableName}"`;
  const totals = `"${tableName}_totals"`;
  const logState = `"${tableName}_log"`;
  const live = "(expires_at IS NULL OR expires_at > @now)";
  const isLive = (row: Removed, at: number) => row.expires_at === null || row.expires_at > at;

  /** Opens the file: the handle, its statements and the transactions over them. */
  function connect() {
    // A WAL left behind: a crash (or another process has the file open). Only then is the
    // file's structure checked, which reads all of it.
    const crashed = existsSync(`${path}-wal`);
    // Exclusive: no wait for a lock another holds, which is refused at once instead.
    const db = new Database(path, exclusive ? { timeout: 0 } : {});
    try {
      // Before the first read, so WAL mode keeps its index in this process's memory and the
      // lock taken below (the write at the end of connect) is held until close.
      if (exclusive) db.pragma("locking_mode = EXCLUSIVE");
      enterWal(db, exclusive ? 0 : BUSY_TIMEOUT_MS);
      // NORMAL in WAL mode can lose the last writes on power loss, never corrupt: right
      // for a cache.
      db.pragma("synchronous = NORMAL");
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      if (crashed) checkIntegrity(db);
      db.exec(`
        CREATE TABLE IF NOT EXISTS ${table} (
          key TEXT PRIMARY KEY,
          body BLOB NOT NULL,
          meta TEXT NOT NULL,
          expires_at INTEGER,
          size INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS "${tableName}_expires_at" ON ${table} (expires_at);
        CREATE TABLE IF NOT EXISTS ${totals} (
          id INTEGER PRIMARY KEY CHECK (id = 0),
          entries INTEGER NOT NULL,
          bytes INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS ${logState} (
          id INTEGER PRIMARY KEY CHECK (id = 0),
          state TEXT NOT NULL
        );
      `);
      // A file written before the totals were kept: count it once.
      db.transaction(() => {
        if (db.prepare(`SELECT 1 FROM ${totals}`).get()) return;
        db.prepare(
          `INSERT INTO ${totals} (id, entries, bytes)
           SELECT 0, count(*), coalesce(sum(size), 0) FROM ${table}`,
        ).run();
      }).immediate();
      return transactions(db, statementsOf(db));
    } catch (error) {
      db.close();
      throw error;
    }
  }

  function statementsOf(db: Database.Database) {
    return {
      get: db.prepare<{ key: string; now: number }, Row>(
        `SELECT body, meta FROM ${table} WHERE key = @key AND ${live}`,
      ),
      // An overwrite deletes and inserts, so the row takes a new rowid: the write order.
      insert: db.prepare(
        `INSERT INTO ${table} (key, body, meta, expires_at, size)
         VALUES (@key, @body, @meta, @expiresAt, @size)`,
      ),
      delete: db.prepare<{ key: string }, Removed>(
        `DELETE FROM ${table} WHERE key = @key RETURNING key, expires_at, size`,
      ),
      keysBetween: db
        .prepare<{ from: string; to: string; now: number; limit: number }, string>(
          `SELECT key FROM ${table} WHERE key >= @from AND key < @to AND ${live}
           ORDER BY key LIMIT @limit`,
        )
        .pluck(),
      keysFrom: db
        .prepare<{ from: string; now: number; limit: number }, string>(
          `SELECT key FROM ${table} WHERE key >= @from AND ${live} ORDER BY key LIMIT @limit`,
        )
        .pluck(),
      totals: db.prepare<[], { entries: number; bytes: number }>(
        `SELECT entries, bytes FROM ${totals} WHERE id = 0`,
      ),
      count: db.prepare<{ entries: number; bytes: number }, { entries: number; bytes: number }>(
        `UPDATE ${totals} SET entries = entries + @entries, bytes = bytes + @bytes WHERE id = 0
         RETURNING entries, bytes`,
      ),
      purge: db.prepare<{ now: number; limit: number }, Removed>(
        `DELETE FROM ${table} WHERE key IN (
           SELECT key FROM ${table} WHERE expires_at <= @now LIMIT @limit
         ) RETURNING key, expires_at, size`,
      ),
      takeLog: db
        .prepare<[], string>(`DELETE FROM ${logState} WHERE id = 0 RETURNING state`)
        .pluck(),
      leaveLog: db.prepare<{ state: string }>(
        `INSERT OR REPLACE INTO ${logState} (id, state) VALUES (0, @state)`,
      ),
      evict: db.prepare<{ limit: number }, Removed>(
        `DELETE FROM ${table} WHERE rowid IN (
           SELECT rowid FROM ${table} ORDER BY rowid LIMIT @limit
         ) RETURNING key, expires_at, size`,
      ),
    };
  }

  function transactions(db: Database.Database, statements: ReturnType<typeof statementsOf>) {
    /** Takes removed rows off the totals; returns the new totals. */
    function uncount(rows: readonly Removed[]) {
      let bytes = 0;
      for (const row of rows) bytes += row.size;
      return statements.count.get({ entries: -rows.length, bytes: -bytes })!;
    }

    /** Sweeps expired rows when due; returns the new totals if it removed any. */
    function purgeIfDue(at: number) {
      if (at - lastPurge < PURGE_INTERVAL_MS) return undefined;
      const rows = statements.purge.all({ now: at, limit: PURGE_BATCH });
      // A full batch means more are waiting: leave the sweep due for the next write.
      if (rows.length < PURGE_BATCH) lastPurge = at;
      return rows.length > 0 ? uncount(rows) : undefined;
    }

    /** DELETE statements by how many keys they take (DELETE_BATCH at most), prepared when needed. */
    const deletes = new Map<number, Database.Statement<string[], Removed>>();
    const deleteKeys = (keys: string[]) => {
      let statement = deletes.get(keys.length);
      if (!statement) {
        statement = db.prepare<string[], Removed>(
          `DELETE FROM ${table} WHERE key IN (${keys.map(() => "?").join(", ")})
           RETURNING key, expires_at, size`,
        );
        deletes.set(keys.length, statement);
      }
      return statement.all(...keys);
    };

    const deleteMany = db.transaction((keys: readonly string[], at: number) => {
      const removed: Removed[] = [];
      for (let i = 0; i < keys.length; i += DELETE_BATCH) {
        removed.push(...deleteKeys(keys.slice(i, i + DELETE_BATCH)));
      }
      if (removed.length > 0) uncount(removed);
      return removed.filter((row) => isLive(row, at)).length;
    });

    /**
     * Replaces the entry under `key` and evicts the oldest writes while the totals exceed a
     * bound; returns the keys evicted while live (expired ones are not evictions).
     */
    const write = db.transaction(
      (key: string, body: Uint8Array, meta: string, expiresAt: number | null, at: number) => {
        const size = Buffer.byteLength(key) + body.byteLength + Buffer.byteLength(meta);
        const old = statements.delete.get({ key });
        if (size > maxBytes) {
          // Larger than the whole tier: not kept, and the old entry goes all the same.
          if (old) uncount([old]);
          return [];
        }
        statements.insert.run({ key, body, meta, expiresAt, size });
        let sum = statements.count.get({ entries: old ? 0 : 1, bytes: size - (old?.size ?? 0) })!;
        // What has expired goes first; then the oldest writes, while a bound is exceeded.
        sum = purgeIfDue(at) ?? sum;
        const evicted: string[] = [];
        let budget = EVICT_BATCH;
        while ((sum.entries > maxEntries || sum.bytes > maxBytes) && budget > 0) {
          // A whole batch for the count, one row at a time for the bytes: rows differ in size.
          const limit = Math.min(budget, Math.max(1, sum.entries - maxEntries));
          const rows = statements.evict.all({ limit });
          if (rows.length === 0) break;
          budget -= rows.length;
          sum = uncount(rows);
          for (const row of rows) if (isLive(row, at)) evicted.push(row.key);
        }
        return evicted;
      },
    );

    /** Rows of several keys, read in one transaction (one snapshot of the file). */
    const readMany = db.transaction((keys: readonly string[], at: number) =>
      keys.map((key) => statements.get.get({ key, now: at })),
    );

    /** Several writes (see `write`; null meta: the key only goes) in one transaction. */
    const writeMany = db.transaction((writes: readonly Write[], at: number) => {
      const evicted: string[] = [];
      for (const w of writes) {
        if (w.meta === null) deleteMany([w.key], at);
        else evicted.push(...write(w.key, w.body, w.meta, w.expiresAt, at));
      }
      return evicted;
    });

    return { db, statements, deleteMany, write, readMany, writeMany };
  }

  type File = ReturnType<typeof connect>;
  const opening = `cannot open ${JSON.stringify(path)}`;
  let file: File | undefined;

  /** Moves the damaged file aside and starts a new one, with one warning. */
  function replace(cause: unknown): File {
    try {
      if (file?.db.open) file.db.close();
    } catch {
      // a damaged file may not close cleanly: it is put away all the same
    }
    file = undefined;
    lastPurge = now() - PURGE_INTERVAL_MS;
    const aside = moveAside(path, new Date());
    logger.warn(
      `[edgecache] [sqlite] ${path} is damaged (${describeError(cause)}): kept aside as ${aside}; the cache goes on with a new, empty file`,
    );
    file = guard(opening, connect);
    return file;
  }

  /**
   * Runs a driver call on the file. A damaged file, found by any call and not only at open,
   * is replaced when `repair` allows and the call runs again on the new one; else the call
   * fails with E_STORE_UNAVAILABLE saying what is wrong.
   */
  function run<T>(what: string, call: (f: File) => T): T {
    const current = file;
    try {
      if (!current) throw new Error("the store is closed");
      return call(current);
    } catch (error) {
      if (!(repair && current?.db.open && isDamage(error))) throw storeError(what, error);
      return guard(what, () => call(replace(error)));
    }
  }

  try {
    file = connect();
  } catch (error) {
    if (exclusive && isBusy(error)) throw inUse(path, error);
    if (!(repair && isDamage(error))) throw storeError(opening, error);
    replace(error);
  }

  function evict(keys: readonly string[]): void {
    evictions += keys.length;
    for (const k of keys) for (const listener of evictListeners) listener(k);
  }

  return {
    name: NAME,

    onEvict(listener) {
      evictListeners.push(listener);
    },

    async get(key) {
      return run("get failed", ({ statements, deleteMany }) => {
        const at = now();
        const row = statements.get.get({ key, now: at });
        const entry = row && rowEntry(row);
        // Written as JSON, so a row whose meta does not parse was damaged: it goes.
        if (row && !entry) deleteMany.immediate([key], at);
        return entry;
      });
    },

    async getMany(keys) {
      return run("get failed", ({ readMany, deleteMany }) => {
        const at = now();
        const rows = readMany(keys, at);
        const entries = rows.map((row) => row && rowEntry(row));
        const damaged = keys.filter((_, i) => rows[i] && !entries[i]);
        if (damaged.length > 0) deleteMany.immediate(damaged, at);
        return entries;
      });
    },

    async set(key, entry, ttlMs) {
      const at = now();
      const w = toWrite(key, entry, ttlMs, at);
      const evicted = run("set failed", ({ write, deleteMany }) => {
        if (w.meta !== null) return write.immediate(key, w.body, w.meta, w.expiresAt, at);
        deleteMany.immediate([key], at);
        return [];
      });
      if (evicted.length > 0) evict(evicted);
    },

    async setMany(writes) {
      if (writes.length === 0) return;
      const at = now();
      const list = writes.map((w) => toWrite(w.key, w.entry, w.ttlMs, at));
      evict(run("set failed", ({ writeMany }) => writeMany.immediate(list, at)));
    },

    takeLogState() {
      return run("reading the log state failed", ({ statements }) => statements.takeLog.get());
    },

    leaveLogState(state) {
      run("leaving the log state failed", ({ statements }) => statements.leaveLog.run({ state }));
    },

    async delete(keys) {
      if (keys.length === 0) return 0;
      return run("delete failed", ({ deleteMany }) => deleteMany.immediate(keys, now()));
    },

    async *keys(prefix) {
      const to = successor(prefix);
      let from = prefix;
      for (;;) {
        const page = run("keys failed", ({ statements }) =>
          to === undefined
            ? statements.keysFrom.all({ from, now: now(), limit: KEYS_PAGE })
            : statements.keysBetween.all({ from, to, now: now(), limit: KEYS_PAGE }),
        );
        yield* page;
        const last = page.at(-1);
        if (page.length < KEYS_PAGE || last === undefined) return;
        // The smallest string after `last`, so the next page starts right behind it.
        from = `${last}\u0000`;
      }
    },

    size(): StoreSize {
      // Counts expired entries not yet swept; they go with the next sweep or eviction.
      const { entries, bytes } = run("size failed", ({ statements }) => statements.totals.get())!;
      return { entries, bytes, evictions };
    },

    async close() {
      const current = file;
      if (current?.db.open) guard("close failed", () => current.db.close());
    },
  };
}

/**
 * The smallest string greater than every string that starts with `prefix`, in the
 * order SQLite compares TEXT (UTF-8 bytes, which is code point order), or undefined if
 * there is none. Makes `key >= prefix AND key < successor` an index range with no
 * LIKE wildcards.
 */
function successor(prefix: string): string | undefined {
  const points = Array.from(prefix, (c) => c.codePointAt(0)!);
  while (points.length > 0) {
    const last = points.pop()!;
    if (last < 0x10ffff) {
      // Skip the surrogate block: those code points cannot appear in UTF-8 text.
      points.push(last === 0xd7ff ? 0xe000 : last + 1);
      return points.map((point) => String.fromCodePoint(point)).join("");
    }
  }
  return undefined;
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_BUSY");
}

/** Another exclusive store holds the file, under this name or another (a hard link). */
function inUse(path: string, error: unknown): EdgecacheError {
  return new EdgecacheError(
    "E_IN_USE",
    NAME,
    `${path} is in use by another edgecache (its file is locked, maybe under another name: a hard link, a symlink or a bind mount): stop it, or give this one a cache file of its own (--cache-file, or --no-cache-file)`,
    { cause: error },
  );
}

/** Runs a driver call, turning its failures into E_STORE_UNAVAILABLE. */
function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw storeError(what, error);
  }
}

/** E_STORE_UNAVAILABLE saying what failed and why, with what to do about a damaged file. */
function storeError(what: string, error: unknown): EdgecacheError {
  const hint = isDamage(error)
    ? "; the file holds only cached responses: move it away or delete it (edgecache serve and proxy do so themselves)"
    : "";
  return new EdgecacheError(
    "E_STORE_UNAVAILABLE",
    NAME,
    `${what}: ${describeError(error)}${hint}`,
    {
      cause: error,
    },
  );
}
