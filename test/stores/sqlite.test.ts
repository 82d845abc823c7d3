import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { CacheEntry } from "../../src/core/entries/entry.ts";
import { EdgecacheError } from "../../src/core/errors.ts";
import type { SqliteStoreOptions } from "../../src/stores/sqlite.ts";
import { sqliteStore } from "../../src/stores/sqlite.ts";
import { storeConformance } from "../../src/testing/index.ts";
import { cutShort, keptAside, overwritePages } from "../helpers/damage.ts";
import { storedEntry } from "../helpers/entries.ts";

let dir: string;
let files = 0;
const open: Array<{ close(): Promise<void> }> = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "edgecache-sqlite-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function freshPath(): string {
  return join(dir, `store-${++files}.db`);
}

/** Opens a store and remembers it, so a failing test still releases the file. */
function openStore(options: SqliteStoreOptions) {
  const store = sqliteStore(options);
  open.push(store);
  return store;
}

afterEach(async () => {
  for (const store of open.splice(0)) await store.close();
});

storeConformance("sqlite", ({ now }) => sqliteStore({ path: freshPath(), now }));

const MINUTE = 60_000;

function entry(etag: string): CacheEntry {
  return storedEntry({ etag });
}

describe("sqlite store persistence", () => {
  it("entries survive closing and reopening the same file", async () => {
    const path = freshPath();
    const first = openStore({ path });
    await first.set("k", entry('"v1"'), MINUTE);
    await first.close();

    const second = openStore({ path });
    expect(await second.get("k")).toEqual(entry('"v1"'));
    expect(second.size()).toMatchObject({ entries: 1 });
  });

  it("entries that expired while the store was closed are not returned after reopening", async () => {
    const path = freshPath();
    let time = Date.UTC(2025, 0, 1);
    const now = () => time;
    const first = openStore({ path, now });
    await first.set("short", entry('"s"'), 1000);
    await first.set("long", entry('"l"'), 10 * MINUTE);
    await first.close();

    time += 5000;
    const second = openStore({ path, now });
    expect(await second.get("short")).toBeUndefined();
    expect(await second.get("long")).toBeDefined();
    const keys: string[] = [];
    for await (const key of second.keys("")) keys.push(key);
    expect(keys).toEqual(["long"]);
  });

  it("two stores on the same file see each other's writes and deletes", async () => {
    const path = freshPath();
    const a = openStore({ path });
    const b = openStore({ path });
    await a.set("k", entry('"v1"'), MINUTE);
    expect((await b.get("k"))?.etag).toBe('"v1"');
    expect(await b.delete(["k"])).toBe(1);
    expect(await a.get("k")).toBeUndefined();
  });

  it("uses WAL mode on the file", async () => {
    const path = freshPath();
    openStore({ path });
    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.pragma("journal_mode", { simple: true })).toBe("wal");
    } finally {
      raw.close();
    }
  });

  it("expired rows are purged from the file by a later write", async () => {
    const path = freshPath();
    let time = Date.UTC(2025, 0, 1);
    const store = openStore({ path, now: () => time, tableName: "cache" });
    await store.set("a", entry('"a"'), 1000);
    await store.set("b", entry('"b"'), 1000);
    time += 2 * MINUTE;
    await store.set("c", entry('"c"'), MINUTE);

    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.prepare("SELECT key FROM cache").pluck().all()).toEqual(["c"]);
    } finally {
      raw.close();
    }
  });

  it("keeps separate entries per tableName in one file", async () => {
    const path = freshPath();
    const one = openStore({ path, tableName: "one" });
    const two = openStore({ path, tableName: "two" });
    await one.set("k", entry('"one"'), MINUTE);
    expect(await two.get("k")).toBeUndefined();
    expect((await one.get("k"))?.etag).toBe('"one"');
  });
});

