import type { CacheEntry } from "../../src/core/entries/entry.ts";

/** An entry with every field set, binary body bytes and nested meta, for store tests. */
export function storedEntry(overrides: Partial<CacheEntry> = {}): CacheEntry {
  return {
    body: new Uint8Array([0, 1, 2, 254, 255]),
    headers: { "content-type": "application/octet-stream" },
    status: 200,
    createdAt: 1,
    freshUntil: 2,
    staleUntil: 3,
    etag: '"v1"',
    tags: ["t"],
    meta: { nested: { a: [1, 2] } },
    ...overrides,
  };
}
