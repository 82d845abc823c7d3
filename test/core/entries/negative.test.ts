import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createCache } from "../../../src/core/cache/index.ts";
import { NegativeQuota } from "../../../src/core/entries/negative.ts";
import type { ListableStore } from "../../../src/core/store.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { sqliteStore } from "../../../src/stores/sqlite.ts";

// Cached 404s (and 410s) have a quota of their own: a flood of made-up URLs cannot push
// real entries out of the tiers, nor grow them.

const quiet = { warn: () => {} };
const dir = mkdtempSync(join(tmpdir(), "edgecache-negative-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const notFound = async () => ({ body: '{"error":"not found"}', status: 404 });
const found = (i: number) => async () => ({ body: `{"id":${i}}` });

async function keysOf(store: ListableStore): Promise<string[]> {
  const keys: string[] = [];
  for await (const k of store.keys("")) keys.push(k);
  return keys.sort();
}

describe("NegativeQuota", () => {
  it("names the least recently used key past its size; a use makes a key recent", () => {
    const quota = new NegativeQuota(2);
    expect(quota.admit("a")).toBeUndefined();
    expect(quota.admit("b")).toBeUndefined();
    quota.touch("a");
    expect(quota.admit("c")).toBe("b");
    expect(quota.admit("d")).toBe("a");
    quota.forget("c");
    expect(quota.admit("e")).toBeUndefined();
    expect(quota).toMatchObject({ size: 2, evictions: 2 });
  });
});

describe("cached 404s under a flood of made-up URLs", () => {
  it("keep to their quota in every tier and in the index, and real entries stay hits", async () => {
    const memory = memoryStore({ maxEntries: 100 });
    const file = sqliteStore({ path: join(dir, "flood.db"), maxEntries: 100 });
    const cache = createCache({
      tiers: [memory, file],
      notFound: { maxEntries: 10 },
      logger: quiet,
    });
    for (let i = 0; i < 50; i++) await cache.resolve(`GET /v1/users/${i}`, found(i));
    for (let i = 0; i < 1000; i++) await cache.resolve(`GET /v1/users/nope-${i}`, notFound);
    await cache.drain();

    const negatives = (keys: string[]) => keys.filter((k) => k.includes("nope-"));
    expect(negatives(await keysOf(memory))).toHaveLength(10);
    expect(negatives(await keysOf(file))).toHaveLength(10);
    expect(negatives([...cache.keys()])).toHaveLength(10);
    for (let i = 0; i < 50; i++) {
      expect((await cache.resolve(`GET /v1/users/${i}`, found(i))).status).toBe("hit");
    }
    expect(cache.stats().notFound).toEqual({ entries: 10, maxEntries: 10, evictions: 990 });
    expect(cache.stats().invalidations).toBe(0);
    await file.close();
  });

  it("a 404 that is asked for again outlives the flood's", async () => {
    const cache = createCache({
      tiers: [memoryStore()],
      notFound: { maxEntries: 5 },
      logger: quiet,
    });
    await cache.resolve("GET /v1/users/polled", notFound);
    for (let i = 0; i < 100; i++) {
      await cache.resolve(`GET /v1/users/nope-${i}`, notFound);
      expect((await cache.resolve("GET /v1/users/polled", notFound)).status).toBe("hit");
    }
  });

  it("a key whose 404 became a row leaves the quota", async () => {
    const cache = createCache({
      tiers: [memoryStore()],
      notFound: { maxEntries: 2 },
      logger: quiet,
    });
    await cache.resolve("GET /v1/users/a", notFound);
    await cache.invalidate({ keys: ["GET /v1/users/a"] });
    await cache.resolve("GET /v1/users/a", found(1));
    await cache.resolve("GET /v1/users/b", notFound);
    await cache.resolve("GET /v1/users/c", notFound);
    expect(cache.stats().notFound).toMatchObject({ entries: 2, evictions: 0 });
    expect((await cache.resolve("GET /v1/users/a", found(1))).status).toBe("hit");
  });

  it.each([0, -1, 1.5, "10"])("refuses notFound.maxEntries = %j in expected/got form", (max) => {
    expect(() =>
      createCache({ tiers: [memoryStore()], notFound: { maxEntries: max as number } }),
    ).toThrow(/option "notFound.maxEntries": expected a positive integer, got /);
  });
});
