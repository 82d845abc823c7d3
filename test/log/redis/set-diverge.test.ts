import { afterEach, expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { redisChangeLog } from "../../../src/log/redis/index.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { quiet, until } from "../../helpers/cluster.ts";
import { requireRedis } from "../../helpers/services.ts";

/**
 * `Cache.set` appends {keys:[key]} and only then stores the value (in every
 * tier, with no fence check). Two overlapping sets of one key on two nodes:
 *
 *   A: append (seq 1) ............................. setEntry("a") -> A's memory, shared tier
 *   C:            append (seq 2), setEntry("c") -> C's memory, shared tier
 *
 * C's record reached A before A stored anything, so nothing removes C's copy or A's: after
 * both sets resolved, A (and every node reading the shared tier) answers "a" and C answers
 * "c", for the whole TTL. No single order of the two sets explains that.
 */

const shared = await requireRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

shared.describe("set on two nodes", () => {
  it("two overlapping sets of one key leave every node with one value", async () => {
    const prefix = `test:${randomId()}:`;
    const tier = memoryStore(); // the shared tier (Redis in a deployment)
    const node = async () => {
      const log = await redisChangeLog({ url: shared.url, prefix, leaseMs: 600, logger: quiet });
      const cache = new Cache({ tiers: [memoryStore(), tier], log, logger: quiet });
      open.push(log);
      return { log, cache };
    };
    const a = await node();
    const b = await node();
    const c = await node();
    await until(() => a.log.trusted() && b.log.trusted() && c.log.trusted());

    // A's append resolves, then A is slow to store (a GC pause, a slow tier).
    const realAppend = a.log.append.bind(a.log);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let appended!: () => void;
    const aAppended = new Promise<void>((r) => {
      appended = r;
    });
    (a.log as { append: typeof a.log.append }).append = async (ops) => {
      const seq = await realAppend(ops);
      appended();
      await gate;
      return seq;
    };

    const setA = a.cache.set("k", "a");
    await aAppended;
    await c.cache.set("k", "c");
    release();
    await setA;

    const values = [await a.cache.get("k"), await b.cache.get("k"), await c.cache.get("k")];
    // (found: A "a", B "a" from the shared tier, C "c")
    expect(values).toEqual([values[0], values[0], values[0]]);
  });
});
