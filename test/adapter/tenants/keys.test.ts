import { describe, expect, it } from "vitest";
import { keyHash } from "../../../src/adapter/node/tenants/state-contract.ts";
import { keyHashOf, newKey } from "../../../src/adapter/tenants/model.ts";

// Keys look and hash the same on Node (node:crypto) and on Workers (Web Crypto): a tenant's
// key hash is one value wherever it is stored.
describe("tenant keys", () => {
  it("are ek_ and 32 random bytes, base64url, different each time", () => {
    const keys = new Set(Array.from({ length: 100 }, newKey));
    expect(keys.size).toBe(100);
    for (const key of keys) expect(key).toMatch(/^ek_[A-Za-z0-9_-]{43}$/);
  });

  it("hash to the same SHA-256 base64url with Web Crypto as with node:crypto", async () => {
    for (const key of [newKey(), newKey(), "ek_", "ek_ü+/="]) {
      expect(await keyHashOf(key)).toBe(keyHash(key));
    }
    expect(await keyHashOf("abc")).toBe("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
  });
});
