import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import type { WriteEvent } from "../../../src/core/deps/planner.ts";
import { EdgecacheError } from "../../../src/core/errors.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { redisChangeLog } from "../../../src/log/redis/index.ts";
import { APPEND_CATCH_UP, logKeys } from "../../../src/log/redis/scripts.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { quiet, schema, until } from "../../helpers/cluster.ts";
import { hookReads } from "../../helpers/log-reader.ts";
import { requireRedis } from "../../helpers/services.ts";

/**
 * `append` calls `#catchUp` with no error handling. When this node has not
 * read the records before its own (another node appended meanwhile), catch-up fetches them
 * with XRANGE; a failed XRANGE (a timeout, a dropped connection) escapes `append` as a raw
 * ioredis error: the record is in the log, the source committed, no barrier was waited,
 * and the data API answers 500 "internal error" (not the 503 E_LOG_UNAVAILABLE that says
 * the write was made).
 */

const shared = await requireRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

const update = (id: number): WriteEvent => ({
  table: "users",
  op: "update",
  old: { id, name: "a" },
  new: { id, name: "b" },
});

shared.describe("catch-up after an append", () => {
  it("a failed catch-up read is a 503-class error that says the write was made", async () => {
    const prefix = `test:${randomId()}:`;
    const client = new Redis(shared.url);
    client.on("error", () => {});
    // A's reader lags (it is busy, or its connection is slow): wrap the duplicate it makes.
    let stalled = false;
    hookReads(client, {
      async before() {
        while (stalled) await new Promise((r) => setTimeout(r, 10));
      },
    });
    const logA = await redisChangeLog({ client, prefix, leaseMs: 1000, logger: quiet });
    const a = new Cache({ tiers: [memoryStore()], log: logA, schema, logger: quiet });
    const logB = await redisChangeLog({ url: shared.url, prefix, leaseMs: 1000, logger: quiet });
    const b = new Cache({ tiers: [memoryStore()], log: logB, schema, logger: quiet });
    open.push(logB, logA, { close: async () => client.disconnect() });
    await until(() => logA.trusted() && logB.trusted());

    stalled = true;
    await new Promise((r) => setTimeout(r, 400)); // the blocking read in flight returns
    // A has not read them yet, and they are more than its append's reply brings: it reads them.
    const stream = logKeys(prefix).keys[1]!;
    const before = await client.xlen(stream);
    const fromB = Promise.all(
      Array.from({ length: APPEND_CATCH_UP + 1 }, (_, i) => b.applyWrite(update(100 + i))),
    );
    // All of B's records in the stream (not a pause, which a busy machine outlasts).
    await until(async () => (await client.xlen(stream)) >= before + APPEND_CATCH_UP + 1);
    // One failed XRANGE on A's connection.
    const c = client as unknown as { xrange: (...a: unknown[]) => Promise<unknown> };
    const xrange = c.xrange.bind(client);
    let failed = false;
    c.xrange = (...a: unknown[]) => {
      if (failed) return xrange(...a);
      failed = true;
      return Promise.reject(new Error("Command timed out"));
    };
    const outcome = await a.applyWrite(update(2)).then(
      () => "acknowledged",
      (e: unknown) => e,
    );
    stalled = false;
    await fromB;
    expect(failed).toBe(true);
    // Either the write is acknowledged (catch-up retried) or the error says what happened.
    if (outcome !== "acknowledged") {
      expect(outcome).toBeInstanceOf(EdgecacheError);
      expect((outcome as EdgecacheError).code).toBe("E_LOG_UNAVAILABLE");
    }
  });
});
