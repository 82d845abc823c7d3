import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Reply, reply } from "../../app/harness.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// The browser layer of the data API as a Worker, inside workerd (docs/guides/data-api.md,
// "Browser and CDN caching"): `no-cache` by default, a conditional request for a cached
// response answered 304 without a D1 statement (from the isolate's memory, or another
// isolate's shared tiers), and a route's `browser.maxAge` sent and stated as on Node.

let w: EdgecacheWorkers;

beforeAll(async () => {
  w = await startEdgecacheWorkers({
    names: ["a", "b"],
    // No distance: the wrapped bindings only count each isolate's calls (D1's as `primary`).
    distance: { a: {}, b: {} },
    options: { routes: { orders: { browser: { maxAge: 60 } } } },
  });
  // Each isolate opens (seed check, schema) on its first request: before anything is counted.
  for (const name of ["a", "b"]) await w.fetch(name, "/_edgecache/stats");
}, 60_000);

afterAll(async () => {
  await w?.close();
});

const get = async (isolate: string, path: string, headers: Record<string, string> = {}) =>
  reply(await w.fetch(isolate, path, { headers }));

/** D1 statements (batches) the isolate sent while `fn` ran. */
async function d1Calls(isolate: string, fn: () => Promise<Reply>) {
  const calls = async () =>
    ((await (await w.fetch(isolate, "/_distance/calls")).json()) as { primary: number }).primary;
  const before = await calls();
  const value = await fn();
  return { value, statements: (await calls()) - before };
}

describe("the browser layer on Workers", () => {
  it("answers no-cache with an ETag, and If-None-Match on a hit with a 304 without a D1 statement, in either isolate", async () => {
    const path = "/v1/users?limit=3";
    const first = await get("a", path);
    expect(first.status).toBe(200);
    expect(first.headers.get("cache-control")).toBe("no-cache");
    const etag = first.headers.get("etag")!;
    expect(etag).toMatch(/^"[^"]+"$/);

    for (const isolate of ["a", "b"]) {
      const hit = await d1Calls(isolate, () => get(isolate, path, { "if-none-match": etag }));
      expect(hit.value.status, isolate).toBe(304);
      expect(hit.value.text).toBe("");
      expect(hit.value.headers.get("etag")).toBe(etag);
      expect(hit.value.headers.get("cache-control")).toBe("no-cache");
      expect(hit.value.headers.get("cache-status")).toMatch(/^edgecache; hit; ttl=\d+$/);
      expect(hit.statements, isolate).toBe(0);
    }
  });

  it("a browser route answers private, max-age=N with its bound in Cache-Status, Age 0, and a 304 without D1", async () => {
    const path = "/v1/orders?limit=4";
    const first = await get("a", path);
    expect(first.headers.get("cache-control")).toBe("private, max-age=60");
    expect(first.headers.get("cache-status")).toMatch(
      /^edgecache; fwd=miss; stored; ttl=\d+; detail="browser-bound=60"$/,
    );
    for (const isolate of ["a", "b"]) {
      const hit = await d1Calls(isolate, () => get(isolate, path));
      expect(hit.value.headers.get("cache-control")).toBe("private, max-age=60");
      expect(hit.value.headers.get("cache-status")).toMatch(
        /^edgecache; hit; ttl=\d+; detail="browser-bound=60"$/,
      );
      expect(hit.value.headers.get("age")).toBe("0");
      expect(hit.statements, isolate).toBe(0);
      const revalidated = await d1Calls(isolate, () =>
        get(isolate, path, { "if-none-match": first.headers.get("etag")! }),
      );
      expect(revalidated.value.status).toBe(304);
      expect(revalidated.value.headers.get("cache-control")).toBe("private, max-age=60");
      expect(revalidated.statements, isolate).toBe(0);
    }
    // Another resource keeps the default.
    expect((await get("a", "/v1/users/none")).headers.get("cache-control")).toBe("no-cache");
  });

  it("a bad route fails the isolate with a 500 naming it", async () => {
    // Checked when the Worker is built as well (test/app/browser-caching.test.ts); the
    // resource's name only once D1's schema is read.
    const bad = await startEdgecacheWorkers({
      names: ["c"],
      options: { routes: { order: { browser: { maxAge: 60 } } } },
    });
    try {
      const res = await reply(await bad.fetch("c", "/v1/orders"));
      expect(res.status).toBe(500);
      expect(res.json.error.code).toBe("E_BAD_OPTION");
      expect(res.json.error.message).toContain("routes.order");
    } finally {
      await bad.close();
    }
  }, 60_000);
});