describe("sqlite store bounds", () => {
  /** Keys in the file, in write order. */
  function fileKeys(path: string): string[] {
    const raw = new Database(path, { readonly: true });
    try {
      return raw
        .prepare("SELECT key FROM edgecache_entries ORDER BY rowid")
        .pluck()
        .all() as string[];
    } finally {
      raw.close();
    }
  }

  it("past maxEntries, evicts the least recently written entries and reports each once", async () => {
    const path = freshPath();
    const store = openStore({ path, maxEntries: 3 });
    const evicted: string[] = [];
    store.onEvict((key) => evicted.push(key));
    for (const k of ["a", "b", "c"]) await store.set(k, entry(`"${k}"`), MINUTE);
    // Read, then rewritten: "a" is read (no effect on the order), "b" written again.
    await store.get("a");
    await store.set("b", entry('"b2"'), MINUTE);
    await store.set("d", entry('"d"'), MINUTE);
    expect(evicted).toEqual(["a"]);
    await store.set("e", entry('"e"'), MINUTE);
    expect(evicted).toEqual(["a", "c"]);
    expect(fileKeys(path)).toEqual(["b", "d", "e"]);
    expect(store.size()).toMatchObject({ entries: 3, evictions: 2 });
  });

  it("past maxBytes, evicts until the entries fit, counting key, body and the stored entry", async () => {
    const path = freshPath();
    const body = new Uint8Array(1000);
    const store = openStore({ path, maxBytes: 5000 });
    for (let i = 0; i < 20; i++) await store.set(`k${i}`, storedEntry({ body }), MINUTE);
    const { entries, bytes, evictions } = store.size();
    expect(bytes).toBeLessThanOrEqual(5000);
    expect(entries).toBeGreaterThan(0);
    expect(entries).toBeLessThan(5);
    expect(evictions).toBe(20 - entries);
    expect(fileKeys(path)).toEqual(
      Array.from({ length: entries }, (_, i) => `k${20 - entries + i}`),
    );
  });

  it("does not keep an entry larger than maxBytes, removes the older one under its key and evicts nothing for it", async () => {
    const store = openStore({ path: freshPath(), maxBytes: 2000 });
    const evicted: string[] = [];
    store.onEvict((key) => evicted.push(key));
    await store.set("small", storedEntry(), MINUTE);
    await store.set("k", storedEntry(), MINUTE);
    await store.set("k", storedEntry({ body: new Uint8Array(5000) }), MINUTE);
    expect(await store.get("k")).toBeUndefined();
    expect(await store.get("small")).toBeDefined();
    expect(evicted).toEqual([]);
    expect(store.size()).toMatchObject({ entries: 1, evictions: 0 });
  });

  it("does not report deletes, overwrites or expiry as evictions, and sweeps expired entries before evicting live ones", async () => {
    let time = Date.UTC(2025, 0, 1);
    const store = openStore({ path: freshPath(), maxEntries: 2, now: () => time });
    const evicted: string[] = [];
    store.onEvict((key) => evicted.push(key));
    await store.set("short", entry('"s"'), 1000);
    await store.set("long", entry('"l"'), 10 * MINUTE);
    await store.set("long", entry('"l2"'), 10 * MINUTE);
    await store.delete(["long"]);
    await store.set("long", entry('"l3"'), 10 * MINUTE);
    time += 2 * MINUTE;
    await store.set("new", entry('"n"'), MINUTE);
    expect(evicted).toEqual([]);
    expect((await store.get("long"))?.etag).toBe('"l3"');
    expect(store.size()).toMatchObject({ entries: 2, evictions: 0 });
  });

  it("a delete of more keys than one statement takes (keys named twice, missing or expired among them) counts the live ones and keeps the totals", async () => {
    let time = Date.UTC(2025, 0, 1);
    const store = openStore({ path: freshPath(), now: () => time });
    const keys = Array.from({ length: 120 }, (_, i) => `k${i}`);
    for (const k of keys) await store.set(k, entry(`"${k}"`), k === "k70" ? 1000 : MINUTE);
    await store.set("kept", entry('"kept"'), MINUTE);
    time += 2000;
    const named = [...keys.slice(0, 60), "k3", "missing", ...keys.slice(60), "k100", "k3"];
    expect(await store.delete(named)).toBe(119);
    for (const k of keys) expect(await store.get(k)).toBeUndefined();
    const kept = openStore({ path: freshPath() });
    await kept.set("kept", entry('"kept"'), MINUTE);
    expect(store.size()).toMatchObject({ entries: 1, bytes: kept.size().bytes });
  });

  it("keeps its totals across a reopen, and counts a file written before they were kept", async () => {
    const path = freshPath();
    const first = openStore({ path, maxEntries: 3 });
    for (const k of ["a", "b"]) await first.set(k, entry(`"${k}"`), MINUTE);
    const before = first.size();
    await first.close();

    const raw = new Database(path);
    raw.exec("DROP TABLE edgecache_entries_totals");
    raw.close();
    const second = openStore({ path, maxEntries: 3 });
    expect(second.size()).toMatchObject({ entries: 2, bytes: before.bytes });
    for (const k of ["c", "d"]) await second.set(k, entry(`"${k}"`), MINUTE);
    expect(fileKeys(path)).toEqual(["b", "c", "d"]);
  });

  it("a lowered bound is reached over the next writes, a batch at a time", async () => {
    const path = freshPath();
    const first = openStore({ path });
    for (let i = 0; i < 2500; i++) await first.set(`k${i}`, entry('"x"'), MINUTE);
    await first.close();
    const second = openStore({ path, maxEntries: 10 });
    await second.set("one", entry('"1"'), MINUTE);
    expect(second.size().entries).toBe(1501);
    await second.set("two", entry('"2"'), MINUTE);
    await second.set("three", entry('"3"'), MINUTE);
    expect(second.size().entries).toBe(10);
    expect(fileKeys(path).slice(-3)).toEqual(["one", "two", "three"]);
  });
});

