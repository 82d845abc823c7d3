import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createCache } from "../../src/core/cache/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { errorOf } from "../helpers/errors.ts";

describe("key builder", () => {
  const cache = createCache({ tiers: [memoryStore()] });

  it("joins strings and numbers with ':', a number as the string of its digits", () => {
    expect(cache.key("content", "post", 123)).toBe("content:post:123");
    expect(cache.key("user")).toBe("user");
    expect(cache.key("rate", 0.5, -1, 2n ** 64n)).toBe("rate:0.5:-1:18446744073709551616");
    // An id read from a URL and the same id read from the database name one entry.
    expect(cache.key("post", "123")).toBe(cache.key("post", 123));
  });

  it("encodes ':' and '%' inside a part, so a URL or a 'a:b' id cannot pose as two parts", () => {
    expect(cache.key("page", "https://x.dev/a")).toBe("page:https%3A//x.dev/a");
    expect(cache.key("a:b", "c")).not.toBe(cache.key("a", "b:c"));
    expect(cache.key("a:b")).toBe("a%3Ab");
    // '%' is encoded too, or the part "a%3Ab" would build the same key as "a:b".
    expect(cache.key("a%3Ab")).toBe("a%253Ab");
    // '*' and '?' stay: a part "*" builds a pattern for invalidate({ patterns }).
    expect(cache.key("feed", "*", 7)).toBe("feed:*:7");
  });

  it("never builds one key from two different lists of parts (property)", () => {
    const part = fc.oneof(
      fc.string({ minLength: 1, unit: fc.constantFrom("a", ":", "%", "3", "A", "2", "5") }),
      fc.integer(),
    );
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 4 }), (parts) => {
        // The parts come back by splitting on ':' and decoding: the key names them alone.
        const decoded = cache
          .key(...parts)
          .split(":")
          .map((p) => p.replace(/%3A/g, ":").replace(/%25/g, "%"));
        expect(decoded).toEqual(parts.map(String));
      }),
      { numRuns: 500 },
    );
  });

  it("refuses what would name one entry for many values, with E_BAD_OPTION naming the part", () => {
    const refused: [unknown[], string][] = [
      [[], "parts: expected at least one part, got none"],
      [["user", ""], 'parts[1]: expected a non-empty string, a finite number or a bigint, got ""'],
      [
        ["user", undefined],
        "parts[1]: expected a non-empty string, a finite number or a bigint, got undefined",
      ],
      [["user", null], "got null"],
      [["user", Number.NaN], "got NaN"],
      [["n", Number.POSITIVE_INFINITY], "got Infinity"],
      [
        ["user", { id: 1 }],
        "parts[1]: expected a non-empty string, a finite number or a bigint, got an object",
      ],
      [["user", [1, 2]], "got an array"],
      [["flag", true], "got true"],
    ];
    for (const [parts, message] of refused) {
      const err = errorOf(() => cache.key(...(parts as string[])));
      expect(err.code).toBe("E_BAD_OPTION");
      expect(err.message).toContain("[edgecache] [key] ");
      expect(err.message).toContain(message);
    }
  });

  it("a namespace builds the same keys, and they resolve inside it: no other namespace or root key is read", async () => {
    const content = cache.namespace("content");
    const media = cache.namespace("media");
    const key = content.key("post", 1);
    expect(key).toBe("post:1");
    expect(media.key("post", 1)).toBe(key);
    await content.set(key, "in content");
    await cache.set(key, "root");
    expect(await content.get(content.key("post", 1))).toBe("in content");
    expect(await media.get(media.key("post", 1))).toBeUndefined();
    expect(await cache.get(key)).toBe("root");
  });

  it("after a namespace's clear, every key it built finds nothing old, and other namespaces keep theirs", async () => {
    const content = cache.namespace("content-clear");
    const user = cache.namespace("user-clear");
    const keys = [
      content.key("post", 1),
      content.key("page", "https://x.dev/a"),
      content.key("post", 2),
    ];
    for (const k of keys) await content.set(k, `old ${k}`);
    await user.set(user.key("profile", 1), "kept");
    await content.clear();
    for (const k of keys) expect(await content.get(k)).toBeUndefined();
    expect(await content.getMany(keys)).toEqual([undefined, undefined, undefined]);
    expect(await content.getOrSet(content.key("post", 1), () => "new")).toBe("new");
    expect(await user.get(user.key("profile", 1))).toBe("kept");
  });

  it("a key built with '*' invalidates by pattern within the namespace", async () => {
    const feed = cache.namespace("feed");
    await feed.set(feed.key("feed", "home", 7), 1);
    await feed.set(feed.key("feed", "top", 7), 2);
    await feed.set(feed.key("feed", "home", 8), 3);
    expect(await feed.invalidate({ patterns: [feed.key("feed", "*", 7)] })).toBe(2);
    expect(await feed.get(feed.key("feed", "home", 8))).toBe(3);
  });
});
