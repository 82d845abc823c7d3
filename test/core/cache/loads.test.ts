import { describe, expect, it } from "vitest";
import {
  COLD_PATCH_BYTES,
  MOST_UNREAD_PATCHES,
  UNREAD_PATCHES,
} from "../../../src/core/cache/apply.ts";
import { Cache } from "../../../src/core/cache/index.ts";
import { localChangeLog } from "../../../src/core/change-log/in-process.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { fakeClock } from "../../helpers/chaos-store.ts";

// The engine's pieces for callers with a single flight of their own (the HTTP proxy):
// lookups that leave counting to the caller, measured loads, fence-checked stores, and
// entries that keep an origin's age and ETag.

function setup() {
  const clock = fakeClock();
  const cache = new Cache({ tiers: [memoryStore({ now: clock.now })], now: clock.now });
  return { cache, clock };
}

describe("lookups that leave counting to the caller", () => {
  it("peek and getEntry with count: false change no counter; countRead does", async () => {
    const { cache } = setup();
    await cache.setEntry("k", { body: "v" });
    expect(cache.peek("k", { count: false })).toBeDefined();
    expect(await cache.getEntry("k", { count: false })).toBeDefined();
    expect(cache.stats()).toMatchObject({ hits: 0, staleHits: 0, misses: 0 });
    cache.countRead("k", "hit");
    cache.countRead("k", "stale");
    cache.countRead("other", "miss");
    expect(cache.stats()).toMatchObject({ hits: 1, staleHits: 1, misses: 1 });
    expect(cache.registration("k")?.hits).toBe(1);
    cache.peek("k");
    expect(cache.stats().hits).toBe(2);
  });
});

describe("measureLoad", () => {
  it("counts loads, failed loads and source latency", async () => {
    const { cache } = setup();
    expect(await cache.measureLoad(async () => 42)).toBe(42);
    await expect(cache.measureLoad(() => Promise.reject(new Error("down")))).rejects.toThrow();
    expect(cache.stats()).toMatchObject({ loads: 2, loadErrors: 1 });
    expect(cache.stats().sourceLatencyMs.count).toBe(1);
  });
});

describe("storeLoaded (the write fence for callers' own loads)", () => {
  it("stores when nothing was invalidated since the load began", async () => {
    const { cache } = setup();
    const since = cache.position;
    const { stored } = await cache.storeLoaded("a", { body: "x", tags: ["t"] }, since);
    expect(stored).toBe(true);
    expect(cache.peek("a")).toBeDefined();
  });

  it.each([
    ["its key", { keys: ["a"] }],
    ["its tag", { tags: ["t"] }],
    ["a prefix of it", { prefix: "a" }],
  ])("refuses what a load read before %s was invalidated", async (_, request) => {
    const { cache } = setup();
    const since = cache.position;
    await cache.invalidate(request);
    const { entry, stored, unstored } = await cache.storeLoaded(
      "a",
      { body: "x", tags: ["t"] },
      since,
    );
    expect(stored).toBe(false);
    // The reason a reply's Cache-Status names (detail=invalidated), not a generic one.
    expect(unstored).toBe("invalidated");
    expect(new TextDecoder().decode(entry.body)).toBe("x");
    expect(cache.peek("a")).toBeUndefined();
    expect(cache.stats().fenced).toBe(1);
  });

  it("stores despite an invalidation of something else", async () => {
    const { cache } = setup();
    const since = cache.position;
    await cache.invalidate({ tags: ["other"] });
    expect((await cache.storeLoaded("a", { body: "x", tags: ["t"] }, since)).stored).toBe(true);
  });
});

describe("entries from an HTTP origin", () => {
  it("keep the age they arrived with and the ETag they were given", async () => {
    const { cache, clock } = setup();
    const entry = await cache.setEntry("h", { body: "x", age: 5000, etag: "", ttl: 10_000 });
    expect(entry.createdAt).toBe(clock.now() - 5000);
    expect(entry.freshUntil).toBe(clock.now() + 10_000);
    expect(entry.etag).toBe("");
    const hashed = await cache.setEntry("g", { body: "x" });
    expect(hashed.etag).toMatch(/^"[0-9a-f]{24}"$/);
  });
});

