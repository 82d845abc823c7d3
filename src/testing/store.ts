import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Cache } from "../core/cache/index.ts";
import type { CacheEntry } from "../core/entries/entry.ts";
import { entrySize } from "../core/entries/entry.ts";
import type { Store } from "../core/store.ts";
import { isBatch, isClosable, isListable, isMeasured } from "../core/store.ts";
import { memoryStore } from "../stores/memory.ts";

/** A fake clock handed to the store under test; the suite moves it to test TTLs. */
export interface ConformanceClock {
  now: () => number;
  advance(ms: number): void;
}

/** Makes a fresh, empty store for one test, reading time from `clock`. */
export type MakeStore = (clock: ConformanceClock) => Promise<Store> | Store;
/** Releases what `make` created; by default the store is closed if it is closable. */
export type CleanupStore = (store: Store) => Promise<void> | void;

export interface StoreConformanceOptions {
  cleanup?: CleanupStore;
  /**
   * The store expires entries on a clock of its own (Redis does, on the server) and
   * ignores the fake clock. TTL tests then use one-second ttls and sleep past them; the
   * exact-millisecond boundary checks run only on the fake clock.
   */
  realTime?: boolean;
}

/** Starts well away from 0 so no store can confuse a timestamp with "unset". */
const START = Date.UTC(2025, 0, 1);
const MINUTE = 60_000;
/** The short ttl of the TTL tests: a second, so a real-time store sleeps about that long. */
const TTL = 1000;
/**
 * How much later than a ttl a real-time store is checked: timers fire late, and Redis
 * still returns a key in the millisecond it expires.
 */
const REAL_TIME_SLACK = 100;

/**
 * The behaviour every store must have (src/core/store.ts), run against the real backend:
 * registers a vitest `describe` block named after `name`. `make` is called before each
 * test and must give an empty store. Batch tests run only when the store has getMany and
 * setMany, listing tests only when it is listable, size tests only when it is measured;
 * the others are skipped, and say so.
 *
 * @example
 * import { storeConformance } from "edgecache/testing";
 * storeConformance("my-store", (clock) => myStore({ now: clock.now }));
 */
