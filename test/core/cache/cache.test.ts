import { createHash } from "node:crypto";
import { runInNewContext } from "node:vm";
import { describe, expect, it, vi } from "vitest";
import { Cache, createCache, type EntryInit } from "../../../src/core/cache/index.ts";
import type { LogFollower } from "../../../src/core/change-log/contract.ts";
import { localChangeLog } from "../../../src/core/change-log/in-process.ts";
import type { CacheEntry } from "../../../src/core/entries/entry.ts";
import { EdgecacheError } from "../../../src/core/errors.ts";
import type { ListableStore, Store, SyncStore } from "../../../src/core/store.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { chaosStore, fakeClock } from "../../helpers/chaos-store.ts";
import { mapStore } from "../../testing/map-store.ts";

const quiet = { warn: () => {} };

function twoTiers() {
  const clock = fakeClock();
  const top = memoryStore({ now: clock.now });
  const bottom = memoryStore({ now: clock.now });
  const cache = createCache({ tiers: [top, bottom], now: clock.now, ttl: 60_000, logger: quiet });
  return { clock, top, bottom, cache };
}

/** TTL 1 s, then 5 s in which the entry may be served stale. */
function swrCache() {
  const clock = fakeClock();
  const cache = createCache({
    tiers: [memoryStore({ now: clock.now })],
    now: clock.now,
    ttl: 1000,
    staleWhileRevalidate: 5000,
    logger: quiet,
  });
  return { clock, cache };
}

