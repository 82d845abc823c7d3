import { rmSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { createNodeEdgecache } from "../../../src/adapter/node/modes/data-api.ts";
import { createNodeProxy } from "../../../src/adapter/node/modes/proxy.ts";
import type { Row } from "../../../src/core/data/query.ts";
import { HIT, send, tempDir } from "../../app/harness.ts";
import { counting, raw, startOrigin } from "../../app/proxy/harness.ts";

// A node restarted on its cache file judges the entries it stored before by what concerns
// each of them (the history it left beside the file), not by their tables: a write, a key
// removal and an unrelated purge before the restart cost only the entries they name.

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function dir(prefix: string): string {
  const cwd = tempDir(prefix);
  cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
  return cwd;
}

describe("the data API restarted on its cache file", () => {
  it("serves every row and list no write concerned, and those one did as it left them", async () => {
    const options = { cwd: dir("edgecache-restart-"), demo: { users: 200, orders: 200 }, port: 0 };
    const before = await createNodeEdgecache(options);
    const users = (await send(before, "GET", "/v1/users?limit=100&sort=id")).json.data as Row[];
    expect(users).toHaveLength(100);
    for (const u of users) await send(before, "GET", `/v1/users/${u.id}`);
    const [patched, other] = [users[0]!, users.find((u) => u.firstName !== users[0]!.firstName)!];
    const listOf = (name: unknown) => `/v1/users?firstName=${name}&limit=500`;
    await send(before, "GET", listOf(patched.firstName));
    await send(before, "GET", listOf(other.firstName));
    expect(
      (await send(before, "PATCH", `/v1/users/${patched.id}`, { firstName: "Restarted" })).status,
    ).toBe(200);
    // Unrelated invalidations: a purge of a prefix no key has, a tag no entry carries.
    await before.cache.invalidate({ prefix: "GET /nothing/" });
    await before.cache.invalidate({ tags: ["orders#-1"] });
    await before.close();

    const after = await createNodeEdgecache(options);
    cleanup.push(() => after.close());
    const status = async (path: string) =>
      (await send(after, "GET", path)).headers.get("cache-status") ?? "";
    let hits = 0;
    for (const u of users.slice(1)) if (HIT.test(await status(`/v1/users/${u.id}`))) hits++;
    expect(hits).toBe(99);
    expect(await status(listOf(other.firstName))).toMatch(HIT);
    // What the write concerned shows it: the write patched those entries in memory alone,
    // so the file holds them as they were, and the history brings them up to it (replayed).
    const row = await send(after, "GET", `/v1/users/${patched.id}`);
    expect(row.headers.get("cache-status")).toMatch(HIT);
    expect(row.json.firstName).toBe("Restarted");
    const list = await send(after, "GET", listOf(patched.firstName));
    expect(list.headers.get("cache-status")).toMatch(HIT);
    expect((list.json.data as Row[]).map((u) => u.id)).not.toContain(patched.id);
    expect(after.cache.stats().replayed).toBe(2);
  });
});

describe("the proxy restarted on its cache file", () => {
  it("serves every URL that no purge named, after a purge of another prefix and of one URL", async () => {
    const o = await startOrigin(counting({ "cache-control": "max-age=3600" }));
    cleanup.push(() => o.close());
    const options = {
      origins: [{ origin: o.url }],
      cacheFile: "proxy.db",
      port: 0,
      cwd: dir("edgecache-proxy-"),
      allowedHosts: ["cache.example"],
    };
    const host = { host: "cache.example" };
    const paths = Array.from({ length: 100 }, (_, i) => `/items/${i}`);
    const before = await createNodeProxy(options);
    const { url } = await before.listen();
    for (const path of paths) await raw(`${url}${path}`, { headers: host });
    expect(await before.proxy.purge({ prefix: "/nothing/" })).toBe(0);
    expect(await before.proxy.purge({ urls: [`http://cache.example${paths[7]}`] })).toBe(1);
    await before.close();

    const after = await createNodeProxy(options);
    cleanup.push(() => after.close());
    const again = (await after.listen()).url;
    const served: string[] = [];
    for (const path of paths) {
      const r = await raw(`${again}${path}`, { headers: host });
      if (/^edgecache; hit/.test(String(r.headers["cache-status"]))) served.push(path);
    }
    expect(served).toEqual(paths.filter((p) => p !== paths[7]));
    expect(o.count()).toBe(101);
  });
});
