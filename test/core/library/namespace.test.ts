import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { createCache } from "../../../src/core/cache/index.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { fakeClock } from "../../helpers/chaos-store.ts";
import { errorOf } from "../../helpers/errors.ts";

const quiet = { warn: () => {} };

/** Memory over a second memory tier: entries survive the first tier's loss. */
function twoTiers() {
  const clock = fakeClock();
  const top = memoryStore({ now: clock.now });
  const bottom = memoryStore({ now: clock.now });
  const cache = createCache({ tiers: [top, bottom], now: clock.now, ttl: 60_000, logger: quiet });
  return { clock, top, bottom, cache };
}

describe("namespaces", () => {
  it("keep the same key apart in two namespaces and from the root", async () => {
    const { cache } = twoTiers();
    const a = cache.namespace("a");
    const b = cache.namespace("b");
    await cache.set("k", "root");
    await a.set("k", "in a");
    await b.set("k", "in b");
    expect(await cache.get("k")).toBe("root");
    expect(await a.get("k")).toBe("in a");
    expect(await b.get("k")).toBe("in b");
    // Two handles on one name are one namespace.
    expect(await cache.namespace("a").get("k")).toBe("in a");
  });

  it("apply their own TTL unless a call gives one", async () => {
    const { clock, cache } = twoTiers();
    const short = cache.namespace("short", { ttl: 1000 });
    await short.set("default", 1);
    await short.set("longer", 2, { ttl: 10_000 });
    await cache.set("root", 3);
    clock.advance(2000);
    expect(await short.get("default")).toBeUndefined();
    expect(await short.get("longer")).toBe(2);
    expect(await cache.get("root")).toBe(3);
  });

  it("give every entry the namespace's tags, invalidated within the namespace only", async () => {
    const { cache } = twoTiers();
    const cms = cache.namespace("cms", { tags: ["pages"] });
    const blog = cache.namespace("blog", { tags: ["pages"] });
    await cms.set("p1", 1);
    await cms.set("p2", 2, { tags: ["p2"] });
    await blog.set("p1", 3);
    await cache.set("p1", 4, { tags: ["pages"] });
    expect(await cms.invalidate({ tags: ["pages"] })).toBe(2);
    expect(await cms.get("p1")).toBeUndefined();
    expect(await cms.get("p2")).toBeUndefined();
    expect(await blog.get("p1")).toBe(3);
    expect(await cache.get("p1")).toBe(4);
  });

  it("clear in O(1): old entries are never read again, even from a lower tier", async () => {
    const { top, bottom, cache } = twoTiers();
    const content = cache.namespace("content");
    const other = cache.namespace("other");
    for (let i = 0; i < 50; i++) await content.set(`k${i}`, i);
    await other.set("k0", "kept");
    await content.clear();
    // Nothing deleted: the old entries are still stored, under the old token.
    let stored = 0;
    for await (const _ of bottom.keys("ns:content:")) stored++;
    expect(stored).toBe(50);
    await top.delete(["ns:content"]); // the token read back from the lower tier
    for (let i = 0; i < 50; i++) expect(await content.get(`k${i}`)).toBeUndefined();
    expect(await other.get("k0")).toBe("kept");
    const load = vi.fn(() => "fresh");
    expect(await content.getOrSet("k1", load)).toBe("fresh");
    expect(load).toHaveBeenCalledTimes(1);
  });

  it("serve nothing old when the version token is lost from every tier", async () => {
    const { top, bottom, cache } = twoTiers();
    const content = cache.namespace("content");
    await content.set("k", "old");
    await content.clear();
    await content.set("k", "new");
    await top.delete(["ns:content"]);
    await bottom.delete(["ns:content"]);
    expect(await content.get("k")).toBeUndefined();
  });

  it("invalidate their own keys and prefixes", async () => {
    const { cache } = twoTiers();
    const a = cache.namespace("a");
    const b = cache.namespace("b");
    for (const ns of [a, b]) {
      await ns.set("user:1", 1);
      await ns.set("user:2", 2);
      await ns.set("post:1", 3);
    }
    expect(await a.invalidate({ prefix: "user:" })).toBe(2);
    expect(await a.delete("post:1")).toBe(true);
    expect(await a.get("user:1")).toBeUndefined();
    expect(await a.get("post:1")).toBeUndefined();
    expect(await b.get("user:1")).toBe(1);
    expect(await b.get("user:2")).toBe(2);
    expect(await b.get("post:1")).toBe(3);
  });

  it("count the caller's reads in the stats, not the reads of their version token", async () => {
    const { cache } = twoTiers();
    const a = cache.namespace("a");
    await a.set("k", 1);
    const before = cache.stats();
    await a.get("k");
    await a.get("k");
    const after = cache.stats();
    expect(after.hits - before.hits).toBe(2);
  });

  it("batch within the namespace: getMany, setMany with its defaults, deleteMany", async () => {
    const { clock, cache } = twoTiers();
    const a = cache.namespace("a", { ttl: 1000, tags: ["all"] });
    const b = cache.namespace("b");
    await b.setMany([
      { key: "k1", value: "b1" },
      { key: "k2", value: "b2" },
    ]);
    await a.setMany([
      { key: "k1", value: 1 },
      { key: "k2", value: 2, ttl: 10_000 },
      { key: "k3", value: 3 },
    ]);
    expect(await a.getMany(["k1", "k2", "k3", "k4"])).toEqual([1, 2, 3, undefined]);
    expect(await a.deleteMany(["k3", "k4"])).toBe(1);
    clock.advance(2000); // past the namespace's TTL, not k2's own
    expect(await a.getMany(["k1", "k2", "k3"])).toEqual([undefined, 2, undefined]);
    expect(await a.invalidate({ tags: ["all"] })).toBe(1);
    expect(await b.getMany(["k1", "k2"])).toEqual(["b1", "b2"]);
  });

  it("invalidate key globs within the namespace only", async () => {
    const { cache } = twoTiers();
    const a = cache.namespace("a");
    const b = cache.namespace("b");
    for (const ns of [a, b]) {
      await ns.set("page:1:en", 1);
      await ns.set("page:1:fr", 2);
      await ns.set("page:2:en", 3);
    }
    await cache.set("page:1:en", "root");
    expect(await a.invalidate({ patterns: ["page:*:en"] })).toBe(2);
    expect(await a.getMany(["page:1:en", "page:1:fr", "page:2:en"])).toEqual([
      undefined,
      2,
      undefined,
    ]);
    expect(await b.getMany(["page:1:en", "page:1:fr", "page:2:en"])).toEqual([1, 2, 3]);
    expect(await cache.get("page:1:en")).toBe("root");
  });

  it("keep their entries in the tiers they chose: memory only never writes or asks the lower tier", async () => {
    const lower = memoryStore();
    const calls = { get: 0, set: 0 };
    const counted = {
      ...lower,
      name: "kv",
      get(key: string) {
        calls.get++;
        return lower.get(key);
      },
      set(...args: Parameters<typeof lower.set>) {
        calls.set++;
        return lower.set(...args);
      },
    };
    const top = memoryStore();
    const cache = createCache({ tiers: [top, counted] });
    const session = cache.namespace("session", { tiers: ["memory"] });
    const content = cache.namespace("content", { tiers: ["memory", "kv"] });
    await session.set("s1", { user: 1 });
    expect(await session.getOrSet("s2", () => 2)).toBe(2);
    await session.setMany([{ key: "s3", value: 3 }]);
    expect(calls).toEqual({ get: 0, set: 0 });
    await content.set("page", "home");
    expect(calls.set).toBeGreaterThan(0); // its token and its entry
    // Memory loses everything (a restart, eviction): the session entries are gone without
    // a read of the lower tier; the content entry comes back from it.
    const held: string[] = [];
    for await (const key of top.keys("")) held.push(key);
    await top.delete(held);
    const asked = calls.get;
    expect(await session.get("s1")).toBeUndefined();
    expect(await session.getMany(["s2", "s3"])).toEqual([undefined, undefined]);
    expect(calls.get).toBe(asked);
    expect(await content.get("page")).toBe("home");
    expect(calls.get).toBeGreaterThan(asked);
    // A call may choose its tiers too.
    await cache.set("root", 1, { tiers: ["memory"] });
    expect(await lower.get("root")).toBeUndefined();
  });

  it("refuse a bad name or option in expected-X-got-Y form", () => {
    const { cache } = twoTiers();
    expect(errorOf(() => cache.namespace("a:b")).message).toContain(
      `option "name": expected letters, digits, '_', '.' or '-', got "a:b"`,
    );
    expect(errorOf(() => cache.namespace("")).code).toBe("E_BAD_OPTION");
    expect(errorOf(() => cache.namespace("a", { ttl: -1 })).message).toContain(
      'option "ttl": expected a positive number of ms, got -1',
    );
    expect(
      errorOf(() => cache.namespace("a", { tags: [1] as unknown as string[] })).message,
    ).toContain('option "tags": expected an array of strings, got 1');
    for (const tiers of [["second"], [], ["memory", "memory", "memory"], "memory"]) {
      expect(errorOf(() => cache.namespace("a", { tiers: tiers as string[] })).message).toContain(
        'option "tiers": expected the first tiers of the cache, in order (memory, memory), got',
      );
    }
    expect(errorOf(() => cache.namespace("a", { tiers: ["nope"] })).message).toContain(
      'in order (memory, memory), got "nope" at tiers[0]',
    );
  });
});

