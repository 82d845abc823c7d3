import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChangeRecord } from "../../src/core/change-log/contract.ts";
import type { Row } from "../../src/core/data/query.ts";
import { type Harness, send, startEdgecache } from "./harness.ts";

// Group commit through the data API (src/core/cache/write-group.ts): writes that arrive
// while one is in flight go together, under one turn and one record, in the order the
// database applied them; each is acknowledged, and shown, as a write alone is.

let h: Harness;
const records: ChangeRecord[] = [];

beforeAll(async () => {
  h = await startEdgecache();
  const log = h.edgecache.cache.log;
  log.follow({
    apply: async (record) => {
      records.push(record);
    },
    reset: () => {},
  });
  // A log 30 ms away: each append is a round trip, so writes arriving meanwhile queue.
  const append = log.append.bind(log);
  log.append = async (...args) => {
    await new Promise((r) => setTimeout(r, 30));
    return append(...args);
  };
});

afterAll(async () => {
  await h?.close();
});

const user = (i: number): Row => ({
  firstName: "Grouped",
  lastName: `Writer${i}`,
  email: `grouped.${i}@example.com`,
  createdAt: "2025-06-01T12:00:00Z",
});

describe("group commit on the data API", () => {
  it("concurrent writes share records, in the database's order, and every cached read shows them", async () => {
    const list = "/v1/users?firstName=Grouped&limit=100";
    expect((await send(h.edgecache, "GET", list)).json.data).toEqual([]);
    await send(h.edgecache, "GET", list); // cached
    const before = records.length;

    const created = await Promise.all(
      Array.from({ length: 16 }, (_, i) => send(h.edgecache, "POST", "/v1/users", user(i))),
    );
    expect(created.map((r) => r.status)).toEqual(Array(16).fill(201));

    const mine = records.slice(before);
    // Fewer records than writes: the writes that waited went together.
    expect(mine.length).toBeLessThan(16);
    expect(mine.some((r) => r.ops.length > 1)).toBe(true);
    // Every insert once, and in the order the database applied them (rowid order).
    const logged = mine.flatMap((r) =>
      r.ops.flatMap((op) => ("event" in op && op.event.op === "insert" ? [op.event.new!.id] : [])),
    );
    const inDatabase = h
      .fresh("SELECT id FROM users WHERE firstName = 'Grouped' ORDER BY rowid")
      .map((r) => r.id);
    expect(logged).toEqual(inDatabase);
    expect(new Set(created.map((r) => r.json.id))).toEqual(new Set(inDatabase));

    // Each write was acknowledged once applied: the cached list already shows all of them.
    const after = await send(h.edgecache, "GET", list);
    expect(after.json.data).toEqual(
      h.fresh("SELECT * FROM users WHERE firstName = 'Grouped' ORDER BY id LIMIT 100"),
    );
  });

  it("a write that fails in a group leaves the others acknowledged", async () => {
    const [ok, bad, ok2] = await Promise.all([
      send(h.edgecache, "POST", "/v1/users", user(100)),
      send(h.edgecache, "POST", "/v1/users", { firstName: "Grouped" }), // required values missing
      send(h.edgecache, "POST", "/v1/users", user(101)),
    ]);
    expect([ok!.status, bad!.status, ok2!.status]).toEqual([201, 400, 201]);
    const item = await send(h.edgecache, "GET", `/v1/users/${ok2!.json.id}`);
    expect(item.json).toEqual(ok2!.json);
  });
});

describe("the groupWrites option", () => {
  it("is refused unless a whole number of writes, 1 or more", async () => {
    const { createDataApi } = await import("../../src/app/data-api.ts");
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      await expect(
        createDataApi({
          // Refused before the source is asked anything.
          source: undefined as never,
          cache: h.edgecache.cache,
          groupWrites: bad,
        }),
      ).rejects.toThrow(/option "groupWrites": expected a whole number of writes, 1 or more/);
    }
  });
});
