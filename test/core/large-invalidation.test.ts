import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createCache } from "../../src/core/cache/index.ts";
import { PendingRemovals, REMOVE_CHUNK } from "../../src/core/entries/removal.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { sqliteStore } from "../../src/stores/sqlite.ts";

// A large invalidation goes a chunk at a time, so other requests are answered before it
// is done, and none of them sees an entry it removes, whichever chunk holds it.

const quiet = { warn: () => {} };
const dir = mkdtempSync(join(tmpdir(), "edgecache-large-invalidation-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const N = 5000;

async function filled() {
  const memory = memoryStore({ maxEntries: 2 * N });
  const file = sqliteStore({ path: join(dir, `cache-${Math.random()}.db`), maxEntries: 2 * N });
  const cache = createCache({ tiers: [memory, file], logger: quiet });
  for (let i = 0; i < N; i++)
    await cache.getOrSet(`GET /v1/users/${i}`, () => i, { tags: ["users"] });
  await cache.getOrSet("GET /v1/orders/1", () => "order");
  return { cache, file };
}

describe("large invalidations", () => {
  it.each([
    ["a prefix", { prefix: "GET /v1/users/" }],
    ["a tag", { tags: ["users"] }],
  ])(
    "by %s: other reads are answered before it resolves, and none sees a removed entry",
    async (_, request) => {
      const { cache, file } = await filled();
      let resolved = false;
      const invalidation = cache.invalidate(request).then((n) => {
        resolved = true;
        return n;
      });
      // One turn of the event loop: a request that arrived meanwhile.
      await new Promise((r) => setTimeout(r, 0));
      expect(resolved).toBe(false);
      expect(cache.peek("GET /v1/orders/1")).toBeDefined();
      for (const i of [0, N / 2, N - 1]) {
        expect(cache.peek(`GET /v1/users/${i}`)).toBeUndefined();
        expect(await cache.getEntry(`GET /v1/users/${i}`)).toBeUndefined();
      }
      expect(await invalidation).toBe(N);
      expect([...cache.keys()].length).toBe(1);
      expect(file.size().entries).toBe(1);
      await file.close();
    },
  );
});

describe("prefix invalidations", () => {
  it("remove what a lower tier holds under the prefix that this node never registered (an earlier process stored it)", async () => {
    const path = join(dir, `earlier-${Math.random()}.db`);
    const earlier = sqliteStore({ path });
    const before = createCache({ tiers: [memoryStore(), earlier], logger: quiet });
    for (let i = 0; i < 3 * REMOVE_CHUNK; i++) await before.getOrSet(`GET /v1/users/${i}`, () => i);
    await before.getOrSet("GET /v1/orders/1", () => "order");
    await earlier.close();

    const file = sqliteStore({ path });
    const cache = createCache({ tiers: [memoryStore(), file], logger: quiet });
    expect([...cache.keys()].length).toBe(0);
    expect(await cache.invalidate({ prefix: "GET /v1/users/" })).toBe(3 * REMOVE_CHUNK);
    expect(file.size().entries).toBe(1);
    await file.close();
  });
});

describe("PendingRemovals", () => {
  it("keeps a key two removals name until both are done", () => {
    const pending = new PendingRemovals();
    const first = new Set(["a", "b"]);
    const second = new Set(["b"]);
    pending.add(first);
    pending.add(second);
    pending.delete(first);
    expect(pending.has("a")).toBe(false);
    expect(pending.has("b")).toBe(true);
    pending.delete(second);
    expect(pending.has("b")).toBe(false);
  });
});