type Op =
  | { kind: "set"; ns: number; key: string; tags: string[]; value: number }
  | { kind: "invalidateTag"; ns: number; tag: string }
  | { kind: "invalidateKey"; ns: number; key: string }
  | { kind: "invalidatePrefix"; ns: number; prefix: string }
  | { kind: "invalidatePattern"; ns: number; pattern: string }
  | { kind: "clear"; ns: number };

const NAMES = ["a", "b", "c"];
const KEYS = ["k1", "k2", "x1", "x2"];
const TAGS = ["t1", "t2", "t3"];

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("set" as const),
    ns: fc.nat(NAMES.length - 1),
    key: fc.constantFrom(...KEYS),
    tags: fc.subarray(TAGS),
    value: fc.integer(),
  }),
  fc.record({
    kind: fc.constant("invalidateTag" as const),
    ns: fc.nat(NAMES.length - 1),
    tag: fc.constantFrom(...TAGS),
  }),
  fc.record({
    kind: fc.constant("invalidateKey" as const),
    ns: fc.nat(NAMES.length - 1),
    key: fc.constantFrom(...KEYS),
  }),
  fc.record({
    kind: fc.constant("invalidatePrefix" as const),
    ns: fc.nat(NAMES.length - 1),
    prefix: fc.constantFrom("k", "x", "k1"),
  }),
  fc.record({
    kind: fc.constant("invalidatePattern" as const),
    ns: fc.nat(NAMES.length - 1),
    pattern: fc.constantFrom("*1", "?2", "k*", "*"),
  }),
  fc.record({ kind: fc.constant("clear" as const), ns: fc.nat(NAMES.length - 1) }),
);

