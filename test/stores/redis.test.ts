import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { encodeEntry } from "../../src/core/entries/entry.ts";
import { EdgecacheError } from "../../src/core/errors.ts";
import type { RedisStoreOptions } from "../../src/stores/redis.ts";
import { redisStore } from "../../src/stores/redis.ts";
import { storeConformance } from "../../src/testing/index.ts";
import { storedEntry as entry } from "../helpers/entries.ts";
import { startRedis } from "../helpers/redis-server.ts";
import { requireRedis, requireRedisServer, UNHURRIED_COMMAND_MS } from "../helpers/services.ts";

const shared = await requireRedis();
const server = await requireRedisServer();

const MINUTE = 60_000;
/** "Fails fast instead of hanging": generous, since a hang would be the test timeout. */
const FAST_MS = 5000;

/** A key prefix of the test's own on the shared Redis. */
function freshPrefix(): string {
  return `edgecache-test:${randomUUID()}:`;
}

/** Stores opened by a test, closed after it even when it fails. */
const open: Array<{ close(): Promise<void> }> = [];

async function openStore(options: RedisStoreOptions) {
  const store = await redisStore(options);
  open.push(store);
  return store;
}

afterEach(async () => {
  for (const store of open.splice(0)) await store.close();
});

/** How long `promise` took to settle, and its rejection (undefined if it resolved). */
async function timed(promise: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { ms: performance.now() - start, error };
}

