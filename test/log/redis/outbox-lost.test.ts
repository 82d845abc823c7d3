import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { redisChangeLog } from "../../../src/log/redis/index.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { quiet, schema, until, userUpdate } from "../../helpers/cluster.ts";
import { requireRedis } from "../../helpers/services.ts";

/**
 * A record is lost when an append finds the outbox non-empty and the log is
 * still out of reach at its deadline. `append` awaits `#flush(deadline)` first; when that
 * throws, the new record is neither appended nor queued in the outbox, although the source
 * has committed it (the proxy invalidates after the origin answered, a library caller after
 * its own commit). Once Redis answers again, the outbox sends the first record only: the
 * second write's invalidation never reaches any node, the writer included, and every node
 * serves the old entry until its TTL.
 *
 * The partition is of node A only (its script calls fail, like a dropped route to Redis);
 * node B keeps its lease throughout.
 */

const shared = await requireRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

shared.describe("the outbox", () => {
  it("a write appended while the outbox is waiting is queued, not dropped", async () => {
    const prefix = `test:${randomId()}:`;
    // Node A: its own client, whose script calls we can cut (a partition of A alone).
    const client = new Redis(shared.url);
    client.on("error", () => {});
    const logA = await redisChangeLog({
      client,
      prefix,
      leaseMs: 600,
      appendTimeoutMs: 300,
      logger: quiet,
    });
    let partitioned = false;
    const c = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    for (const name of ["ecAppend", "ecRenew", "ecBarrier", "ecStart", "xrange"]) {
      const real = c[name]!.bind(client);
      c[name] = (...args: unknown[]) =>
        partitioned ? Promise.reject(new Error("ECONNRESET (partition)")) : real(...args);
    }
    const a = new Cache({ tiers: [memoryStore()], log: logA, schema, logger: quiet });
    const logB = await redisChangeLog({ url: shared.url, prefix, leaseMs: 600, logger: quiet });
    const b = new Cache({ tiers: [memoryStore()], log: logB, schema, logger: quiet });
    open.push(logB, logA, { close: async () => client.disconnect() });
    await until(() => logA.trusted() && logB.trusted());

    // Both nodes cache users 1 and 2.
    for (const cache of [a, b]) {
      await cache.resolve("user:1", async () => ({ body: "one-old", tags: ["users#1"] }));
      await cache.resolve("user:2", async () => ({ body: "two-old", tags: ["users#2"] }));
    }

    partitioned = true;
    // Write 1 is committed; its record cannot be appended: queued in the outbox (a 503 that
    // says so).
    await expect(a.applyWrite(userUpdate(1, "old", "new"))).rejects.toThrow(/write was made/);
    // Write 2 is committed too (a proxied POST, a library write); the log is still away.
    const second = await a.applyWrite(userUpdate(2, "old", "new")).catch((e: Error) => e);
    expect(second).toBeInstanceOf(Error);

    partitioned = false;
    await until(() => logA.trusted()); // the outbox is empty again: A serves from cache
    // B has heard everything A's log holds.
    await a.applyWrite(userUpdate(3, "x", "y"));

    // Write 1 reached both nodes.
    expect(a.peek("user:1")).toBeUndefined();
    expect(b.peek("user:1")).toBeUndefined();
    // Write 2 was committed: no node may serve user 2's old row.
    const staleB = b.peek("user:2");
    const staleA = a.peek("user:2");
    expect(staleB && new TextDecoder().decode(staleB.body)).toBeUndefined();
    expect(staleA && new TextDecoder().decode(staleA.body)).toBeUndefined();
  });
});
