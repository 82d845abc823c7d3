import { describe, expect, it } from "vitest";
import { randomId } from "../../src/core/random-id.ts";

describe("randomId", () => {
  it("gives 16 hex digits, none repeated over several draws from the random source", () => {
    // 2,000 ids take 16,000 bytes: the pool of random bytes is drawn four times.
    const ids = Array.from({ length: 2000 }, randomId);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