/** A cache whose patches append `suffix` to the body, and the keys it patched, in order. */
/** `busyMs`: how long each patch takes (a busy wait), as a costly one would. */
function patching(suffix: string, busyMs: () => number = () => 0) {
  const cache = new Cache({
    tiers: [memoryStore()],
    schema: { primaryKey: () => "id", joinColumns: () => [] },
  });
  const patched: string[] = [];
  cache.addWriteHooks({
    patch: (key, entry) => {
      patched.push(key);
      const until = performance.now() + busyMs();
      while (performance.now() < until) {}
      return { body: `${new TextDecoder().decode(entry.body)}${suffix}`, tags: entry.tags };
    },
  });
  return { cache, patched };
}

/** Stores `key` from a load of 300 ms (a page whose query scans a table, say). */
async function loadSlowly(cache: Cache, key: string, tags: string[]): Promise<void> {
  await cache.resolve(key, async () => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    return { body: "s", tags };
  });
}

/** Each call applies one more update of users#1. */
function updates(cache: Cache): () => Promise<unknown> {
  let n = 0;
  return () =>
    cache.applyWrite({ table: "users", op: "update", old: { id: 1 }, new: { id: 1, n: n++ } });
}

describe("storeLoaded with follow (a group patch overtaken by the next records)", () => {
  const cacheOnRows = () =>
    new Cache({
      tiers: [memoryStore()],
      schema: { primaryKey: () => "id", joinColumns: () => [] },
    });
  const update = (id: number, n: number) =>
    ({ table: "users", op: "update", old: { id }, new: { id, n } }) as const;

  it("names the first record since the load that concerns the entry, at that record's position", async () => {
    const cache = cacheOnRows();
    const since = cache.position;
    await cache.applyWrite(update(2, 1)); // does not concern it
    await cache.applyWrite(update(1, 2));
    const second = cache.position;
    await cache.applyWrite(update(1, 3));
    const init = { body: "x", tags: ["users#1"] };
    const { stored, followed } = await cache.storeLoaded("k", init, since, { follow: true });
    expect(stored).toBe(false);
    // Not the fence's position: what it becomes through that record is checked from there.
    expect(followed).toEqual({ events: [update(1, 2)], at: second });
    const after = await cache.storeLoaded("k", init, followed!.at, { follow: true });
    expect(after.followed?.events).toEqual([update(1, 3)]);
    expect((await cache.storeLoaded("k", init, cache.position, { follow: true })).stored).toBe(
      true,
    );
  });

  it("names none without follow, or where a record cannot be told event by event", async () => {
    const cache = cacheOnRows();
    const since = cache.position;
    await cache.applyWrite(update(1, 1));
    const init = { body: "x", tags: ["users#1"] };
    expect((await cache.storeLoaded("k", init, since)).followed).toBeUndefined();
    await cache.invalidate({ tags: ["users#1"] });
    const told = await cache.storeLoaded("k", init, since, { follow: true });
    expect(told).toMatchObject({ stored: false, unstored: "invalidated" });
    expect(told.followed).toBeUndefined();
  });
});

describe("storeLoaded later: exact from the position the fence checked it to", () => {
  it("a store begun before a record that does not concern it is exact where nothing came since", async () => {
    const log = localChangeLog({
      outside: {
        active: () => true,
        pending: async () => false,
        settled: async () => true,
        ordered: true,
      },
    });
    const cache = new Cache({
      tiers: [memoryStore()],
      log,
      schema: { primaryKey: () => "id", joinColumns: () => [] },
    });
    cache.addWriteHooks({ patch: () => undefined });
    const since = cache.position;
    // Another row of the table it reads: the log is not quiet since `since` for it.
    await cache.applyWrite({ table: "users", op: "update", old: { id: 2 }, new: { id: 2, n: 1 } });
    const init = { body: "x", tags: ["users#1"] };
    const options = { later: true, patient: true };
    expect((await cache.storeLoaded("k", init, since, options)).stored).toBe(true);
    await cache.drain();
    expect(cache.peek("k")?.exact).toBe(true);
  });
});

