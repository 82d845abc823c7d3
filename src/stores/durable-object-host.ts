import { decodeFrames, encodeFrames, frameText } from "./frames.ts";

/** The part of a SQLite-backed Durable Object's `ctx.storage.sql` the tier uses. */
export interface SqlStorageLike {
  exec(query: string, ...bindings: unknown[]): Iterable<Record<string, unknown>>;
}

/** Expired rows are swept after this many sets: a row nobody reads again still goes. */
const SWEEP_EVERY_SETS = 64;

/**
 * One shard of the Durable Object tier, inside its object: packed entries in the object's
 * SQLite, one row per key with its expiry. The object runs one request at a time between
 * awaits and this code never awaits, so each call is atomic: a get after a set resolved sees
 * it, a get after a delete resolved does not.
 *
 * Expiry is judged on the caller's clock (`x-now`), the clock the entries' expiries were
 * computed on; the caller checks each entry again (see durableObjectStore).
 */
export class TierHost {
  readonly #sql: SqlStorageLike;
  #sets = 0;

  constructor(sql: SqlStorageLike) {
    this.#sql = sql;
    sql.exec(
      "CREATE TABLE IF NOT EXISTS tier_entries (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires INTEGER)",
    );
    sql.exec("CREATE INDEX IF NOT EXISTS tier_entries_expires ON tier_entries (expires)");
  }

  /** Answers `op` (get, set, delete, keys) with frames in `body`, at the caller's `now`. */
  handle(op: string, body: Uint8Array, now: number): Response {
    const frames = decodeFrames(body);
    if (op === "get") return bytes(frames.map((key) => this.#get(frameText(key), now)));
    if (op === "set") {
      for (let i = 0; i + 2 < frames.length; i += 3) {
        const expires = frameText(frames[i + 1]!);
        // A copy: a frame is a view into the whole body, and SQLite takes the buffer.
        const value = frames[i + 2]!.slice().buffer;
        this.#sql.exec(
          "INSERT INTO tier_entries (key, value, expires) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
          frameText(frames[i]!),
          value,
          expires === "" ? null : Number(expires),
        );
      }
      this.#sets += frames.length / 3;
      if (this.#sets >= SWEEP_EVERY_SETS) {
        this.#sets = 0;
        this.#sql.exec("DELETE FROM tier_entries WHERE expires <= ?", now);
      }
      return bytes([]);
    }
    if (op === "delete") {
      let live = 0;
      for (const frame of frames) {
        const key = frameText(frame);
        if (this.#get(key, now).byteLength > 0) live++;
        this.#sql.exec("DELETE FROM tier_entries WHERE key = ?", key);
      }
      return bytes([String(live)]);
    }
    if (op === "keys") {
      const prefix = frameText(frames[0] ?? new Uint8Array());
      const keys: string[] = [];
      // Keys sort by their bytes, so those under a prefix follow it in one run.
      for (const row of this.#sql.exec(
        "SELECT key, expires FROM tier_entries WHERE key >= ? ORDER BY key",
        prefix,
      )) {
        const key = row.key as string;
        if (!key.startsWith(prefix)) break;
        if (row.expires === null || (row.expires as number) > now) keys.push(key);
      }
      return bytes(keys);
    }
    return new Response(`[edgecache] [durable-object] no op ${op}`, { status: 400 });
  }

  /** The packed entry under `key`, live at `now`; empty when there is none. */
  #get(key: string, now: number): Uint8Array {
    for (const row of this.#sql.exec(
      "SELECT value, expires FROM tier_entries WHERE key = ?",
      key,
    )) {
      if (row.expires !== null && (row.expires as number) <= now) return new Uint8Array();
      return new Uint8Array(row.value as ArrayBuffer);
    }
    return new Uint8Array();
  }
}

function bytes(frames: readonly (Uint8Array | string)[]): Response {
  return new Response(encodeFrames(frames), {
    headers: { "content-type": "application/octet-stream" },
  });
}
