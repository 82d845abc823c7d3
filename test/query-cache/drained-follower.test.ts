import { describe, expect, it } from "vitest";
import type { Cache } from "../../src/core/cache/index.ts";
import type { CaptureDrainCounts } from "../../src/core/change-log/contract.ts";
import type { ClientCapture } from "../../src/database/client-capture.ts";
import { QueryCapture } from "../../src/query-cache/query-capture.ts";

/**
 * A query cache whose change table the change log's object drains (D1, PostgreSQL in a
 * Worker): a write through the cache waits for a drain, and is told its rows are applied
 * only when that drain succeeded. Found in review: the object answered a failed drain (the
 * database out of reach) with its counters, so the write was told its rows were in, and the
 * reads it changed stayed cached.
 */
describe("a write whose drain failed", () => {
  it("is told nothing is settled (its tables are then invalidated), and the follower is asked again a second later", async () => {
    let reply: CaptureDrainCounts = { applied: 0 };
    let asked = 0;
    const log = {
      drainCapture: async () => {
        asked++;
        return reply;
      },
    };
    const client: ClientCapture = {
      installations: async () => [
        { id: "main", tables: new Map([["users", { primaryKey: "id", columns: ["id"] }]]) },
      ],
      foreignKeys: async () => [],
      drainedByLog: true,
    };
    const capture = new QueryCapture(client, { log } as unknown as Cache, {
      logger: { warn: () => {} },
    });
    await capture.ready;
    await capture.want(["users"]);
    expect(await capture.settled(["users"])).toBe(true);
    reply = { applied: 0, failed: true };
    expect(await capture.settled(["users"])).toBe(false);
    // Not offered again at once: the next write invalidates without asking.
    const before = asked;
    expect(await capture.settled(["users"])).toBe(false);
    expect(asked).toBe(before);
    await new Promise((r) => setTimeout(r, 1050));
    reply = { applied: 1 };
    expect(await capture.settled(["users"])).toBe(true);
    await capture.close();
  });
});
