import { describe, expect, it } from "vitest";
import { validateConfig } from "../../src/adapter/node/config.ts";
import { addressSet, hostSet, originSet } from "../../src/app/access.ts";
import { checkBody, fields } from "../../src/app/body.ts";
import { Cache } from "../../src/core/cache/index.ts";
import { localChangeLog } from "../../src/core/change-log/in-process.ts";
import { memoryStore } from "../../src/stores/memory.ts";

// Every "expected X, got Y" says what was sent as one describer does (describeValue), and
// for a list which element was wrong: never a JSON string of a JSON string, never "an array".

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("did not throw");
}

describe("list options (allowedHosts, trustedProxies, allowedOrigins)", () => {
  const lists = [
    ["allowedHosts", hostSet],
    ["trustedProxies", addressSet],
    ["allowedOrigins", originSet],
  ] as const;
  for (const [name, check] of lists) {
    it(`${name}: an element that is no string is named with its index`, () => {
      const m = message(() => check("config", name, [{}]));
      expect(m).toMatch(new RegExp(`got an object at ${name}\\[0\\]$`));
      expect(m).not.toContain("[{}]");
    });
    it(`${name}: a string where a list goes is shown once quoted`, () => {
      expect(message(() => check("config", name, "a,b"))).toMatch(/got "a,b"$/);
    });
    it(`${name}: a wrong string in the list is shown and placed`, () => {
      expect(message(() => check("config", name, ["", "x"]))).toMatch(
        new RegExp(`got "" at ${name}\\[0\\]$`),
      );
    });
  }
  it("a config file's allowedHosts the same", () => {
    expect(message(() => validateConfig({ allowedHosts: [{}] }))).toMatch(
      /got an object at allowedHosts\[0\]$/,
    );
  });
});

describe("lists of strings in admin bodies and the library", () => {
  it("an admin body's tags: [1] names the element", () => {
    const m = message(() => checkBody({ tags: fields.strings }, { tags: ["a", 1] }, "admin", "{}"));
    expect(m).toMatch(/tags: expected an array of strings, got 1 at tags\[1\]$/);
  });
  it("cache.set's tags: [1] names the element", async () => {
    const cache = new Cache({ tiers: [memoryStore()], log: localChangeLog() });
    await expect(cache.set("k", 1, { tags: [1 as unknown as string] })).rejects.toThrow(
      /got 1 at tags\[0\]$/,
    );
    await expect(cache.getMany([1 as unknown as string])).rejects.toThrow(/got 1 at keys\[0\]$/);
  });
});
