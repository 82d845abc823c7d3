import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { sumStats } from "../../src/adapter/node/tenants/dispatcher.ts";
import { Cache } from "../../src/core/cache/index.ts";
import { hitRate, toPrometheus } from "../../src/core/stats.ts";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";

// stats() has a hit rate (issue 43 item 7): one definition, hits / (hits + misses), null
// before the first read, in every report (the engine's and each tier's, the Prometheus
// text, a node of tenants, the query caches).

describe("hitRate", () => {
  it("is hits over hits and misses, and null (not 0) before any read", () => {
    expect(hitRate(0, 0)).toBeNull();
    expect(hitRate(0, 4)).toBe(0);
    expect(hitRate(3, 1)).toBe(0.75);
  });
});

describe("the engine's stats", () => {
  it("say the share of reads answered from the cache (stale hits served, bypasses not), per tier too", async () => {
    const cache = new Cache({ tiers: [memoryStore()] });
    const before = cache.stats();
    expect(before.hitRate).toBeNull();
    expect(before.tiers[0]!.hitRate).toBeNull();
    // No sample before the first read: a gauge at 0 would say every read missed.
    expect(toPrometheus(before)).not.toMatch(/^edgecache_hit_rate /m);

    await cache.setEntry("k", { body: "v" });
    cache.countRead("k", "hit");
    cache.countRead("k", "stale");
    cache.countRead("other", "miss");
    expect(await cache.getEntry("k")).toBeDefined();
    // A lookup that leaves counting to its caller: a miss of the tier, not of the cache.
    expect(await cache.getEntry("missing")).toBeUndefined();
    const s = cache.stats();
    expect(s).toMatchObject({ hits: 2, staleHits: 1, misses: 1, bypasses: 0 });
    expect(s.hitRate).toBe(3 / 4);
    const memory = s.tiers[0]!;
    expect(memory.hitRate).toBe(hitRate(memory.hits, memory.misses));
    expect(memory).toMatchObject({ hits: 1, misses: 1, hitRate: 0.5 });
    const text = toPrometheus(s);
    expect(text).toContain(`edgecache_hit_rate ${3 / 4}\n`);
    expect(text).toContain(`edgecache_tier_hit_rate{tier="memory"} ${memory.hitRate}\n`);
    await cache.close();
  });

  it("a node of tenants: the rate of the summed counters, not a sum of rates", async () => {
    const a = new Cache({ tiers: [memoryStore()] });
    const b = new Cache({ tiers: [memoryStore()] });
    a.countRead("k", "hit");
    a.countRead("k", "hit");
    a.countRead("k", "hit");
    b.countRead("k", "miss");
    const all = sumStats([a.stats(), b.stats()]);
    expect(all.hitRate).toBe(0.75);
    expect(sumStats([]).hitRate).toBeNull();
    await a.close();
    await b.close();
  });
});

describe("a query cache's getStats", () => {
  it("has hitRate: null before a query, then hits / (hits + misses)", async () => {
    const db = new Database(":memory:");
    db.exec("create table t (id integer primary key, n integer); insert into t values (1, 1)");
    const sql = sqlCache({ client: db, tiers: [memoryStore()], capture: false });
    expect(sql.getStats().hitRate).toBeNull();
    await sql.query("select n from t where id = ?", [1]);
    await sql.query("select n from t where id = ?", [1]);
    await sql.query("select n from t where id = ?", [1]);
    await sql.query("select n from t where id = ?", [2]);
    const s = sql.getStats();
    expect(s).toMatchObject({ hits: 2, misses: 2 });
    expect(s.hitRate).toBe(0.5);
    await sql.close();
    db.close();
  });
});