/** The model's glob: `*` any run, `?` one character (keys here are letters and digits). */
function globMatches(pattern: string, key: string): boolean {
  return new RegExp(`^${pattern.replaceAll("*", ".*").replaceAll("?", ".")}$`).test(key);
}

describe("namespaces (property)", () => {
  it("no clear or invalidation in one namespace ever touches another's keys or tags", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), async (ops) => {
        const { top, cache } = twoTiers();
        const spaces = NAMES.map((n) => cache.namespace(n));
        // The model: per namespace, key -> value and tags; recomputed from the ops alone.
        const model = NAMES.map(() => new Map<string, { value: number; tags: string[] }>());
        for (const op of ops) {
          const ns = spaces[op.ns]!;
          const m = model[op.ns]!;
          if (op.kind === "set") {
            await ns.set(op.key, op.value, { tags: op.tags });
            m.set(op.key, { value: op.value, tags: op.tags });
          } else if (op.kind === "invalidateTag") {
            await ns.invalidate({ tags: [op.tag] });
            for (const [k, e] of m) if (e.tags.includes(op.tag)) m.delete(k);
          } else if (op.kind === "invalidateKey") {
            await ns.invalidate({ keys: [op.key] });
            m.delete(op.key);
          } else if (op.kind === "invalidatePrefix") {
            await ns.invalidate({ prefix: op.prefix });
            for (const k of m.keys()) if (k.startsWith(op.prefix)) m.delete(k);
          } else if (op.kind === "invalidatePattern") {
            await ns.invalidate({ patterns: [op.pattern] });
            for (const k of m.keys()) if (globMatches(op.pattern, k)) m.delete(k);
          } else {
            await ns.clear();
            m.clear();
          }
        }
        // Read through the memory tier, then through the lower tier alone.
        for (const pass of [0, 1]) {
          if (pass === 1) {
            const all: string[] = [];
            for await (const k of top.keys("")) all.push(k);
            await top.delete(all);
          }
          for (const [i, ns] of spaces.entries()) {
            for (const key of KEYS) {
              expect(await ns.get(key)).toBe(model[i]!.get(key)?.value);
            }
          }
        }
      }),
      { numRuns: 40 },
    );
  });
});
