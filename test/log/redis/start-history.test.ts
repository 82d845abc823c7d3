import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import type { ChangeOp } from "../../../src/core/change-log/contract.ts";
import { entryValue } from "../../../src/core/library/codec.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { redisChangeLog } from "../../../src/log/redis/index.ts";
import { logKeys } from "../../../src/log/redis/scripts.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { redisStore } from "../../../src/stores/redis.ts";
import { quiet, schema, until, userUpdate } from "../../helpers/cluster.ts";
import { requireRedis } from "../../helpers/services.ts";

/**
 * A node that joins a busy cluster judges the Redis tier's entries by what concerns each of
 * them, as a node running all along would: the log keeps a node's summary of its history
 * beside the stream, and a node that starts reads it with the records after it. Where the
 * stream no longer holds those records, it judges by table.
 *
 * The row writes come from a node whose cache never cleaned the shared tier (a writer
 * whose deletes were lost): the written row's old copy stays in Redis, so only the joining
 * node's judgement stands between it and a stale read.
 */

const redis = await requireRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const ROWS = 100;

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

function connect(): Redis {
  const client = new Redis(redis.url);
  client.on("error", () => {});
  open.push({ close: async () => client.disconnect() });
  return client;
}

/** A cache over [memory, Redis] on the Redis log, holding its lease. */
async function node(prefix: string, options: { fenceLogSize?: number; retain?: number } = {}) {
  const client = connect();
  const { fenceLogSize, retain } = options;
  const log = await redisChangeLog({
    client,
    prefix,
    leaseMs: 1000,
    logger: quiet,
    ...(retain !== undefined && { retain }),
  });
  const tiers = [memoryStore(), await redisStore({ client, prefix })];
  const cache = new Cache({
    tiers,
    log,
    schema,
    logger: quiet,
    ...(fenceLogSize !== undefined && { fenceLogSize }),
  });
  open.push({ close: () => cache.close() });
  await until(() => log.trusted());
  return { log, cache };
}

/** A node that writes on the log and keeps no cache: nothing it writes is cleaned from Redis. */
async function writer(prefix: string, retain?: number) {
  const log = await redisChangeLog({
    client: connect(),
    prefix,
    leaseMs: 1000,
    logger: quiet,
    retain,
  });
  log.follow({ apply: async () => {}, reset() {} });
  open.push({ close: () => log.close() });
  await until(() => log.trusted());
  return (ops: ChangeOp[]) => log.append(ops);
}

/** The rows as the database holds them; `read` counts the loads. */
function database() {
  const rows = new Map<number, string>();
  for (let i = 1; i <= ROWS; i++) rows.set(i, `name ${i}`);
  const loaded: number[] = [];
  return {
    rows,
    loaded,
    /** Reads every row through `cache`; what it read. */
    async readAll(cache: Cache): Promise<string[]> {
      const out: string[] = [];
      for (let i = 1; i <= ROWS; i++) {
        out.push(
          await cache.getOrSet(
            `user:${i}`,
            () => {
              loaded.push(i);
              return rows.get(i)!;
            },
            { tags: [`users#${i}`] },
          ),
        );
      }
      return out;
    },
  };
}

/** A node joins and reads every row: each as the database holds it; the rows it loaded. */
async function joins(
  prefix: string,
  db: ReturnType<typeof database>,
  options?: Parameters<typeof node>[1],
): Promise<number[]> {
  db.loaded.length = 0;
  const b = await node(prefix, options);
  expect(await db.readAll(b.cache)).toEqual([...db.rows.values()]);
  return [...db.loaded];
}

/** The value of `key` the Redis tier holds (the second tier), as `cache` inspects it. */
async function inRedis(cache: Cache, key: string): Promise<unknown> {
  const entry = (await cache.inspect(key))[1]?.entry;
  return entry && entryValue(entry);
}

/** The seq of the summary kept in Redis , once there is one at `atLeast` or later. */
async function kept(prefix: string, atLeast = 0): Promise<number> {
  const key = logKeys(prefix).keys[7]!;
  const admin = connect();
  let from = -1;
  await until(async () => {
    const [id, seq] = await admin.hmget(key, "log", "from");
    from = Number(seq ?? -1);
    return id !== null && id !== undefined && from >= atLeast;
  });
  return from;
}

redis.describe("a node joining a busy cluster", () => {
  it("serves the Redis tier's untouched entries at once, and loads the row written since", async () => {
    const prefix = `test:${randomId()}:`;
    const db = database();
    const a = await node(prefix);
    await db.readAll(a.cache);
    expect(db.loaded).toHaveLength(ROWS);
    const write = await writer(prefix);
    db.rows.set(1, "renamed");
    await write([{ event: userUpdate(1, "name 1", "renamed") }]);
    await write([{ prefix: "orders:" }]);
    await kept(prefix);
    // The old copy is still there: only B's judgement keeps it from being served.
    expect(await inRedis(a.cache, "user:1")).toBe("name 1");

    // Today's start judged every entry by table: users changed, and a purge may name any key.
    expect(await joins(prefix, db)).toEqual([1]);
  });

  it("with more records than a fence keeps: the summary kept in Redis judges those before it", async () => {
    const prefix = `test:${randomId()}:`;
    const db = database();
    // retain 100: a summary is kept every 25 records.
    const options = { fenceLogSize: 4, retain: 100 };
    const a = await node(prefix, options);
    await db.readAll(a.cache);
    const write = await writer(prefix, 100);
    db.rows.set(1, "renamed");
    await write([{ event: userUpdate(1, "name 1", "renamed") }]);
    for (let i = 0; i < 60; i++) {
      await write(
        i % 6 === 0
          ? [{ event: userUpdate(1000 + i, "x", "y") }]
          : [{ prefix: `orders:${i}:` }, { tags: [`orders#${i}`] }],
      );
    }
    // A summary past the row's write: B judges that write by the summary alone.
    expect(await kept(prefix, 50)).toBeGreaterThanOrEqual(50);

    expect(await joins(prefix, db, options)).toEqual([1]);
  });

  it("a summary older than the stream retains: the joining node judges by table, never stale", async () => {
    const prefix = `test:${randomId()}:`;
    const db = database();
    const a = await node(prefix, { retain: 100 });
    await db.readAll(a.cache);
    const saved = await kept(prefix);
    await a.cache.close();
    // No node that keeps a summary is left: the one kept falls behind what the stream holds.
    const write = await writer(prefix, 100);
    db.rows.set(1, "renamed");
    await write([{ event: userUpdate(1, "name 1", "renamed") }]);
    for (let i = 0; i < 300; i++) await write([{ prefix: `orders:${i}:` }]);
    const admin = connect();
    const [oldest] = await admin.xrange(logKeys(prefix).keys[1]!, "-", "+", "COUNT", 1);
    expect(Number(oldest![0].split("-")[0])).toBeGreaterThan(saved + 1);
    expect(await inRedis(a.cache, "user:1")).toBe("name 1");

    expect(await joins(prefix, db, { retain: 100 })).toHaveLength(ROWS);
  });
});
