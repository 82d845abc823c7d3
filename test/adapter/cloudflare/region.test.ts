import { describe, expect, it } from "vitest";
import { regionOf } from "../../../src/adapter/cloudflare/worker.ts";
import type { DurableObjectNamespaceLike } from "../../../src/durable/rpc.ts";
import { DurableChangeLog } from "../../../src/log/durable-object.ts";

// Follower mode's region: which follower of the log an isolate syncs with.

const request = (cf?: Record<string, unknown>) => Object.assign(new Request("https://x/"), { cf });

describe("follower mode's region", () => {
  it("is the location hint nearest the request's continent, America and Europe split by longitude", () => {
    expect(regionOf(request({ continent: "NA", longitude: "-122.4" }))).toBe("wnam");
    expect(regionOf(request({ continent: "NA", longitude: "-74.0" }))).toBe("enam");
    expect(regionOf(request({ continent: "EU", longitude: "2.3" }))).toBe("weur");
    expect(regionOf(request({ continent: "EU", longitude: "37.6" }))).toBe("eeur");
    expect(regionOf(request({ continent: "AS", longitude: "139.7" }))).toBe("apac");
    expect(regionOf(request({ continent: "OC" }))).toBe("oc");
  });

  it("is unknown without a location (wrangler dev, a cron trigger): the Worker then uses its default", () => {
    expect(regionOf(undefined)).toBeUndefined();
    expect(regionOf(request())).toBeUndefined();
    expect(regionOf(request({ continent: "T1" }))).toBeUndefined();
  });

  it("is required in follower mode, as a name the follower's object can carry", () => {
    const namespace: DurableObjectNamespaceLike = {
      idFromName: (name) => name,
      get: () => ({ fetch: async () => Response.json({}) }),
    };
    expect(() => new DurableChangeLog({ namespace, mode: "follower" })).toThrow(/region/);
    expect(() => new DurableChangeLog({ namespace, mode: "follower", region: "a/b" })).toThrow(
      /region/,
    );
    expect(new DurableChangeLog({ namespace, mode: "follower", region: "weur" }).mode).toBe(
      "follower",
    );
  });
});

describe("a Durable Object change log", () => {
  it("serves one cache: a second follower is refused, not silently starved", () => {
    const namespace: DurableObjectNamespaceLike = {
      idFromName: (name) => name,
      get: () => ({ fetch: async () => Response.json({}) }),
    };
    const log = new DurableChangeLog({ namespace });
    const follower = { reset: () => {}, apply: async () => {} };
    log.follow(follower);
    log.follow(follower); // the same one again is harmless
    expect(() => log.follow({ reset: () => {}, apply: async () => {} })).toThrow(/one cache/);
  });
});