describe("sqlite store: a damaged file", () => {
  /** A real cache file of `n` entries, closed cleanly (no WAL left). */
  async function filled(path: string, n = 300): Promise<void> {
    const store = sqliteStore({ path });
    for (let i = 0; i < n; i++)
      await store.set(`k${i}`, storedEntry({ body: new Uint8Array(1000) }), MINUTE);
    await store.close();
  }
  const damages: Array<[string, (path: string) => Promise<void> | void]> = [
    ["random bytes", (path) => writeFileSync(path, randomBytes(64 * 1024))],
    ["a few bytes of text", (path) => writeFileSync(path, "not a database")],
    [
      "a real cache file cut short mid-page",
      async (path) => {
        await filled(path);
        cutShort(path);
      },
    ],
    [
      "a real cache file with overwritten pages and a WAL left by a crash",
      async (path) => {
        await filled(path);
        overwritePages(path);
        writeFileSync(`${path}-wal`, "");
      },
    ],
  ];
  it.each(damages)(
    "%s: with repair, opens with one warning, keeps the file aside as <name>.damaged-<time> and works",
    async (_, damage) => {
      const path = freshPath();
      await damage(path);
      const original = readFileSync(path);
      const warn = vi.fn();
      const store = openStore({ path, repair: true, logger: { warn } });
      expect(warn).toHaveBeenCalledTimes(1);
      const [aside] = keptAside(path);
      expect(aside).toMatch(/\.damaged-\d{4}-\d\d-\d\dT[\d-]+Z$/);
      expect(readFileSync(join(dirname(path), aside!))).toEqual(original);
      expect(warn.mock.calls[0]![0]).toContain(`${path} is damaged`);
      expect(warn.mock.calls[0]![0]).toContain(aside);
      await store.set("k", entry('"new"'), MINUTE);
      expect((await store.get("k"))?.etag).toBe('"new"');
      expect(store.size()).toMatchObject({ entries: 1 });
      expect(warn).toHaveBeenCalledTimes(1);
    },
  );

  it.each(damages.slice(0, 3))(
    "%s: without repair, the factory fails naming the file, what is wrong and what to do",
    async (_, damage) => {
      const path = freshPath();
      await damage(path);
      expect(() => sqliteStore({ path })).toThrow(
        expect.objectContaining({
          code: "E_STORE_UNAVAILABLE",
          message: expect.stringMatching(
            new RegExp(
              `cannot open "${path}": .*(not a database|malformed).*move it away or delete it`,
            ),
          ),
        }),
      );
      expect(keptAside(path)).toEqual([]);
    },
  );

  it("damage a later call finds (overwritten pages, closed cleanly): one warning, the file kept aside, the call answers from a new file, and the store goes on", async () => {
    const path = freshPath();
    await filled(path);
    overwritePages(path);
    const warn = vi.fn();
    const store = openStore({ path, repair: true, logger: { warn } });
    expect(warn).not.toHaveBeenCalled();
    const keys: string[] = [];
    for await (const k of store.keys("")) keys.push(k);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(keptAside(path)).toHaveLength(1);
    for (let i = 0; i < 50; i++) await store.set(`n${i}`, entry(`"${i}"`), MINUTE);
    expect((await store.get("n7"))?.etag).toBe('"7"');
    expect(await store.delete(["n1", "n2"])).toBe(2);
    expect(store.size()).toMatchObject({ entries: 48 });
    expect(warn).toHaveBeenCalledTimes(1);
  });

  it("without repair, damage a call finds fails that call with E_STORE_UNAVAILABLE saying so", async () => {
    const path = freshPath();
    await filled(path);
    overwritePages(path);
    const store = openStore({ path });
    const listing = (async () => {
      for await (const _ of store.keys("")) {
        // drain
      }
    })();
    await expect(listing).rejects.toMatchObject({
      code: "E_STORE_UNAVAILABLE",
      message: expect.stringMatching(/keys failed: .*malformed.*move it away or delete it/),
    });
  });

  it("an entry whose stored fields are not JSON is a miss, and goes", async () => {
    const path = freshPath();
    const store = openStore({ path });
    await store.set("k", entry('"v"'), MINUTE);
    const raw = new Database(path);
    raw.prepare("UPDATE edgecache_entries SET meta = '{\"hea' WHERE key = 'k'").run();
    raw.close();
    expect(await store.get("k")).toBeUndefined();
    expect(store.size()).toMatchObject({ entries: 0 });
  });
});