shared.describe("redis store on the shared Redis", () => {
  let admin: Redis;
  const prefixes: string[] = [];

  beforeAll(() => {
    admin = new Redis(shared.url);
  });

  afterAll(async () => {
    for (const prefix of prefixes) await purge(admin, prefix);
    await admin.quit();
  });

  /** A prefix removed from Redis, with everything under it, after the file. */
  function prefixed(): string {
    const prefix = freshPrefix();
    prefixes.push(prefix);
    return prefix;
  }

  storeConformance(
    "redis",
    () => openStore({ url: shared.url, prefix: prefixed(), commandTimeout: UNHURRIED_COMMAND_MS }),
    { realTime: true },
  );

  describe("redis store specifics", () => {
    it("sets the ttl in Redis (rounded up to whole ms), and none for an infinite ttl", async () => {
      const prefix = prefixed();
      const store = await openStore({ url: shared.url, prefix });
      await store.set("minute", entry(), MINUTE);
      await store.set("fraction", entry(), 1500.2);
      await store.set("forever", entry(), Number.POSITIVE_INFINITY);

      const minute = await admin.pttl(`${prefix}minute`);
      expect(minute).toBeGreaterThan(MINUTE - 5000);
      expect(minute).toBeLessThanOrEqual(MINUTE);
      expect(await admin.pttl(`${prefix}fraction`)).toBeLessThanOrEqual(1501);
      expect(await admin.pttl(`${prefix}forever`)).toBe(-1);
    });

    it("overwriting with an infinite ttl removes the earlier expiry", async () => {
      const prefix = prefixed();
      const store = await openStore({ url: shared.url, prefix });
      await store.set("k", entry(), MINUTE);
      await store.set("k", entry(), Number.POSITIVE_INFINITY);
      expect(await admin.pttl(`${prefix}k`)).toBe(-1);
    });

    it("keeps two deployments on one Redis apart by prefix", async () => {
      const a = await openStore({ url: shared.url, prefix: prefixed() });
      const b = await openStore({ url: shared.url, prefix: prefixed() });
      await a.set("users?id=1", entry({ etag: '"a"' }), MINUTE);
      await b.set("users?id=1", entry({ etag: '"b"' }), MINUTE);
      await b.set("only-b", entry(), MINUTE);

      expect((await a.get("users?id=1"))?.etag).toBe('"a"');
      expect(await a.get("only-b")).toBeUndefined();
      expect(await list(a.keys(""))).toEqual(["users?id=1"]);
      expect(await a.delete(["users?id=1", "only-b"])).toBe(1);
      expect((await b.get("users?id=1"))?.etag).toBe('"b"');
      expect(await list(b.keys(""))).toEqual(["only-b", "users?id=1"]);
    });

    it("puts keys under edgecache: by default", async () => {
      const store = await openStore({ url: shared.url });
      const key = `default-prefix-test/${randomUUID()}`;
      try {
        await store.set(key, entry(), MINUTE);
        expect(await admin.exists(`edgecache:${key}`)).toBe(1);
        expect(store.name).toBe("redis");
      } finally {
        await admin.unlink(`edgecache:${key}`);
      }
    });

    it("stores bodies as raw bytes: any bytes round-trip, and the value is not inflated", async () => {
      const prefix = prefixed();
      const store = await openStore({ url: shared.url, prefix });
      const resp = new TextEncoder().encode("\r\n$-1\r\n*3\r\n+OK\r\n");
      const random = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 7919 + (i >> 8)) & 0xff);
      const body = new Uint8Array([...resp, 0xff, 0xfe, 0x00, ...random]);
      await store.set("bin", entry({ body }), MINUTE);

      const read = await store.get("bin");
      expect(read?.body.constructor).toBe(Uint8Array);
      expect(Buffer.from(read!.body).equals(Buffer.from(body))).toBe(true);
      expect(await admin.strlen(`${prefix}bin`)).toBeLessThan(body.byteLength + 1000);
    });

    it("a value that is not an entry is a fault (E_STORE_UNAVAILABLE), not a crash or a hit", async () => {
      const prefix = prefixed();
      const store = await openStore({ url: shared.url, prefix });
      const whole = encodeEntry(entry());
      await admin.set(`${prefix}garbage`, "not an entry");
      await admin.set(`${prefix}truncated`, Buffer.from(whole.subarray(0, 20)));
      await admin.rpush(`${prefix}list`, "x");

      for (const key of ["garbage", "truncated"]) {
        const error = await store.get(key).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(EdgecacheError);
        expect(error).toMatchObject({
          code: "E_STORE_UNAVAILABLE",
          message: expect.stringMatching(/^\[edgecache\] \[redis\] corrupt entry/),
        });
      }
      await expect(store.get("list")).rejects.toMatchObject({ code: "E_STORE_UNAVAILABLE" });
      // The store still works for other keys.
      await store.set("fine", entry(), MINUTE);
      expect(await store.get("fine")).toBeDefined();
    });

    it("meta that is not JSON-serialisable rejects the set with E_STORE_UNAVAILABLE", async () => {
      const store = await openStore({ url: shared.url, prefix: prefixed() });
      await expect(store.set("k", entry({ meta: { n: 1n } }), MINUTE)).rejects.toMatchObject({
        code: "E_STORE_UNAVAILABLE",
      });
      expect(await store.get("k")).toBeUndefined();
    });

    it("a client passed in is used as is: close() leaves it open and no listener is added", async () => {
      const client = new Redis(shared.url);
      try {
        const listeners = client.listenerCount("error");
        const store = await redisStore({ client, prefix: prefixed(), name: "shared-redis" });
        expect(store.name).toBe("shared-redis");
        await store.set("k", entry(), MINUTE);
        expect(await store.get("k")).toBeDefined();
        await store.close();
        expect(await client.ping()).toBe("PONG");
        expect(client.listenerCount("error")).toBe(listeners);
      } finally {
        await client.quit();
      }
    });

    it("a store the app closed rejects with E_STORE_UNAVAILABLE; closing twice is harmless", async () => {
      const store = await redisStore({ url: shared.url, prefix: prefixed() });
      await store.close();
      await store.close();
      const error = await store.get("k").catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "E_STORE_UNAVAILABLE" });
      expect((error as Error).cause).toBeInstanceOf(Error);
    });
  });
});