describe("cache engine", () => {
  it("getOrSet loads once, then serves the stored value", async () => {
    const { cache } = twoTiers();
    const load = vi.fn(async () => ({ id: 1, name: "Lane" }));
    expect(await cache.getOrSet("user:1", load)).toEqual({ id: 1, name: "Lane" });
    expect(await cache.getOrSet("user:1", load)).toEqual({ id: 1, name: "Lane" });
    expect(load).toHaveBeenCalledTimes(1);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, loads: 1 });
  });

  it("100 concurrent misses on one key make one load (single flight)", async () => {
    const { cache } = twoTiers();
    let loads = 0;
    const load = async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 10));
      return { body: "v" };
    };
    const results = await Promise.all(Array.from({ length: 100 }, () => cache.resolve("k", load)));
    expect(loads).toBe(1);
    expect(new Set(results.map((r) => new TextDecoder().decode(r.entry.body)))).toEqual(
      new Set(["v"]),
    );
  });

  it("reads fall through to a lower tier and back-fill the upper one", async () => {
    const { cache, top, bottom } = twoTiers();
    await cache.set("k", "v");
    await top.delete(["k"]);
    const r = await cache.resolve("k", async () => ({ body: "reloaded" }));
    expect(r.status).toBe("hit");
    expect(r.tier).toBe("memory");
    expect(await top.get("k")).toBeDefined();
    expect(cache.stats().tiers.map((t) => t.hits)).toEqual([0, 1]);
    expect(await bottom.get("k")).toBeDefined();
  });

  it("an entry expires after its TTL and is loaded again", async () => {
    const { cache, clock } = twoTiers();
    await cache.set("k", 1, { ttl: 1000 });
    clock.advance(999);
    expect(await cache.get("k")).toBe(1);
    clock.advance(1);
    expect(await cache.get("k")).toBeUndefined();
  });

  it("within the stale-while-revalidate window the stale value is served and refreshed", async () => {
    const { clock, cache } = swrCache();
    let n = 0;
    const load = async () => ({ body: String(++n) });
    await cache.resolve("k", load);
    clock.advance(2000);
    const stale = await cache.resolve("k", load);
    expect(stale.status).toBe("stale");
    expect(new TextDecoder().decode(stale.entry.body)).toBe("1");
    await cache.drain();
    const fresh = await cache.resolve("k", load);
    expect(fresh.status).toBe("hit");
    expect(new TextDecoder().decode(fresh.entry.body)).toBe("2");
  });

  it("when the source fails, a stale entry is served instead of the error (stale-if-error)", async () => {
    const { clock, cache } = swrCache();
    await cache.resolve("k", async () => ({ body: "old" }));
    clock.advance(1500);
    await cache.drain();
    const failing = async (): Promise<never> => {
      throw new Error("db down");
    };
    const r = await cache.resolve("k", failing);
    expect(r.status).toBe("stale");
    await cache.drain();
    expect(cache.stats().loadErrors).toBe(1);
    clock.advance(10_000);
    await expect(cache.resolve("k", failing)).rejects.toThrow("db down");
  });

  it("invalidates by key, prefix and tag in every tier", async () => {
    const { cache, top, bottom } = twoTiers();
    await cache.set("a:1", 1, { tags: ["t1"] });
    await cache.set("a:2", 2, { tags: ["t2"] });
    await cache.set("b:1", 3, { tags: ["t1"] });
    await cache.set("c:1", 4);
    expect(await cache.invalidate({ tags: ["t1"] })).toBe(2);
    expect(await cache.get("a:1")).toBeUndefined();
    expect(await cache.get("b:1")).toBeUndefined();
    expect(await cache.get("a:2")).toBe(2);
    expect(await cache.invalidate({ prefix: "a:" })).toBe(1);
    expect(await cache.delete("c:1")).toBe(true);
    for (const tier of [top, bottom]) expect(tier.size().entries).toBe(0);
  });

  it("a load that overlaps an invalidation of its key is returned but not stored (write fence)", async () => {
    const { cache } = twoTiers();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const pending = cache.resolve("k", async () => {
      await gate;
      return { body: "pre-write", tags: ["row#1"] };
    });
    await new Promise((r) => setTimeout(r, 1));
    await cache.invalidate({ tags: ["row#1"] });
    release();
    const r = await pending;
    expect(r.stored).toBe(false);
    expect(await cache.getEntry("k")).toBeUndefined();
    expect(cache.stats().fenced).toBe(1);
  });

  it("a reader arriving after an invalidation does not join a load that began before it", async () => {
    const { cache } = twoTiers();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let version = 1;
    const load = async () => {
      const seen = version; // the row as read from the database
      await gate;
      return { body: `v${seen}`, tags: ["row#1"] };
    };
    const early = cache.resolve("k", load);
    await new Promise((r) => setTimeout(r, 1));
    version = 2; // the write commits...
    await cache.invalidate({ tags: ["row#1"] }); // ...and is acknowledged
    const late = cache.resolve("k", load);
    release();
    const text = async (p: Promise<{ entry: { body: Uint8Array } }>) =>
      new TextDecoder().decode((await p).entry.body);
    expect(await text(early)).toBe("v1"); // concurrent with the write: either is fine
    expect(await text(late)).toBe("v2"); // began after the write: must see it
  });

  it("a failing lower tier degrades to the source, counts the failure and logs once", async () => {
    const clock = fakeClock();
    const chaos = chaosStore(memoryStore({ now: clock.now }));
    const warn = vi.fn();
    const cache = new Cache({ tiers: [chaos.store], now: clock.now, logger: { warn } });
    chaos.fail("get", "set");
    expect(await cache.getOrSet("k", () => "from source")).toBe("from source");
    expect(await cache.getOrSet("k", () => "from source again")).toBe("from source again");
    expect(cache.stats().tiers[0]?.errors).toBe(4);
    expect(warn).toHaveBeenCalledTimes(2); // once for get, once for set
  });

  it("after a failed delete, the tier is not read for that key until a delete succeeds", async () => {
    const clock = fakeClock();
    const top = memoryStore({ now: clock.now });
    const chaos = chaosStore(memoryStore({ now: clock.now }));
    const cache = new Cache({ tiers: [top, chaos.store], now: clock.now, logger: quiet });
    await cache.set("k", "old", { tags: ["t"] });
    chaos.fail("delete");
    await cache.invalidate({ tags: ["t"] });
    expect(await chaos.inner.get("k")).toBeDefined(); // the tier still holds it...
    expect(await cache.get("k")).toBeUndefined(); // ...but it is not served
    chaos.heal();
    await cache.invalidate({ keys: ["other"] });
    expect(await chaos.inner.get("k")).toBeUndefined();
  });

  it("with enabled: false loads every read, stores nothing anywhere, and counts bypasses", async () => {
    const below = memoryStore();
    const log = localChangeLog();
    await createCache({ tiers: [below], log }).set("k", "from before");
    const cache = createCache({ tiers: [memoryStore(), below], log, enabled: false });
    let loads = 0;
    for (let i = 0; i < 3; i++) expect(await cache.getOrSet("k", () => ++loads)).toBe(i + 1);
    await cache.set("j", 1);
    expect(await cache.get("j")).toBeUndefined();
    // What a tier held from before is not served either.
    expect(await cache.get("k")).toBeUndefined();
    expect(cache.registered({ prefix: "" })).toBe(0);
    expect(cache.stats()).toMatchObject({ enabled: false, bypasses: 3, hits: 0, misses: 0 });
    expect(() => createCache({ tiers: [below], enabled: "no" as never })).toThrow(
      /"enabled": expected true or false/,
    );
  });

  it("rejects bad options with E_BAD_OPTION", () => {
    expect(() => createCache({ tiers: [] })).toThrow(EdgecacheError);
    expect(() => createCache({ tiers: [memoryStore()], ttl: -1 })).toThrow(/"ttl": expected/);
    const sha256 = "hex" as unknown as () => string;
    expect(() => createCache({ tiers: [memoryStore()], sha256 })).toThrow(/"sha256": expected/);
  });

  it("a runtime's synchronous SHA-256 makes the same ETags as crypto.subtle", async () => {
    const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
    const made = await Promise.all(
      [
        createCache({ tiers: [memoryStore()] }),
        createCache({ tiers: [memoryStore()], sha256 }),
      ].map(
        async (cache) => (await cache.resolve("k", async () => ({ body: "body ✓" }))).entry.etag,
      ),
    );
    expect(made[0]).toMatch(/^"[0-9a-f]{24}"$/);
    expect(made[1]).toBe(made[0]);
  });

  it("hands out an entry whose body was given as a value whole, with the ETag of its bytes", async () => {
    // A patched response waits unmade in memory until read (the data API's tests show it);
    // whatever the cache hands out is made, so a copy of it (a spread, JSON) is whole.
    const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
    const value = { data: [1, 2, 3] };
    const encode = vi.fn(() => new TextEncoder().encode(JSON.stringify(value)));
    const body = (etag?: string): Pick<EntryInit, "body" | "etag"> => ({
      body: { value, encode, length: 16, heap: 200 },
      ...(etag !== undefined && { etag }),
    });
    const plain = await createCache({ tiers: [memoryStore()] }).resolve("k", async () => ({
      body: JSON.stringify(value),
    }));
    // A first tier that keeps copies (a spread) of what it is given, not the objects.
    const held = memoryStore();
    const copying: SyncStore = {
      name: "copies",
      get: async (key) => held.peek(key),
      peek: (key, now) => held.peek(key, now),
      set: (key, entry, ttlMs) => held.set(key, { ...entry }, ttlMs),
      delete: (keys) => held.delete(keys),
    };
    for (const cache of [
      createCache({ tiers: [memoryStore()], sha256 }),
      createCache({ tiers: [memoryStore()] }), // crypto.subtle, as on Workers
      createCache({ tiers: [copying], sha256 }), // a first tier that may copy what it gets
      createCache({ tiers: [copying] }),
    ]) {
      encode.mockClear();
      const stored = { ...(await cache.setEntry("k", body())) };
      expect(encode).toHaveBeenCalledTimes(1);
      expect(stored.etag).toBe(plain.entry.etag);
      expect(new TextDecoder().decode(stored.body)).toBe('{"data":[1,2,3]}');
      expect({ ...(await cache.getEntry("k")) }).toMatchObject({ etag: plain.entry.etag });
      const { entry } = await cache.resolve("k2", async () => body('"given"'));
      expect({ ...entry }).toMatchObject({ etag: '"given"', body: stored.body });
      expect({ ...(await cache.getEntry("k2")) }).toMatchObject({
        etag: '"given"',
        body: stored.body,
      });
    }
  });

  it("stores a body of bytes from another realm as bytes", async () => {
    const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
    const bytes = runInNewContext("new Uint8Array([123, 125])") as Uint8Array;
    expect(bytes instanceof Uint8Array).toBe(false);
    for (const cache of [
      createCache({ tiers: [memoryStore()] }),
      createCache({ tiers: [memoryStore()], sha256 }),
    ]) {
      const { entry } = await cache.resolve("k", async () => ({ body: bytes }));
      expect(Array.from(entry.body)).toEqual([123, 125]);
    }
  });

  it("a cache sharing a tier and a log learns an entry's dependencies when it reads it", async () => {
    const clock = fakeClock();
    const log = localChangeLog();
    const shared = memoryStore({ now: clock.now });
    const first = createCache({ tiers: [shared], now: clock.now, log });
    await first.set("k", 1, { tags: ["users#1"] });
    const second = createCache({
      tiers: [memoryStore({ now: clock.now }), shared],
      now: clock.now,
      log,
    });
    expect(await second.get("k")).toBe(1);
    expect(await second.invalidate({ tags: ["users#1"] })).toBe(1);
  });

  it("an entry a write made stale is refused from a shared tier by a cache that never indexed it", async () => {
    const log = localChangeLog();
    const shared = memoryStore();
    const writer = createCache({ tiers: [memoryStore()], log });
    // As if another process had written it: a cache that never hears the log, so nobody
    // following it indexed the entry.
    const deaf = { ...log, follow: (f: LogFollower) => f.reset(log.snapshot()) };
    const first = createCache({ tiers: [shared], log: deaf });
    await first.setEntry("k", { body: "old", tags: ["users#1"] });
    await writer.applyWrite({ table: "users", op: "delete", old: { id: 1 } });
    expect(await shared.get("k")).toBeDefined(); // still in the tier...
    const reader = createCache({ tiers: [memoryStore(), shared], log });
    expect(await reader.get("k")).toBeUndefined(); // ...but never served
  });

  it("an entry written under another log is refused", async () => {
    const shared = memoryStore();
    const before = createCache({ tiers: [shared], log: localChangeLog() });
    await before.set("k", 1);
    const after = createCache({ tiers: [memoryStore(), shared], log: localChangeLog() });
    expect(await after.get("k")).toBeUndefined();
  });

  it("an entry written under a resumed log is served", async () => {
    const shared = memoryStore();
    const log = localChangeLog();
    const before = createCache({ tiers: [shared], log });
    await before.set("k", 1);
    const resumed = localChangeLog({ resume: log.snapshot() });
    const after = createCache({ tiers: [memoryStore(), shared], log: resumed });
    expect(await after.get("k")).toBe(1);
  });
});

