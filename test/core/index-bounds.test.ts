import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { type Cache, createCache } from "../../src/core/cache/index.ts";
import { localChangeLog } from "../../src/core/change-log/in-process.ts";
import type { ListableStore, Store } from "../../src/core/store.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { redisStore } from "../../src/stores/redis.ts";
import { sqliteStore } from "../../src/stores/sqlite.ts";
import { requireRedis } from "../helpers/services.ts";

// The dependency index is bounded with the tiers: an entry no tier holds has no
// registration, whichever tiers there are and however the entry got there (stored here,
// or read from a cache file an earlier process left).

const quiet = { warn: () => {} };
const redis = await requireRedis();
const dir = mkdtempSync(join(tmpdir(), "edgecache-index-bounds-"));
let files = 0;
const cleanup: (() => Promise<unknown> | unknown)[] = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sqlite(maxEntries: number) {
  const store = sqliteStore({ path: join(dir, `cache-${++files}.db`), maxEntries });
  cleanup.push(() => store.close());
  return store;
}

async function keysOf(store: ListableStore): Promise<Set<string>> {
  const keys = new Set<string>();
  for await (const k of store.keys("")) keys.add(k);
  return keys;
}

/** Stores `n` keys, reading back an earlier one now and then (a read back-fills memory). */
async function flood(cache: Cache, n: number, prefix = "k"): Promise<void> {
  for (let i = 0; i < n; i++) {
    await cache.getOrSet(`${prefix}${i}`, () => i, { tags: [`t${i}`] });
    if (i % 7 === 0) await cache.getOrSet(`${prefix}${Math.floor(i / 2)}`, () => -1);
  }
}

async function expectIndexed(cache: Cache, bounded: ListableStore[]): Promise<void> {
  const held = new Set<string>();
  for (const store of bounded) for (const k of await keysOf(store)) held.add(k);
  expect(new Set(cache.keys())).toEqual(held);
}

describe("dependency index bounded with the tiers", () => {
  it("memory first, SQLite last: registered exactly while either tier holds the entry", async () => {
    const memory = memoryStore({ maxEntries: 50 });
    const file = sqlite(200);
    const cache = createCache({ tiers: [memory, file], logger: quiet });
    await flood(cache, 2000);
    await cache.drain();
    expect([...cache.keys()].length).toBeLessThanOrEqual(250);
    await expectIndexed(cache, [memory, file]);
  });

  it("an entry evicted from memory but still in SQLite stays registered, so a write still removes it", async () => {
    const memory = memoryStore({ maxEntries: 1 });
    const file = sqlite(10);
    const cache = createCache({ tiers: [memory, file], logger: quiet });
    await cache.set("a", 1, { tags: ["t-a"] });
    await cache.set("b", 2);
    expect(await memory.get("a")).toBeUndefined();
    expect(await cache.invalidate({ tags: ["t-a"] })).toBe(1);
    expect(await file.get("a")).toBeUndefined();
  });

  it("an entry SQLite evicts keeps its copy in memory and its registration until memory evicts it too", async () => {
    const memory = memoryStore({ maxEntries: 2 });
    const file = sqlite(1);
    const cache = createCache({ tiers: [memory, file], logger: quiet });
    await cache.set("a", 1, { tags: ["t-a"] });
    await cache.set("b", 2);
    expect(await file.get("a")).toBeUndefined();
    expect((await keysOf(memory)).has("a")).toBe(true);
    expect(cache.registration("a") !== undefined).toBe(true);
    await cache.set("c", 3);
    expect(cache.registration("a") !== undefined).toBe(false);
    await expectIndexed(cache, [memory, file]);
  });

  it("entries registered when read from a cache file an earlier process left go when both tiers evict them", async () => {
    const path = join(dir, `cache-${++files}.db`);
    const log = localChangeLog();
    const before = sqliteStore({ path, maxEntries: 100 });
    const earlier = createCache({ tiers: [memoryStore(), before], log, logger: quiet });
    for (let i = 0; i < 20; i++) await earlier.getOrSet(`old${i}`, () => i, { tags: [`old${i}`] });
    await before.close();

    const memory = memoryStore({ maxEntries: 10 });
    const file = sqliteStore({ path, maxEntries: 100 });
    cleanup.push(() => file.close());
    const cache = createCache({
      tiers: [memory, file],
      log: localChangeLog({ resume: log.snapshot() }),
      logger: quiet,
    });
    expect([...cache.keys()].length).toBe(0);
    for (let i = 0; i < 20; i++) expect(await cache.get(`old${i}`)).toBe(i);
    expect([...cache.keys()].length).toBe(20);
    await flood(cache, 300);
    for (let i = 0; i < 20; i++) expect(cache.registration(`old${i}`) !== undefined).toBe(false);
    await expectIndexed(cache, [memory, file]);
  });
});

redis.describe("dependency index bounded with the tiers, Redis last", () => {
  async function shared(): Promise<ListableStore & Store> {
    const store = await redisStore({ url: redis.url, prefix: `edgecache-test:${randomUUID()}:` });
    cleanup.push(async () => {
      const keys = [...(await keysOf(store))];
      if (keys.length > 0) await store.delete(keys);
      await store.close();
    });
    return store;
  }

  it("memory, SQLite, Redis: only entries memory or SQLite holds are registered", async () => {
    const memory = memoryStore({ maxEntries: 20 });
    const file = sqlite(50);
    const last = await shared();
    const cache = createCache({ tiers: [memory, file, last], logger: quiet });
    await flood(cache, 400);
    await cache.drain();
    expect((await keysOf(last)).size).toBe(400);
    expect([...cache.keys()].length).toBeLessThanOrEqual(70);
    await expectIndexed(cache, [memory, file]);
  });

  it("memory, Redis: the index is bounded by memory, and an unregistered Redis entry a change concerns is not served", async () => {
    const memory = memoryStore({ maxEntries: 20 });
    const last = await shared();
    const cache = createCache({ tiers: [memory, last], logger: quiet });
    await flood(cache, 200);
    await cache.drain();
    await expectIndexed(cache, [memory]);

    expect(cache.registration("k0") !== undefined).toBe(false);
    expect(await last.get("k0")).toBeDefined();
    await cache.invalidate({ tags: ["t0"] });
    expect(await cache.getOrSet("k0", () => "reloaded")).toBe("reloaded");
  });
});
