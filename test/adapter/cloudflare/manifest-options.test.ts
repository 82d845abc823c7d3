import { describe, expect, it } from "vitest";
import { proxyManifestObject } from "../../../src/adapter/cloudflare/manifest-object.ts";
import { edgecacheProxyWorker } from "../../../src/adapter/cloudflare/proxy-worker.ts";

// The proxy Worker's manifest options are checked when its factories are called, so a
// mistake in the code stops the Worker's module from loading, before any request.

const origins = [{ origin: "https://api.example.com" }];

describe("a proxy Worker's manifest options", () => {
  for (const [name, make] of [
    ["edgecacheProxyWorker", edgecacheProxyWorker],
    ["proxyManifestObject", proxyManifestObject],
  ] as const) {
    it(`${name} names a bad line, a bad concurrency and bad retry delays`, () => {
      expect(() => make({ origins, manifest: ["/ok", "/a{1..3"] })).toThrow(
        '[edgecache] [manifest] manifest:2: "{" without "}" (write %7B for a brace)',
      );
      expect(() => make({ origins, manifest: ["/ok"], manifestConcurrency: 0 })).toThrow(
        /concurrency.*a positive integer/,
      );
      expect(() => make({ origins, manifestRetry: { minMs: 500, maxMs: 100 } })).toThrow(
        /retry.*0 < minMs <= maxMs/,
      );
      expect(() => make({ origins, manifest: ["/v1/items/{1..20}"] })).not.toThrow();
    });
  }
});