describe("a first tier that is not this node's memory", () => {
  /** A store over a Map whose listing takes a round trip, as a server's or a file's does. */
  function slowListing(shared: boolean): ListableStore {
    const store = mapStore();
    return {
      ...store,
      name: "far",
      shared,
      async *keys(prefix) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        yield* store.keys(prefix);
      },
    };
  }

  for (const shared of [true, false]) {
    it(`keeps what is set right after the cache is made (${shared ? "shared" : "local"}): a start clears only this node's memory`, async () => {
      const cache = createCache({ tiers: [slowListing(shared)], logger: quiet });
      await cache.set("k", 1);
      // Past the listing a clearing of the tier at the start would have made.
      await new Promise((resolve) => setTimeout(resolve, 60));
      expect(await cache.get("k")).toBe(1);
    });
  }

  it("an entry an earlier process left in a local first tier is checked against the log from the first read", async () => {
    const file = slowListing(false);
    const before = createCache({ tiers: [file], logger: quiet });
    await before.set("k", 1);
    const after = createCache({ tiers: [file], logger: quiet }); // a log of its own
    expect(await after.get("k")).toBeUndefined();
    expect(after.stats().refused).toBe(1);
  });
});

describe("dependency index bounds", () => {
  it("drops the registration of an entry the only tier evicted", async () => {
    const cache = createCache({ tiers: [memoryStore({ maxEntries: 2 })], logger: quiet });
    for (const k of ["a", "b", "c", "d"]) await cache.set(k, k, { tags: [`t-${k}`] });
    expect([...cache.keys()].length).toBe(2);
    expect([...cache.keys()].sort()).toEqual(["c", "d"]);
  });

  it("an entry the last tier evicts stays in the tiers above, registered, so a write still reaches it", async () => {
    const top = memoryStore();
    const cache = createCache({ tiers: [top, memoryStore({ maxEntries: 1 })], logger: quiet });
    await cache.set("a", 1, { tags: ["t"] });
    await cache.set("b", 2);
    expect(await cache.get("a")).toBe(1);
    expect(await cache.invalidate({ tags: ["t"] })).toBe(1);
    expect(await top.get("a")).toBeUndefined();
  });
});

