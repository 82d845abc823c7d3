import { afterEach, expect, it } from "vitest";
import { TAGS_UNCOUNTED } from "../../../src/app/proxy/purge.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { counting, startOrigin, startProxy } from "../../app/proxy/harness.ts";
import { requireRedis } from "../../helpers/services.ts";

// Proxy nodes sharing Redis: a purge or an unsafe request through one reaches them all.

const redis = await requireRedis();
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

redis.describe("proxy nodes sharing Redis", () => {
  it("a tag purge through one node empties the other node's copy", async () => {
    const origin = await startOrigin(
      counting({ "cache-control": "max-age=600", "cache-tag": "shop" }),
    );
    cleanup.push(() => origin.close());
    const setting = { url: redis.url, prefix: `test:${randomId()}:`, leaseMs: 1000 };
    const a = await startProxy(origin.url, { redis: setting });
    cleanup.push(() => a.close());
    const b = await startProxy(origin.url, { redis: setting });
    cleanup.push(() => b.close());
    await Promise.all([a.node.cache.writable(), b.node.cache.writable()]);

    const read = async (url: string) => {
      const res = await fetch(`${url}/items/1`);
      return {
        status: res.headers.get("cache-status") ?? "",
        body: (await res.json()) as { n: number },
      };
    };
    await read(b.url);
    const cached = await read(b.url);
    expect(cached.status).toMatch(/hit/);

    const purge = await fetch(`${a.url}/_edgecache/purge`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ tags: ["shop"] }),
    });
    expect(purge.status).toBe(200);
    // A never read it: its count is 0, and the reply says what the count leaves out.
    expect(await purge.json()).toEqual({ purged: 0, uncounted: TAGS_UNCOUNTED });
    const after = await read(b.url);
    expect(after.status).not.toMatch(/hit/);
    expect(after.body.n).toBeGreaterThan(cached.body.n);
  });
});
