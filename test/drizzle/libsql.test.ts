import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { UpstashStyleCache } from "../helpers/upstash-style-cache.ts";
import { type AnyDb, type Harness, libsqlHarness } from "./drivers.ts";
import { drizzleSuite } from "./suite.ts";

describe("drizzle on libSQL (file URL)", () => {
  drizzleSuite(() => libsqlHarness());
});

describe("drizzle on libSQL: values Drizzle's cache loses", () => {
  let h: Harness;
  beforeAll(async () => {
    h = libsqlHarness("bigint");
    await h.reset();
    await h.exec("update users set big = cast('12345678901234567890' as blob)");
  });
  afterAll(async () => {
    await h?.close();
  });

  it("libSQL rows, blobs and bigints come back from a hit as the driver returned them", async () => {
    // (Drizzle's timestamp columns cannot read bigints, so "at" is left out.)
    const select = (db: AnyDb) =>
      db.select({ id: h.users.id, name: h.users.name, big: h.users.big }).from(h.users);
    const plain = await select(h.db());
    expect(typeof plain[0].id).toBe("bigint");

    // Upstash-style (JSON): bigints cannot even be stored, so the query itself fails...
    const upstash = h.db(new UpstashStyleCache());
    await expect(select(upstash)).rejects.toThrow(/BigInt/);
    // ...and without bigints the rows come back empty: libSQL's indexes do not survive JSON.
    const numbers = libsqlHarness();
    try {
      await numbers.reset();
      const db = numbers.db(new UpstashStyleCache());
      const q = () =>
        db.select({ id: numbers.users.id, name: numbers.users.name }).from(numbers.users);
      expect(await q()).toEqual([{ id: 1, name: "Ann" }]);
      expect(await q()).toEqual([{ id: undefined, name: undefined }]); // the hit
    } finally {
      await numbers.close();
    }

    const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    const db = withTransactions(h.db(cache));
    await select(db);
    const hit = await select(db);
    expect(cache.getStats().hits).toBe(1);
    expect(hit).toStrictEqual(plain);
    expect(hit[0].big).toBe(12345678901234567890n);
  });
});

describe("drizzle on libSQL: damaged entries and bad options", () => {
  it("a damaged entry costs a miss and a counted, logged fault, never the query", async () => {
    const h = libsqlHarness();
    try {
      await h.reset();
      const lines: string[] = [];
      const cache = drizzleCache({
        tiers: [memoryStore()],
        logger: { warn: (m: string) => lines.push(m) },
      });
      const db = h.db(cache);
      const feed = () => db.select().from(h.posts).$withCache({ tag: "feed" });
      await cache.engine.setEntry("drizzle:tag:feed", { body: "{not json" });
      expect((await feed())[0].title).toBe("hello");
      expect((await feed())[0].title).toBe("hello"); // stored again, now a hit
      expect(cache.getStats()).toMatchObject({ faults: 1, hits: 1, misses: 1 });
      expect(lines).toEqual([expect.stringContaining("[edgecache] [drizzle] get failed")]);
    } finally {
      await h.close();
    }
  });

  it("refuses bad options when created, naming the option", () => {
    expect(() => drizzleCache({})).toThrow(/tiers \| cache/);
    expect(() => drizzleCache({ tiers: [memoryStore()], strategy: "some" as "all" })).toThrow(
      /option "strategy": expected "explicit" or "all", got "some"/,
    );
    expect(() => drizzleCache({ tiers: [memoryStore()], ttl: 0 })).toThrow(/option "ttl"/);
    expect(() =>
      drizzleCache({ tiers: [memoryStore()], reload: "no" as unknown as boolean }),
    ).toThrow(/option "reload": expected a boolean/);
  });
});

describe("edgecache/drizzle without drizzle-orm installed", () => {
  it("imports drizzle-orm for its types only, so importing edgecache never needs it", () => {
    const dir = new URL("../../src/drizzle/", import.meta.url);
    for (const file of readdirSync(dir)) {
      const text = readFileSync(new URL(file, dir), "utf8");
      for (const line of text
        .split("\n")
        .filter((l) => /^import .*from\s+["']drizzle-orm/.test(l))) {
        expect(line, file).toMatch(/^import type /);
      }
    }
  });
});