server.describe("redis store batches on a private redis-server", () => {
  // A server of the test's own: MONITOR on the shared one would see every other client.
  it("getMany is one MGET and setMany one pipeline of SETs, as MONITOR sees them", async () => {
    const redis = await startRedis();
    const admin = new Redis(redis.url);
    const monitor = await admin.monitor();
    const seen: string[][] = [];
    monitor.on("monitor", (_time: string, args: string[]) => {
      if (args[0] !== "info" && args[0] !== "client") seen.push(args);
    });
    try {
      const store = await openStore({ url: redis.url, prefix: "p:" });
      await store.setMany(["a", "b", "c"].map((k) => ({ key: k, entry: entry(), ttlMs: MINUTE })));
      expect((await store.getMany(["a", "x", "c"])).map((e) => e !== undefined)).toEqual([
        true,
        false,
        true,
      ]);
      // MONITOR reports commands after they ran: wait for the MGET to show.
      for (let i = 0; i < 100 && !seen.some(([c]) => c === "mget"); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const mine = seen.filter((args) => args.some((a) => a.startsWith("p:")));
      expect(mine.map(([command, key]) => `${command} ${key}`)).toEqual([
        "set p:a",
        "set p:b",
        "set p:c",
        "mget p:a",
      ]);
      expect(mine[3]).toEqual(["mget", "p:a", "p:x", "p:c"]);
    } finally {
      monitor.disconnect();
      admin.disconnect();
      await redis.stop();
    }
  });
});

server.describe("redis store against a private redis-server (faults)", () => {
  /** A store on a private server holding "k"; the server is then stopped (SIGSTOP). */
  async function stalledStore() {
    const redis = await startRedis();
    const store = await openStore({ url: redis.url, commandTimeout: 300 });
    await store.set("k", entry(), MINUTE);
    redis.pause();
    return { redis, store };
  }

  it("every operation on a stopped (SIGSTOP) Redis fails within about commandTimeout, then works on SIGCONT", async () => {
    const { redis, store } = await stalledStore();
    try {
      const ops: Array<[string, () => Promise<unknown>]> = [
        ["get", () => store.get("k")],
        ["set", () => store.set("k2", entry(), MINUTE)],
        ["delete", () => store.delete(["k", "k2"])],
        ["keys", () => list(store.keys(""))],
      ];
      for (const [op, run] of ops) {
        const { ms, error } = await timed(run());
        expect(error, op).toMatchObject({ code: "E_STORE_UNAVAILABLE" });
        expect(ms, op).toBeLessThan(FAST_MS);
      }
    } finally {
      redis.resume();
    }
    // (Commands that timed out were still sent: Redis runs them once it continues.)
    await store.set("after", entry(), MINUTE);
    expect(await store.get("after")).toBeDefined();
  });

  it("close() returns promptly while the server is stopped", async () => {
    const { redis, store } = await stalledStore();
    try {
      const { ms, error } = await timed(store.close());
      expect(error).toBeUndefined();
      expect(ms).toBeLessThan(FAST_MS);
    } finally {
      redis.resume();
    }
  });

  it("a client passed in without any timeout of its own still fails within commandTimeout", async () => {
    const redis = await startRedis();
    const client = new Redis(redis.url);
    try {
      const store = await openStore({ client, commandTimeout: 300 });
      await store.set("k", entry(), MINUTE);
      redis.pause();
      const { ms, error } = await timed(store.get("k"));
      expect(error).toMatchObject({ code: "E_STORE_UNAVAILABLE" });
      expect(ms).toBeLessThan(FAST_MS);
    } finally {
      redis.resume();
      client.disconnect();
    }
  });

  it("after the server restarts (empty), the same store works again without being recreated", async () => {
    const redis = await startRedis();
    const store = await openStore({ url: redis.url, commandTimeout: 300 });
    await store.set("before", entry(), MINUTE);

    await redis.restart();
    await eventually(() => store.get("before"));
    expect(await store.get("before")).toBeUndefined();
    await store.set("after", entry(), MINUTE);
    expect(await store.get("after")).toBeDefined();
  });

  it("a store created while Redis is down fails fast, and works once Redis is up", async () => {
    const redis = await startRedis();
    await redis.stop();
    const start = performance.now();
    const store = await openStore({ url: redis.url, commandTimeout: 300 });
    expect(performance.now() - start).toBeLessThan(FAST_MS);

    const { ms, error } = await timed(store.get("k"));
    expect(error).toMatchObject({ code: "E_STORE_UNAVAILABLE" });
    expect(ms).toBeLessThan(FAST_MS);

    await redis.restart();
    await eventually(() => store.set("k", entry(), MINUTE));
    expect(await store.get("k")).toBeDefined();
  });
});

describe("redis store options", () => {
  const bad: Array<[string, unknown]> = [
    ["url", "http://127.0.0.1:6379"],
    ["url", "not a url"],
    ["url", 6379],
    ["url", undefined],
    ["client", {}],
    ["client", "redis://127.0.0.1:6379"],
    ["prefix", 5],
    ["name", ""],
    ["commandTimeout", 0],
    ["commandTimeout", -1],
    ["commandTimeout", Number.NaN],
    ["commandTimeout", Number.POSITIVE_INFINITY],
    ["commandTimeout", "500"],
  ];

  it.each(bad)("rejects %s = %s at the factory call with E_BAD_OPTION", async (option, value) => {
    const options = { url: "redis://127.0.0.1:6379", [option]: value } as RedisStoreOptions;
    if (option === "client") delete options.url;
    await expect(redisStore(options)).rejects.toMatchObject({
      code: "E_BAD_OPTION",
      message: expect.stringMatching(
        new RegExp(`^\\[edgecache\\] \\[redis\\] option "${option}": expected .+, got `),
      ),
    });
  });

  it("rejects url and client together, and options that are not an object", async () => {
    const client = new Redis({ lazyConnect: true });
    await expect(redisStore({ url: "redis://127.0.0.1:6379", client })).rejects.toThrow(
      /either url or client/,
    );
    await expect(redisStore("redis://x" as unknown as RedisStoreOptions)).rejects.toThrow(
      'option "options": expected an object, got "redis://x"',
    );
    client.disconnect();
  });
});

describe("redis store without ioredis", () => {
  it("the factory rejects with E_BAD_OPTION saying what to install", async () => {
    // The store bundled into a directory with no node_modules above it, as in an app that
    // did not install the optional peer dependency.
    const dir = mkdtempSync(join(tmpdir(), "edgecache-no-ioredis-"));
    try {
      await build({
        entryPoints: [new URL("../../src/stores/redis.ts", import.meta.url).pathname],
        bundle: true,
        format: "esm",
        platform: "node",
        external: ["ioredis"],
        outfile: join(dir, "redis.mjs"),
      });
      writeFileSync(
        join(dir, "main.mjs"),
        `import { redisStore } from "./redis.mjs";
        redisStore({ url: "redis://127.0.0.1:6379" }).then(
          () => console.log("resolved"),
          (e) => console.log(JSON.stringify({ code: e.code, message: e.message })),
        );`,
      );
      const { stdout } = await promisify(execFile)(process.execPath, ["main.mjs"], { cwd: dir });
      expect(JSON.parse(stdout)).toEqual({
        code: "E_BAD_OPTION",
        message: "[edgecache] [redis] install ioredis to use the Redis store: npm install ioredis",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function list(keys: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const key of keys) out.push(key);
  return out.sort();
}

/** Retries `op` until it resolves (a reconnect is under way), for up to ten seconds. */
async function eventually<T>(op: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await op();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** Removes every key under `prefix` (one server). */
async function purge(client: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await client.unlink(...keys);
  } while (cursor !== "0");
}
