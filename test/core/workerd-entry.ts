// Bundled by test/core/in-workerd.test.ts and run inside workerd: the portable
// core (engine, memory tier, planner) must work on the Workers runtime as it is.
import { createCache } from "../../src/core/cache/index.ts";
import { planSchemaOf, rowTag } from "../../src/core/deps/planner.ts";
import { memoryStore } from "../../src/stores/memory.ts";

declare const navigator: { userAgent: string } | undefined;

export default {
  async fetch(): Promise<Response> {
    const cache = createCache({ tiers: [memoryStore({ maxBytes: 1_000_000 })] });
    cache.setSchema(
      planSchemaOf({
        tables: new Map([["users", { name: "users", primaryKey: "id", columns: [] }]]),
        views: new Map(),
      }),
    );
    let loads = 0;
    const load = async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 5));
      return { id: "1-abc", firstName: "Lane" };
    };
    const tags = [rowTag("users", "1-abc")];
    const first = await Promise.all(
      Array.from({ length: 50 }, () => cache.getOrSet("user:1", load, { tags })),
    );
    const hit = await cache.getOrSet("user:1", load, { tags });
    const write = await cache.applyWrite({
      table: "users",
      op: "update",
      old: { id: "1-abc", firstName: "Lane" },
      new: { id: "1-abc", firstName: "Lana" },
    });
    const afterWrite = await cache.get("user:1");
    await cache.set("other", 1, { tags: ["t"] });
    const byTag = await cache.invalidate({ tags: ["t"] });
    return Response.json({
      loads,
      first: first[0],
      hit,
      invalidatedKeys: write.keys,
      afterWrite: afterWrite ?? null,
      byTag,
      stats: cache.stats(),
      runtime: typeof navigator === "object" ? navigator.userAgent : "unknown",
    });
  },
};
