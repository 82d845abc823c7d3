import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { redisChangeLog } from "../../../src/log/redis/index.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { quiet, schema, until, userUpdate } from "../../helpers/cluster.ts";

const URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function node(prefix: string, shared?: ReturnType<typeof memoryStore>, leaseMs = 1000) {
  const log = await redisChangeLog({ url: URL, prefix, leaseMs, logger: quiet });
  const tiers = shared ? [memoryStore(), shared] : [memoryStore()];
  const cache = new Cache({ tiers, log, schema, logger: quiet });
  open.push(log);
  await until(() => log.trusted());
  return { log, cache };
}

describe("the Redis change log", () => {
  it("a write applied on one node is gone from another node's memory before it resolves", async () => {
    const prefix = `test:${randomId()}:`;
    const a = await node(prefix);
    const b = await node(prefix);
    await b.cache.set("user:1", { name: "Lane" }, { tags: ["users#1"] });
    expect(b.cache.peek("user:1")).toBeDefined();
    await a.cache.applyWrite(userUpdate(1, "Lane", "Lana"));
    expect(b.cache.peek("user:1")).toBeUndefined();
    expect(a.cache.position.seq).toBe(b.cache.position.seq);
  });

  it("every node applies the records in one order with gap-free positions", async () => {
    const prefix = `test:${randomId()}:`;
    const nodes = [await node(prefix), await node(prefix), await node(prefix)];
    const seqs: number[] = [];
    const writes = [];
    for (let i = 0; i < 30; i++) {
      const writer = nodes[i % 3]!;
      writes.push(
        writer.log.append([{ event: userUpdate(i, "a", "b") }]).then((s) => seqs.push(s)),
      );
    }
    await Promise.all(writes);
    expect(seqs.sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    for (const n of nodes) expect(n.cache.position.seq).toBe(30);
  });

  it("an entry another node loaded before a write is refused from a shared tier", async () => {
    const prefix = `test:${randomId()}:`;
    const shared = memoryStore();
    const a = await node(prefix, shared);
    const b = await node(prefix, shared);
    await b.cache.setEntry("user:1", { body: "Lane", tags: ["users#1"] });
    await b.log.close();
    await a.cache.applyWrite(userUpdate(1, "Lane", "Lana"));
    const c = await node(prefix, shared);
    expect(await c.cache.getEntry("user:1")).toBeUndefined();
  });

  it("a node that closes leaves the membership, so writes stop waiting for it at once", async () => {
    const prefix = `test:${randomId()}:`;
    const a = await node(prefix);
    const b = await node(prefix);
    const redis = new Redis(URL);
    const members = () => redis.zrange(`{${prefix}log}:nodes`, "0", "-1");
    try {
      expect((await members()).sort()).toEqual([a.log.node, b.log.node].sort());
      await b.log.close();
      expect(await members()).toEqual([a.log.node]);
      await a.cache.applyWrite(userUpdate(1, "a", "b"));
    } finally {
      redis.disconnect();
    }
  });
});
