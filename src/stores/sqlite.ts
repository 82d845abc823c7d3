import Database from "better-sqlite3";
import type { CacheEntry } from "../core/entry.ts";
import { entrySize } from "../core/entry.ts";
import { badOption, EdgecacheError } from "../core/errors.ts";
import type { ClosableStore, ListableStore, MeasuredStore, StoreSize } from "../core/store.ts";

export interface SqliteStoreOptions {
  /** Database file; created if missing. Reopening the same path finds the same entries. */
  path: string;
  /** Clock in epoch milliseconds, for fake clocks in tests. Default `Date.now`. */
  now?: () => number;
  /** Table holding the entries. Default `edgecache_entries`. */
  tableName?: string;
}

const NAME = "sqlite";
const DEFAULT_TABLE = "edgecache_entries";
/** Expired rows are swept at most this often, by the next write. */
const PURGE_INTERVAL_MS = 60_000;
/** Rows removed per sweep, so one write never stalls on a large backlog. */
const PURGE_BATCH = 1000;
/** Keys fetched per query while listing, so no statement stays open across an await. */
const KEYS_PAGE = 500;
/** How long a write waits for another connection's lock before failing. */
const BUSY_TIMEOUT_MS = 5000;

/** Everything in a CacheEntry except the body, stored as JSON in `meta`. */
type EntryMeta = Omit<CacheEntry, "body">;

interface Row {
  body: Uint8Array;
  meta: string;
}

/**
 * A persistent tier in one SQLite file (WAL mode): entries survive a restart and can
 * be shared by processes on one machine. `entry.meta` must be JSON-serialisable.
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
): ListableStore & MeasuredStore & ClosableStore {
  if (typeof options !== "object" || options === null) {
    badOption(NAME, "options", "an object", options);
  }
  const { path, now = Date.now, tableName = DEFAULT_TABLE } = options;
  if (typeof path !== "string" || path === "") badOption(NAME, "path", "a file path", path);
  if (typeof now !== "function") badOption(NAME, "now", "a function", now);
  // The name is spliced into SQL, so only plain identifiers are accepted.
  if (typeof tableName !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(tableName)) {
    badOption(NAME, "tableName", "an identifier ([A-Za-z_][A-Za-z0-9_]*)", tableName);
  }

  const db = guard(`cannot open ${JSON.stringify(path)}`, () => {
    const db = new Database(path);
    try {
      db.pragma("journal_mode = WAL");
      // NORMAL in WAL mode can lose the last writes on power loss, never corrupt: right
      // for a cache.
      db.pragma("synchronous = NORMAL");
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.exec(`
        CREATE TABLE IF NOT EXISTS "${tableName}" (
          key TEXT PRIMARY KEY,
          body BLOB NOT NULL,
          meta TEXT NOT NULL,
          expires_at INTEGER,
          size INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS "${tableName}_expires_at" ON "${tableName}" (expires_at);
      `);
      return db;
    } catch (error) {
      db.close();
      throw error;
    }
  });

  // expires_at is NULL for an entry that never expires; a row is live while
  // expires_at > now.
  const table = `"${tableName}"`;
  const live = "(expires_at IS NULL OR expires_at > @now)";
  const statements = guard("cannot prepare statements", () => ({
    get: db.prepare<{ key: string; now: number }, Row>(
      `SELECT body, meta FROM ${table} WHERE key = @key AND ${live}`,
    ),
    set: db.prepare(
      `INSERT OR REPLACE INTO ${table} (key, body, meta, expires_at, size)
       VALUES (@key, @body, @meta, @expiresAt, @size)`,
    ),
    delete: db.prepare<{ key: string }, { expires_at: number | null }>(
      `DELETE FROM ${table} WHERE key = @key RETURNING expires_at`,
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
    size: db.prepare<{ now: number }, { entries: number; bytes: number }>(
      `SELECT count(*) AS entries, coalesce(sum(size), 0) AS bytes FROM ${table} WHERE ${live}`,
    ),
    purge: db.prepare<{ now: number; limit: number }>(
      `DELETE FROM ${table} WHERE key IN (
         SELECT key FROM ${table} WHERE expires_at <= @now LIMIT @limit
       )`,
    ),
  }));

  const deleteMany = db.transaction((keys: readonly string[], at: number) => {
    let count = 0;
    for (const key of keys) {
      const row = statements.delete.get({ key });
      if (row !== undefined && (row.expires_at === null || row.expires_at > at)) count++;
    }
    return count;
  });

  // Due at once, so the first write after a restart sweeps what expired meanwhile.
  let lastPurge = now() - PURGE_INTERVAL_MS;

  function purgeIfDue(at: number): void {
    if (at - lastPurge < PURGE_INTERVAL_MS) return;
    const { changes } = statements.purge.run({ now: at, limit: PURGE_BATCH });
    // A full batch means more are waiting: leave the sweep due for the next write.
    if (changes < PURGE_BATCH) lastPurge = at;
  }

  return {
    name: NAME,

    async get(key) {
      return guard("get failed", () => {
        const row = statements.get.get({ key, now: now() });
        if (row === undefined) return undefined;
        const meta = JSON.parse(row.meta) as EntryMeta;
        // A view over the driver's Buffer: same bytes, plain Uint8Array, no copy.
        const body = new Uint8Array(row.body.buffer, row.body.byteOffset, row.body.byteLength);
        return { ...meta, body };
      });
    },

    async set(key, entry, ttlMs) {
      const at = now();
      // A write replaces whatever was there, so an already expired one (ttl 0, negative,
      // NaN) just removes the old entry.
      if (!(ttlMs > 0)) {
        guard("set failed", () => statements.delete.get({ key }));
        return;
      }
      const { body, ...rest } = entry;
      const meta = guard("cannot serialise entry (meta must be JSON)", () =>
        JSON.stringify(rest satisfies EntryMeta),
      );
      const expiresAt = ttlMs === Number.POSITIVE_INFINITY ? null : at + ttlMs;
      guard("set failed", () => {
        statements.set.run({ key, body, meta, expiresAt, size: entrySize(entry) });
        purgeIfDue(at);
      });
    },

    async delete(keys) {
      if (keys.length === 0) return 0;
      return guard("delete failed", () => deleteMany(keys, now()));
    },

    async *keys(prefix) {
      const to = successor(prefix);
      let from = prefix;
      for (;;) {
        const page = guard("keys failed", () =>
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
      const { entries, bytes } = guard("size failed", () => statements.size.get({ now: now() }))!;
      return { entries, bytes, evictions: 0 };
    },

    async close() {
      if (db.open) guard("close failed", () => db.close());
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

/** Runs a driver call, turning its failures into E_STORE_UNAVAILABLE. */
function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw new EdgecacheError("E_STORE_UNAVAILABLE", NAME, what, { cause: error });
  }
}
