import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { redisChangeLog } from "../../../src/log/redis/index.ts";
import { APPEND_CATCH_UP } from "../../../src/log/redis/scripts.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { quiet, schema, until, userUpdate } from "../../helpers/cluster.ts";
import { hookReads } from "../../helpers/log-reader.ts";
import { requireRedis } from "../../helpers/services.ts";

const shared = await requireRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const LEASE_MS = 2000;
const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  dropW = false;
  for (const o of open.splice(0).reverse()) await o.close();
});

// W's reader lags (its stream reads bring nothing) while `dropW`.
let dropW = false;
async function node(prefix: string, name: string) {
  const client = new Redis(shared.url, { connectionName: name });
  client.on("error", () => {});
  if (name === "W2") hookReads(client, { reply: (reply) => (dropW ? null : reply) });
  const log = await redisChangeLog({
    client,
    prefix,
    leaseMs: LEASE_MS,
    logger: quiet,
    node: name,
  });
  const cache = new Cache({ tiers: [memoryStore()], log, schema, logger: quiet });
  let failXrange = false;
  let xranges = 0;
  const c = client as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const real = c.xrange!.bind(client);
  c.xrange = (...a: unknown[]) => {
    xranges++;
    return failXrange ? Promise.reject(new Error("timeout")) : real(...a);
  };
  open.push({
    async close() {
      await log.close();
      client.disconnect();
    },
  });
  await until(() => log.trusted());
  return {
    log,
    cache,
    failXrange: (on: boolean) => {
      failXrange = on;
    },
    get xranges() {
      return xranges;
    },
  };
}

/** A and W on one log, both members; W holds user `id` cached. */
async function twoNodes(id: number) {
  const prefix = `test:${randomId()}:`;
  const a = await node(prefix, "A2");
  const w = await node(prefix, "W2");
  await until(() => a.log.nodes() === 2 && w.log.nodes() === 2, 10000);
  await a.cache.invalidate({ keys: ["settle"] });
  await w.cache.setEntry(`user:${id}`, { body: "Lane", tags: [`users#${id}`] });
  return { a, w };
}

shared.describe("writer's own catch-up fails", () => {
  it("the writer's node does not serve what its own acknowledged write changed", async () => {
    const { a, w } = await twoNodes(2);

    // W has not read the next records yet, and they are more than its append's reply brings
    // (APPEND_CATCH_UP): it reads them itself.
    dropW = true;
    const missed = APPEND_CATCH_UP + 1;
    const other = Promise.all(
      Array.from({ length: missed }, (_, i) =>
        a.cache.write(async (record) => {
          await record([userUpdate(100 + i, "Lane", "Lana")]);
        }),
      ),
    );
    await until(() => a.cache.position.seq === w.cache.position.seq + missed);
    w.failXrange(true); // fetching the records before its own fails once (a timeout)
    await w.cache.write(async (record) => {
      await record([userUpdate(2, "Lane", "Lana")]);
    });
    w.failXrange(false);
    const served = w.log.trusted() ? w.cache.peek("user:2") : undefined;
    dropW = false;
    await other;
    expect(served).toBeUndefined();
    expect(w.xranges).toBeGreaterThan(0);
  }, 30000);

  it("a writer whose reader has not brought the records before its own gets them with its append's reply, and applies them with it", async () => {
    const { a, w } = await twoNodes(1);

    dropW = true; // W's reader brings nothing
    const other = a.cache.write(async (record) => {
      await record([userUpdate(1, "Lane", "Lana")]);
    });
    await until(() => a.cache.position.seq === w.cache.position.seq + 1);
    const others = a.cache.position.seq;
    await w.cache.write(async (record) => {
      await record([userUpdate(2, "Lane", "Lana")]);
    });
    // W applied A's record and its own, in order, reading neither.
    expect(w.cache.position.seq).toBe(others + 1);
    expect(w.cache.peek("user:1")).toBeUndefined();
    expect(w.xranges).toBe(0);
    dropW = false;
    await other;
  }, 30000);
});