export function storeConformance(
  name: string,
  make: MakeStore,
  options: StoreConformanceOptions = {},
): void {
  const { cleanup, realTime = false } = options;
  describe(`${name} store conformance`, () => {
    let time = START;
    let store: Store;

    beforeEach(async () => {
      time = START;
      store = await make(
        realTime
          ? {
              now: () => Date.now(),
              advance: () => {
                throw new Error("a real-time store's clock cannot be moved");
              },
            }
          : {
              now: () => time,
              advance: (ms) => {
                time += ms;
              },
            },
      );
    });

    afterEach(async () => {
      if (cleanup) await cleanup(store);
      else if (isClosable(store)) await store.close();
    });

    /** Lets `ms` pass: moves the fake clock, or sleeps for a real-time store. */
    async function elapse(ms: number): Promise<void> {
      if (realTime) await new Promise((resolve) => setTimeout(resolve, ms));
      else time += ms;
    }

    /** Lets an entry written now with `ttl` expire. */
    async function outlive(ttl: number): Promise<void> {
      await elapse(realTime ? ttl + REAL_TIME_SLACK : ttl);
    }

    function entry(overrides: Partial<CacheEntry> = {}): CacheEntry {
      return {
        body: new TextEncoder().encode('{"id":1}'),
        headers: { "content-type": "application/json" },
        status: 200,
        createdAt: time,
        freshUntil: time + MINUTE,
        staleUntil: time + 2 * MINUTE,
        etag: '"v1"',
        tags: ["users", "users#1"],
        ...overrides,
      };
    }

    async function listKeys(prefix: string): Promise<string[]> {
      if (!isListable(store)) throw new Error("store is not listable");
      const keys: string[] = [];
      for await (const key of store.keys(prefix)) keys.push(key);
      return keys.sort();
    }

    describe("get and set", () => {
      it("get resolves undefined for a key that was never set", async () => {
        expect(await store.get("never-set")).toBeUndefined();
      });

      it("an entry reads back with the same body, headers, status, times, etag, tags and meta", async () => {
        const written = entry({
          headers: { "content-type": "application/json", "cache-control": "max-age=60" },
          status: 203,
          etag: '"abc-123"',
          tags: ["users", "users#1-abc", "team:é"],
          meta: {
            query: { table: "users", filter: [{ col: "firstName", op: "eq", value: "Lane" }] },
            limit: 10,
            cursor: null,
            flags: [true, false],
            note: "日本語 ✓",
          },
        });
        await store.set("users?id=1", written, MINUTE);

        const read = await store.get("users?id=1");
        expect(read).toBeDefined();
        expect(read!.body).toBeInstanceOf(Uint8Array);
        expect(Array.from(read!.body)).toEqual(Array.from(written.body));
        const { body: _readBody, ...readRest } = read!;
        const { body: _writtenBody, ...writtenRest } = written;
        expect(readRest).toEqual(writtenRest);
      });

      it("an entry without meta reads back without meta", async () => {
        await store.set("k", entry(), MINUTE);
        expect((await store.get("k"))?.meta).toBeUndefined();
      });

      it("meta may be any JSON value, not only an object", async () => {
        await store.set("s", entry({ meta: "a string" }), MINUTE);
        await store.set("n", entry({ meta: 42 }), MINUTE);
        await store.set("a", entry({ meta: [1, "two", null] }), MINUTE);
        expect((await store.get("s"))?.meta).toBe("a string");
        expect((await store.get("n"))?.meta).toBe(42);
        expect((await store.get("a"))?.meta).toEqual([1, "two", null]);
      });

      it("set on an existing key replaces the entry", async () => {
        await store.set("k", entry({ etag: '"v1"' }), MINUTE);
        await store.set("k", entry({ etag: '"v2"', body: new Uint8Array([2]) }), MINUTE);
        const read = await store.get("k");
        expect(read?.etag).toBe('"v2"');
        expect(Array.from(read!.body)).toEqual([2]);
      });

      it("a body with all 256 byte values comes back byte for byte", async () => {
        const body = Uint8Array.from({ length: 256 }, (_, i) => i);
        await store.set("bin", entry({ body }), MINUTE);
        expect(Array.from((await store.get("bin"))!.body)).toEqual(Array.from(body));
      });

      it("an empty body comes back as zero bytes", async () => {
        await store.set("empty", entry({ body: new Uint8Array(0) }), MINUTE);
        const read = await store.get("empty");
        expect(read?.body).toBeInstanceOf(Uint8Array);
        expect(read?.body.byteLength).toBe(0);
      });

      it("a 1 MB body comes back intact", async () => {
        const body = Uint8Array.from({ length: 1024 * 1024 }, (_, i) => (i * 31 + 7) & 0xff);
        await store.set("large", entry({ body }), MINUTE);
        const read = await store.get("large");
        expect(read?.body.byteLength).toBe(body.byteLength);
        // One comparison, not a million-element diff when it fails.
        expect(sameBytes(read!.body, body)).toBe(true);
      });

      it("unicode keys are stored, read and deleted like any other", async () => {
        const keys = ["ключ/значение", "日本語?q=東京", "emoji/😀/🎉", "e\u0301-combining"];
        for (const key of keys) await store.set(key, entry({ etag: `"${key}"` }), MINUTE);
        for (const key of keys) expect((await store.get(key))?.etag).toBe(`"${key}"`);
        // NFC "é" is a different key from "e" + combining accent.
        expect(await store.get("é-combining")).toBeUndefined();
        expect(await store.delete(keys)).toBe(keys.length);
        for (const key of keys) expect(await store.get(key)).toBeUndefined();
      });

      it("keys that look like object properties are ordinary keys", async () => {
        for (const key of ["__proto__", "constructor", "toString"]) {
          expect(await store.get(key)).toBeUndefined();
          await store.set(key, entry({ etag: `"${key}"` }), MINUTE);
          expect((await store.get(key))?.etag).toBe(`"${key}"`);
        }
      });

      it("concurrent sets of different keys all land", async () => {
        const keys = Array.from({ length: 100 }, (_, i) => `concurrent/${i}`);
        await Promise.all(keys.map((key) => store.set(key, entry({ etag: `"${key}"` }), MINUTE)));
        const read = await Promise.all(keys.map((key) => store.get(key)));
        expect(read.map((e) => e?.etag)).toEqual(keys.map((key) => `"${key}"`));
      });
    });

    describe("delete", () => {
      it("delete resolves with how many keys existed, and those keys are gone", async () => {
        await store.set("a", entry(), MINUTE);
        await store.set("b", entry(), MINUTE);
        expect(await store.delete(["a", "missing"])).toBe(1);
        expect(await store.get("a")).toBeUndefined();
        expect(await store.get("b")).toBeDefined();
      });

      it("delete of many keys at once removes all of them and leaves the others", async () => {
        const keys = Array.from({ length: 300 }, (_, i) => `many/${i}`);
        for (const key of keys) await store.set(key, entry(), MINUTE);
        const doomed = keys.slice(0, 250);
        expect(await store.delete([...doomed, "many/missing"])).toBe(250);
        for (const key of doomed) expect(await store.get(key)).toBeUndefined();
        for (const key of keys.slice(250)) expect(await store.get(key)).toBeDefined();
      });

      it("delete of no keys resolves 0", async () => {
        expect(await store.delete([])).toBe(0);
      });

      it("delete does not count an expired entry as existing", async () => {
        await store.set("short", entry(), TTL);
        await outlive(TTL);
        expect(await store.delete(["short"])).toBe(0);
      });
    });

    describe("batches (getMany, setMany)", () => {
      it("getMany reads what get reads, in order, undefined where none is (or it expired)", async (ctx) => {
        if (!isBatch(store)) return ctx.skip();
        await store.set("b/1", entry({ etag: '"1"' }), MINUTE);
        await store.set("b/2", entry({ etag: '"2"', meta: { n: 2 } }), MINUTE);
        await store.set("b/short", entry({ etag: '"s"' }), TTL);
        await outlive(TTL);
        const keys = ["b/2", "b/missing", "b/1", "b/short", "b/2"];
        const many = await store.getMany(keys);
        const one = await Promise.all(keys.map((k) => store.get(k)));
        expect(many.map((e) => e?.etag)).toEqual(['"2"', undefined, '"1"', undefined, '"2"']);
        expect(many).toEqual(one);
        expect(await store.getMany([])).toEqual([]);
      });

      it("setMany writes like set, each with its ttl; an expired write removes the old entry", async (ctx) => {
        if (!isBatch(store)) return ctx.skip();
        await store.set("s/gone", entry({ etag: '"old"' }), MINUTE);
        const keys = Array.from({ length: 1200 }, (_, i) => `s/${i}`);
        await store.setMany(
          keys.map((key) => ({ key, entry: entry({ etag: `"${key}"` }), ttlMs: MINUTE })),
        );
        // The short entry in a batch of its own, read back at once: a large batch on a
        // loaded machine can take longer than TTL on a real clock.
        await store.setMany([
          { key: "s/long", entry: entry({ etag: '"long"' }), ttlMs: MINUTE },
          { key: "s/short", entry: entry({ etag: '"short"' }), ttlMs: TTL },
          { key: "s/gone", entry: entry({ etag: '"new"' }), ttlMs: 0 },
        ]);
        const batch = await store.getMany(["s/long", "s/short", "s/gone"]);
        expect(batch.map((e) => e?.etag)).toEqual(['"long"', '"short"', undefined]);
        const read = await store.getMany(keys);
        expect(read.map((e) => e?.etag)).toEqual(keys.map((k) => `"${k}"`));
        const { body: _b, ...rest } = read[0]!;
        const { body: _w, ...written } = entry({ etag: `"${keys[0]}"` });
        expect(rest).toEqual(written);
        await outlive(TTL);
        expect(await store.get("s/short")).toBeUndefined();
        expect(await store.get("s/1199")).toBeDefined();
        await store.setMany([]);
      });
    });

    describe("a key with no entry", () => {
      it("is undefined, never null, wherever it is read: get, getMany, and the engine's get and getMany over the store, alone and below memory", async () => {
        await store.set("here", entry(), MINUTE);
        expect(await store.get("absent")).toBeUndefined();
        if (isBatch(store)) {
          const many = await store.getMany(["absent", "here", "absent/2"]);
          expect(many).toHaveLength(3);
          expect(many[0]).toBeUndefined();
          expect(many[1]?.etag).toBe('"v1"');
          expect(many[2]).toBeUndefined();
        }
        // The engine on the store (its tier stack falls back to get where the store has no
        // batches), and below a memory tier that lost its copy: the lower tier answers.
        const now = () => (realTime ? Date.now() : time);
        // A key of each engine's own: two engines on one store without a shared log judge
        // each other's entries as another log's (refused), which this test is not about.
        for (const [i, tiers] of [[store], [memoryStore({ now }), store]].entries()) {
          const cache = new Cache({ tiers, now });
          const key = `value/${i}`;
          await cache.set(key, { n: 1 });
          if (tiers.length > 1) await tiers[0]!.delete([key]);
          expect(await cache.get("absent")).toBeUndefined();
          const many = await cache.getMany(["absent", key, "absent/2"]);
          // The engine's counters with a failure: whether a tier failed or the engine refused.
          const { tiers: seen, refused, fenced, misses } = cache.stats();
          const tiersSeen = JSON.stringify({ engine: i, refused, fenced, misses, tiers: seen });
          expect(many, tiersSeen).toStrictEqual([undefined, { n: 1 }, undefined]);
          // Not closed: that would close the store, which the suite's cleanup does.
        }
      });
    });

    describe("ttl", () => {
      it("an entry is returned until its ttl has passed, and never after", async () => {
        await store.set("k", entry(), TTL);
        // The fake clock can stop at the last millisecond; a real clock is read at once.
        if (!realTime) await elapse(TTL - 1);
        expect(await store.get("k")).toBeDefined();
        if (realTime) await outlive(TTL);
        else await elapse(1);
        expect(await store.get("k")).toBeUndefined();
        await elapse(realTime ? TTL : MINUTE);
        expect(await store.get("k")).toBeUndefined();
      });

      it("each entry expires on its own ttl", async () => {
        await store.set("short", entry(), TTL);
        await store.set("long", entry(), 10 * TTL);
        await outlive(TTL);
        expect(await store.get("short")).toBeUndefined();
        expect(await store.get("long")).toBeDefined();
      });

      it("overwriting an entry restarts its ttl", async () => {
        await store.set("k", entry(), TTL);
        await elapse(0.7 * TTL);
        await store.set("k", entry(), TTL);
        // 1.4 ttls after the first write, 0.7 after the second.
        await elapse(0.7 * TTL);
        expect(await store.get("k")).toBeDefined();
      });

      it("a ttl that is not positive (0, negative, NaN) stores nothing and removes the old entry", async () => {
        await store.set("k", entry(), MINUTE);
        await store.set("k", entry(), 0);
        expect(await store.get("k")).toBeUndefined();
        await store.set("neg", entry(), -5);
        await store.set("nan", entry(), Number.NaN);
        expect(await store.get("nan")).toBeUndefined();
        expect(await store.get("neg")).toBeUndefined();
      });

      it("an entry set with an infinite ttl does not expire", async () => {
        await store.set("forever", entry(), Number.POSITIVE_INFINITY);
        // A real-time store is only seen to outlive a short ttl here; its own tests look
        // at how it stores "no expiry".
        await (realTime ? outlive(TTL) : elapse(365 * 24 * 60 * MINUTE));
        expect(await store.get("forever")).toBeDefined();
      });
    });

    describe("keys(prefix)", () => {
      it("lists exactly the live keys that start with the prefix", async (ctx) => {
        if (!isListable(store)) return ctx.skip();
        await store.set("users?id=1", entry(), MINUTE);
        await store.set("users?id=2", entry(), MINUTE);
        await store.set("users/1/orders", entry(), MINUTE);
        await store.set("user", entry(), MINUTE);
        await store.set("orders?id=1", entry(), MINUTE);
        await store.set("users?id=3", entry(), TTL);
        await outlive(TTL);

        expect(await listKeys("users?")).toEqual(["users?id=1", "users?id=2"]);
        expect(await listKeys("users")).toEqual(["users/1/orders", "users?id=1", "users?id=2"]);
        expect(await listKeys("nothing")).toEqual([]);
      });

      it("an empty prefix lists every live key", async (ctx) => {
        if (!isListable(store)) return ctx.skip();
        await store.set("a", entry(), MINUTE);
        await store.set("b", entry(), MINUTE);
        await store.set("gone", entry(), MINUTE);
        await store.delete(["gone"]);
        expect(await listKeys("")).toEqual(["a", "b"]);
      });

      it("%, _, * and other pattern characters in a prefix match only themselves", async (ctx) => {
        if (!isListable(store)) return ctx.skip();
        const keys = ["a%b", "axb", "a_c", "abc", "a*d", "aXd", "a\\e", "a[f]", "a.g"];
        for (const key of keys) await store.set(key, entry(), MINUTE);

        expect(await listKeys("a%")).toEqual(["a%b"]);
        expect(await listKeys("a_")).toEqual(["a_c"]);
        expect(await listKeys("a*")).toEqual(["a*d"]);
        expect(await listKeys("a\\")).toEqual(["a\\e"]);
        expect(await listKeys("a[")).toEqual(["a[f]"]);
        expect(await listKeys("a.")).toEqual(["a.g"]);
        expect(await listKeys("%")).toEqual([]);
      });

      it("prefixes ending in non-ASCII characters match only their own keys", async (ctx) => {
        if (!isListable(store)) return ctx.skip();
        const keys = ["é1", "é2", "ê", "😀a", "😀b", "😁", "\uffff1", "\u{10ffff}x", "z"];
        for (const key of keys) await store.set(key, entry(), MINUTE);

        expect(await listKeys("é")).toEqual(["é1", "é2"]);
        expect(await listKeys("😀")).toEqual(["😀a", "😀b"]);
        expect(await listKeys("\uffff")).toEqual(["\uffff1"]);
        expect(await listKeys("\u{10ffff}")).toEqual(["\u{10ffff}x"]);
      });

      // 1,235 writes: fifty at a time, and a limit for that work rather than the suite's
      // (each write is a request into workerd for a Worker's stores; at load 16 one at a
      // time took over 30 s).
      it("lists more keys than fit in one page", async (ctx) => {
        if (!isListable(store)) return ctx.skip();
        const keys = Array.from({ length: 1234 }, (_, i) => `page/${String(i).padStart(4, "0")}`);
        for (let at = 0; at < keys.length; at += 50) {
          await Promise.all(keys.slice(at, at + 50).map((key) => store.set(key, entry(), MINUTE)));
        }
        await store.set("pagf", entry(), MINUTE);
        expect(await listKeys("page/")).toEqual(keys);
      }, 180_000);
    });

    describe("size()", () => {
      it("reports the live entries and their bytes", async (ctx) => {
        if (!isMeasured(store)) return ctx.skip();
        // A store may count what it keeps beside an entry (its key, its own encoding), so
        // bytes are at least the entries' sizes, and the same for the same entries.
        const a = entry({ body: new Uint8Array(100) });
        const b = entry({ body: new Uint8Array(300), tags: ["t1", "t2"] });
        await store.set("a", a, MINUTE);
        await store.set("b", b, MINUTE);
        const both = store.size();
        expect(both.entries).toBe(2);
        expect(both.bytes).toBeGreaterThanOrEqual(entrySize(a) + entrySize(b));

        await store.delete(["a"]);
        const one = store.size();
        expect(one.entries).toBe(1);
        expect(one.bytes).toBeGreaterThanOrEqual(entrySize(b));
        expect(one.bytes).toBeLessThanOrEqual(both.bytes - entrySize(a));

        await store.set("a", a, MINUTE);
        expect(store.size()).toMatchObject({ entries: 2, bytes: both.bytes });
      });

      it("deletes and overwrites are not counted as evictions", async (ctx) => {
        if (!isMeasured(store)) return ctx.skip();
        await store.set("a", entry(), MINUTE);
        await store.set("a", entry(), MINUTE);
        await store.delete(["a"]);
        expect(store.size().evictions).toBe(0);
      });
    });
  });
}

/** Byte equality without Node's Buffer: the suite may run in a Workers runtime too. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
