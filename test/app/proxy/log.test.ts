import { describe, expect, it } from "vitest";
import { createProxy } from "../../../src/app/proxy/index.ts";
import { Cache } from "../../../src/core/cache/index.ts";
import { memoryStore } from "../../../src/stores/memory.ts";

describe("proxy: origin failures in the log", () => {
  it("reports the first failure at once, then one line per 10 s with how many failed meanwhile", async () => {
    let t = 1_000_000;
    const now = () => t;
    const lines: string[] = [];
    const proxy = createProxy({
      cache: new Cache({ tiers: [memoryStore({ now })], now }),
      routes: [{ origin: "http://origin.test" }],
      fetch: () => Promise.reject(new Error("connect ECONNREFUSED")),
      now,
      logger: { warn: (m) => lines.push(m) },
    });
    const get = async (path: string) => (await proxy.app.request(`http://edge.test${path}`)).status;

    for (let i = 0; i < 50; i++) expect(await get(`/a/${i}`)).toBe(502);
    expect(lines).toEqual([
      "[edgecache] [proxy] origin request failed: Error: connect ECONNREFUSED",
    ]);

    t += 10_000;
    expect(await get("/b")).toBe(502);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/\(and 49 more since the last report\)$/);
  });
});