describe("sqlite store errors", () => {
  it("a store used after close rejects with E_STORE_UNAVAILABLE and the driver error as cause", async () => {
    const store = sqliteStore({ path: freshPath() });
    await store.close();
    await store.close(); // closing twice is harmless
    const error = await store.get("k").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EdgecacheError);
    expect(error).toMatchObject({ code: "E_STORE_UNAVAILABLE" });
    expect((error as Error).message).toMatch(/^\[edgecache\] \[sqlite\] /);
    expect((error as Error).cause).toBeInstanceOf(Error);
  });

  it("a path that cannot be opened fails at the factory call with E_STORE_UNAVAILABLE", () => {
    const call = () => sqliteStore({ path: join(dir, "no", "such", "dir", "x.db") });
    expect(call).toThrow(EdgecacheError);
    expect(call).toThrow(/cannot open/);
  });

  it("meta that is not JSON-serialisable rejects the set with E_STORE_UNAVAILABLE", async () => {
    const store = openStore({ path: freshPath() });
    const bad = { ...entry('"x"'), meta: { n: 1n } };
    await expect(store.set("k", bad, MINUTE)).rejects.toMatchObject({
      code: "E_STORE_UNAVAILABLE",
    });
    expect(await store.get("k")).toBeUndefined();
  });

  const bad: Array<[string, unknown]> = [
    ["path", ""],
    ["path", 42],
    ["tableName", 'x"; DROP TABLE y; --'],
    ["tableName", "1abc"],
    ["now", "Date.now"],
    ["maxBytes", 0],
    ["maxBytes", "1mb"],
    ["maxEntries", -1],
    ["maxEntries", 1.5],
    ["repair", "yes"],
  ];

  it.each(bad)("rejects %s = %s at the factory call with E_BAD_OPTION", (option, value) => {
    const options = { path: freshPath(), [option]: value } as SqliteStoreOptions;
    expect(() => sqliteStore(options)).toThrow(
      expect.objectContaining({
        code: "E_BAD_OPTION",
        message: expect.stringMatching(/expected .+, got /),
      }),
    );
  });
});