describe("patches and entries loaded further along the log", () => {
  it("an entry loaded at or after a record is removed by it, not patched again (it shows it already)", async () => {
    const { cache, patched } = patching("+patched");
    const at = cache.position;
    // "ahead": as another node stores it once it has applied the next record.
    const ahead = { log: at.log, seq: at.seq + 1 };
    expect((await cache.storeLoaded("ahead", { body: "a", tags: ["users#1"] }, ahead)).stored).toBe(
      true,
    );
    expect((await cache.storeLoaded("current", { body: "c", tags: ["users#1"] }, at)).stored).toBe(
      true,
    );
    const row = { id: 1, name: "Ann" };
    await cache.applyWrite({ table: "users", op: "update", old: row, new: { ...row, name: "Bo" } });
    expect(patched).toEqual(["current"]);
    expect(cache.peek("ahead")).toBeUndefined();
    expect(new TextDecoder().decode(cache.peek("current")!.body)).toBe("c+patched");
  });

  it("a large entry nobody read since it was stored is removed, not patched; once read, it is patched again", async () => {
    const { cache, patched } = patching("+");
    const large = "x".repeat(COLD_PATCH_BYTES + 1);
    const tags = ["users#1"];
    await cache.setEntry("small", { body: "s", tags });
    await cache.setEntry("cold", { body: large, tags });
    await cache.setEntry("read", { body: large, tags });
    cache.peek("read");
    const write = (name: string) =>
      cache.applyWrite({ table: "users", op: "update", old: { id: 1 }, new: { id: 1, name } });
    await write("Ann");
    expect(patched.sort()).toEqual(["read", "small"]);
    expect(cache.peek("cold")).toBeUndefined();
    // Patched and not read since: the next write removes it too; the small one stays patched.
    patched.length = 0;
    await write("Bo");
    expect(patched).toEqual(["small"]);
    expect(cache.peek("read")).toBeUndefined();
    expect(new TextDecoder().decode(cache.peek("small")!.body)).toBe("s++");
  });

  it(`an entry is patched at most ${UNREAD_PATCHES} times in a row with no read between; the next write removes it`, async () => {
    const { cache, patched } = patching("+");
    const tags = ["users#1"];
    await cache.setEntry("read", { body: "r", tags });
    await cache.setEntry("unread", { body: "u", tags });
    for (let i = 0; i < UNREAD_PATCHES; i++) {
      cache.peek("read");
      await cache.applyWrite({
        table: "users",
        op: "update",
        old: { id: 1 },
        new: { id: 1, n: i },
      });
    }
    expect(patched.filter((k) => k === "unread")).toHaveLength(UNREAD_PATCHES);
    cache.peek("read");
    await cache.applyWrite({ table: "users", op: "update", old: { id: 1 }, new: { id: 1, n: -1 } });
    expect(cache.peek("unread")).toBeUndefined();
    expect(patched.filter((k) => k === "read")).toHaveLength(UNREAD_PATCHES + 1);
    expect(new TextDecoder().decode(cache.peek("read")!.body)).toBe(
      `r${"+".repeat(UNREAD_PATCHES + 1)}`,
    );
  });

  it(`an entry whose load took long is patched past ${UNREAD_PATCHES} writes with no read, until those patches have taken as long as its load (rent or buy); then the next write removes it`, async () => {
    let busy = 0;
    const { cache, patched } = patching("+", () => busy);
    const tags = ["users#1"];
    // An entry loaded in 300 ms, and one not loaded here (nothing says what its load
    // costs), which keeps the plain count.
    await loadSlowly(cache, "slow", tags);
    await cache.setEntry("set", { body: "t", tags });
    const write = updates(cache);
    for (let i = 0; i < UNREAD_PATCHES * 2; i++) await write();
    expect(patched.filter((k) => k === "set")).toHaveLength(UNREAD_PATCHES);
    expect(cache.peek("set")).toBeUndefined();
    // Sixteen patches of a few microseconds each: far from the load's 300 ms.
    expect(patched.filter((k) => k === "slow")).toHaveLength(UNREAD_PATCHES * 2);
    // Patches of 100 ms each: the third takes the upkeep past the load, the next write at
    // the latest removes it (a slow machine may reach it a patch sooner).
    busy = 100;
    patched.length = 0;
    for (let i = 0; i < 4; i++) await write();
    expect(patched.length).toBeGreaterThanOrEqual(2);
    expect(patched.length).toBeLessThanOrEqual(3);
    expect(cache.peek("slow")).toBeUndefined();
  });

  it(`whatever its load took, an entry is patched at most ${MOST_UNREAD_PATCHES} times with no read between (a clock that stands still while code runs times each patch at 0)`, async () => {
    const { cache, patched } = patching("+");
    await loadSlowly(cache, "slow", ["users#1"]);
    const write = updates(cache);
    for (let i = 0; i < MOST_UNREAD_PATCHES; i++) await write();
    expect(patched).toHaveLength(MOST_UNREAD_PATCHES);
    await write();
    expect(patched).toHaveLength(MOST_UNREAD_PATCHES);
    expect(cache.peek("slow")).toBeUndefined();
  });

  it("a patched entry lives in memory alone: the tier below keeps its older copy (checked on read) until a write that does not patch it deletes it there", async () => {
    const lower = memoryStore();
    const asked: string[] = [];
    const below = {
      ...lower,
      delete: (keys: readonly string[]) => {
        asked.push(...keys);
        return lower.delete(keys);
      },
    };
    const front = memoryStore();
    const cache = new Cache({
      tiers: [front, below],
      schema: { primaryKey: () => "id", joinColumns: () => [] },
    });
    let patching = true;
    cache.addWriteHooks({
      patch: (key, entry) =>
        patching && key === "patched"
          ? { body: `${new TextDecoder().decode(entry.body)}+`, tags: entry.tags }
          : undefined,
    });
    const tags = ["users#1"];
    const write = updates(cache);
    const text = async (key: string) => {
      const entry = await lower.get(key);
      return entry && new TextDecoder().decode(entry.body);
    };
    await cache.setEntry("patched", { body: "p", tags });
    await cache.setEntry("invalidated", { body: "i", tags });
    await write();
    expect(asked).toEqual(["invalidated"]);
    expect(await text("patched")).toBe("p");
    for (let i = 0; i < 3; i++) {
      cache.peek("patched");
      await write();
    }
    expect(asked).toEqual(["invalidated"]);
    expect(new TextDecoder().decode(cache.peek("patched")!.body)).toBe("p++++");
    // The older copy below is not served as it is: a read that finds it there checks it
    // against the log and replays the four writes since on it, as memory had them.
    await front.delete(["patched"]);
    const read = await cache.resolve("patched", async () => ({ body: "loaded", tags }));
    expect(new TextDecoder().decode(read.entry.body)).toBe("p++++");
    expect(cache.stats().replayed).toBe(1);
    // A write that cannot patch it deletes it below too.
    await cache.setEntry("patched", { body: "q", tags });
    patching = false;
    asked.length = 0;
    await write();
    expect(asked.sort()).toEqual(["patched"]);
    expect(await text("patched")).toBeUndefined();
  });

  it("a read pays for the patches before it: an entry read again starts its upkeep anew", async () => {
    let busy = 0;
    const { cache, patched } = patching("+", () => busy);
    const tags = ["users#1"];
    await loadSlowly(cache, "slow", tags);
    const write = updates(cache);
    busy = 100;
    for (let i = 0; i < 2; i++) await write();
    // Read: the 200 ms spent are forgotten. Two more costly patches and 8 cheap ones (the
    // first write after a read, then 9 with no read: past the plain count) took 200 ms
    // since: less than the load.
    expect(new TextDecoder().decode(cache.peek("slow")!.body)).toBe("s++");
    for (let i = 0; i < 2; i++) await write();
    busy = 0;
    for (let i = 0; i < UNREAD_PATCHES; i++) await write();
    expect(patched).toHaveLength(UNREAD_PATCHES + 4);
    expect(new TextDecoder().decode(cache.peek("slow")!.body)).toBe(
      `s${"+".repeat(UNREAD_PATCHES + 4)}`,
    );
  });

  it("write hooks given when the cache is made patch and refetch; added ones take their prefix's keys, until removed", async () => {
    const refetched: string[] = [];
    const cache = new Cache({
      tiers: [memoryStore()],
      schema: { primaryKey: () => "id", joinColumns: () => [] },
      rehydrate: { minHits: 1 },
      writeHooks: {
        patch: (key, entry) =>
          key === "patched"
            ? { body: `${new TextDecoder().decode(entry.body)}+patched`, tags: entry.tags }
            : undefined,
        refetch: async (key) => {
          refetched.push(key);
        },
      },
    });
    await cache.setEntry("patched", { body: "p", tags: ["users#1"] });
    await cache.setEntry("hot", { body: "h", tags: ["users#1"] });
    expect(cache.peek("hot")).toBeDefined(); // a hit: hot enough to refetch
    const row = { id: 1, name: "Ann" };
    await cache.applyWrite({ table: "users", op: "update", old: row, new: { ...row, name: "Bo" } });
    await cache.drain();
    expect(new TextDecoder().decode(cache.peek("patched")!.body)).toBe("p+patched");
    expect(refetched).toEqual(["hot"]);

    // Hooks for the keys under "q:" (a query cache sharing the engine, say): theirs patch
    // and refetch those keys only; the first hooks keep every other key.
    const theirs: string[] = [];
    const remove = cache.addWriteHooks({
      prefix: "q:",
      patch: (key, entry) =>
        key === "q:patched"
          ? { body: `${new TextDecoder().decode(entry.body)}+q`, tags: entry.tags }
          : undefined,
      refetch: async (key) => {
        theirs.push(key);
      },
    });
    await cache.setEntry("q:patched", { body: "p", tags: ["users#1"] });
    await cache.setEntry("q:hot", { body: "h", tags: ["users#1"] });
    expect(cache.peek("q:hot")).toBeDefined();
    await cache.applyWrite({ table: "users", op: "update", old: row, new: { ...row, name: "Cy" } });
    await cache.drain();
    expect(new TextDecoder().decode(cache.peek("q:patched")!.body)).toBe("p+q");
    expect(new TextDecoder().decode(cache.peek("patched")!.body)).toBe("p+patched+patched");
    expect(theirs).toEqual(["q:hot"]);
    expect(refetched).toEqual(["hot"]); // "hot" was not read again since: not hot any more

    // Removed: the first hooks take the "q:" keys back (and patch only "patched").
    remove();
    await cache.applyWrite({ table: "users", op: "update", old: row, new: { ...row, name: "Di" } });
    await cache.drain();
    expect(cache.peek("q:patched")).toBeUndefined();
    expect(new TextDecoder().decode(cache.peek("patched")!.body)).toBe("p+patched+patched+patched");
    expect(theirs).toEqual(["q:hot"]);
  });

  it("write hooks that are not functions are refused when the cache is made", () => {
    expect(
      () => new Cache({ tiers: [memoryStore()], writeHooks: { patch: "no" as never } }),
    ).toThrow(/"writeHooks.patch": expected a function/);
  });
});
