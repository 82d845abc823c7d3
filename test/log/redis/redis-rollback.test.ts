import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import { redisChangeLog } from "../../../src/log/redis/index.ts";
import { logKeys } from "../../../src/log/redis/scripts.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { quiet, schema, until, userUpdate } from "../../helpers/cluster.ts";
import { startRedis } from "../../helpers/redis-server.ts";
import { requireRedisServer } from "../../helpers/services.ts";

/**
 * The log's id only changes when Redis lost the meta hash altogether. A Redis
 * that comes back with *older* state (restarted from its last RDB snapshot: the default
 * config saves one; a replica promoted by a failover, since replication is asynchronous)
 * keeps the id but its counter goes back. New records then reuse seqs the nodes have
 * already applied: `xread` from `${applied}-0` skips them, `#catchUp` sees applied >= seq,
 * the RENEW script grants the lease (applied >= head), and BARRIER acknowledges (every
 * member's applied >= seq). No node, the writer included, applies the write.
 */

const server = await requireRedisServer();
const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

const PREFIX = "test:";

/** A node: a cache following the Redis log at `url`. */
async function startNode(url: string, leaseMs: number) {
  const log = await redisChangeLog({ url, prefix: PREFIX, leaseMs, logger: quiet });
  const cache = new Cache({ tiers: [memoryStore()], log, schema, logger: quiet });
  open.push(log);
  return { log, cache };
}

server.describe("Redis coming back with older state", () => {
  it("a write after Redis restarted from an older snapshot still reaches every node", async () => {
    const redis = await startRedis();
    const node = () => startNode(redis.url, 600);
    const a = await node();
    const b = await node();
    await until(() => a.log.trusted() && b.log.trusted());

    await a.cache.applyWrite(userUpdate(100, "a", "b")); // seq 1
    const admin = new Redis(redis.url);
    await admin.save(); // the last snapshot Redis took
    admin.disconnect();
    await a.cache.applyWrite(userUpdate(101, "a", "b")); // seq 2
    await a.cache.applyWrite(userUpdate(102, "a", "b")); // seq 3
    expect(b.cache.position.seq).toBe(3);

    // Redis crashes and comes back from its snapshot: the log's id is kept, its head is 1.
    await redis.restart();
    await new Promise((r) => setTimeout(r, 300));
    await until(() => a.log.trusted() && b.log.trusted());

    // Both nodes cache user 1.
    for (const n of [a, b]) {
      await n.cache.resolve("user:1", async () => ({ body: "old", tags: ["users#1"] }));
    }
    // A write of user 1 is acknowledged...
    await a.cache.applyWrite(userUpdate(1, "old", "new"));
    // ...so no node may still serve the old row.
    const onB = b.cache.peek("user:1");
    const onA = a.cache.peek("user:1");
    expect(onB && new TextDecoder().decode(onB.body)).toBeUndefined();
    expect(onA && new TextDecoder().decode(onA.body)).toBeUndefined();
  });

  it("a log that went back exactly one record, then took another node's record under that seq", async () => {
    // A lagging replica taking over loses the last record, and a node that never applied
    // it (here: one started after) writes next. The nodes that applied the lost record are
    // at the new head: their position alone cannot tell. Each record names the one before.
    const redis = await startRedis();
    // A long lease: the nodes renew seldom, so the other node's write comes first.
    const node = () => startNode(redis.url, 4000);
    const a = await node();
    const b = await node();
    await until(() => a.log.trusted() && b.log.trusted());
    await a.cache.applyWrite(userUpdate(100, "a", "b")); // seq 1

    // What a replica holds: every key of the log as of now.
    const admin = new Redis(redis.url);
    open.push({ close: async () => admin.disconnect() });
    const { keys } = logKeys(PREFIX);
    const replica = await Promise.all(keys.map((k) => admin.dumpBuffer(k)));

    await a.cache.applyWrite(userUpdate(101, "a", "b")); // seq 2, lost with the primary
    for (const n of [a, b]) {
      await n.cache.resolve("user:1", async () => ({ body: "old", tags: ["users#1"] }));
    }
    // The replica takes over.
    const failover = admin.multi();
    keys.forEach((k, i) => {
      failover.del(k);
      const dump = replica[i];
      if (dump) failover.restore(k, 0, dump);
    });
    await failover.exec();

    // A node started now writes user 1: its record takes seq 2 again.
    const c = await node();
    await until(() => c.log.trusted());
    await c.cache.applyWrite(userUpdate(1, "old", "new"));
    for (const n of [a, b]) {
      const held = n.cache.peek("user:1");
      expect(held && new TextDecoder().decode(held.body)).toBeUndefined();
    }
  });
});