describe("faults and races between tiers", () => {
  /** A tier in a Map whose operations can be slowed or failed per key. */
  function scriptedTier(script: {
    setDelay?: number;
    deleteFails?: (keys: readonly string[]) => boolean;
    deleteDelay?: number;
  }) {
    const map = new Map<string, CacheEntry>();
    const tier: Store = {
      name: "scripted",
      async get(k) {
        return map.get(k);
      },
      async set(k, e) {
        if (script.setDelay) await new Promise((r) => setTimeout(r, script.setDelay));
        map.set(k, e);
      },
      async delete(keys) {
        if (script.deleteFails?.(keys)) throw new Error("delete failed");
        if (script.deleteDelay) await new Promise((r) => setTimeout(r, script.deleteDelay));
        let n = 0;
        for (const k of keys) if (map.delete(k)) n++;
        return n;
      },
    };
    return { map, tier };
  }

  it("a delete that succeeds does not clear the skip mark of one that failed meanwhile", async () => {
    const { map, tier } = scriptedTier({
      deleteFails: (keys) => keys.includes("a"),
      deleteDelay: 10,
    });
    const cache = new Cache({ tiers: [memoryStore(), tier], logger: quiet });
    await cache.set("a", "old-a");
    await cache.set("b", "old-b");
    await Promise.all([cache.delete("b"), cache.delete("a")]);
    expect(map.has("a")).toBe(true);
    expect(await cache.get("a")).toBeUndefined();
  });

  it("a back-fill that overlaps a write is removed again once it lands", async () => {
    const { map, tier } = scriptedTier({ setDelay: 20 });
    const cache = new Cache({ tiers: [tier, memoryStore()], logger: quiet });
    await cache.setEntry("k", { body: "old", tags: ["t#1"] });
    map.delete("k"); // the upper tier lost it; the lower one still has it
    const read = cache.resolve("k", async () => ({ body: "new", tags: ["t#1"] }));
    await new Promise((r) => setTimeout(r, 5));
    await cache.invalidate({ tags: ["t#1"] });
    await read;
    const after = await cache.resolve("k", async () => ({ body: "new", tags: ["t#1"] }));
    expect(new TextDecoder().decode(after.entry.body)).toBe("new");
  });
});

describe("background work", () => {
  it("goes through the schedule hook (a Worker's waitUntil) when one is given", async () => {
    const clock = fakeClock();
    const scheduled: Promise<unknown>[] = [];
    const cache = createCache({
      tiers: [memoryStore({ now: clock.now })],
      now: clock.now,
      ttl: 1000,
      staleWhileRevalidate: 60_000,
      schedule: (work) => scheduled.push(work),
    });
    await cache.resolve("k", async () => ({ body: "v1" }));
    const before = scheduled.length;
    clock.advance(2000);
    const stale = await cache.resolve("k", async () => ({ body: "v2" }));
    expect(stale.status).toBe("stale");
    expect(scheduled.length).toBeGreaterThan(before); // the refresh
    await Promise.all(scheduled);
    const fresh = await cache.resolve("k", async () => ({ body: "v3" }));
    expect(new TextDecoder().decode(fresh.entry.body)).toBe("v2");
  });
});
