import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import { redisChangeLog } from "../../../src/log/redis/index.ts";
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

server.describe("Redis coming back with older state", () => {
  it("a write after Redis restarted from an older snapshot still reaches every node", async () => {
    const redis = await startRedis();
    const prefix = "test:";
    const node = async () => {
      const log = await redisChangeLog({ url: redis.url, prefix, leaseMs: 600, logger: quiet });
      const cache = new Cache({ tiers: [memoryStore()], log, schema, logger: quiet });
      open.push(log);
      return { log, cache };
    };
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
});
