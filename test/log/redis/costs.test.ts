import { createHash } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import { COST_KINDS, Cost, type CostKind } from "../../../src/core/cost.ts";
import { randomId } from "../../../src/core/random-id.ts";
import type { CacheStats } from "../../../src/core/stats.ts";
import { type RedisChangeLog, redisChangeLog } from "../../../src/log/redis/index.ts";
import { bellKey, logKeys } from "../../../src/log/redis/scripts.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { redisStore } from "../../../src/stores/redis.ts";
import { quiet, schema, until, userUpdate } from "../../helpers/cluster.ts";
import { type PrivateRedis, startRedis } from "../../helpers/redis-server.ts";
import { requireRedis } from "../../helpers/services.ts";

/**
 * What a node counts it sent to Redis (`stats().redis`), by kind of work, is what Redis saw
 * from it: every command each node's connections sent while the test ran, as MONITOR shows
 * them on a private server, sorted into the log's following (reads, renewals) and the rest
 * by script and command. On those counts: a hit from memory sends nothing, a hit from the
 * shared tier one GET, and a write the same commands however many nodes follow the log.
 */

const shared = await requireRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
// Long, so that the log's own reads and renewals (every lease / 4) are few while a test
// measures: they are counted all the same.
const LEASE_MS = 8000;

let server: PrivateRedis;
const open: { close(): Promise<void> }[] = [];
beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server?.stop();
});
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

interface Node {
  name: string;
  client: Redis;
  cache: Cache;
}

/** `n` nodes on one log and one shared tier, each with a memory tier above it. */
async function cluster(n: number): Promise<Node[]> {
  const prefix = `test:${randomId()}:`;
  const nodes: Node[] = [];
  for (let i = 0; i < n; i++) {
    const name = `node-${randomId()}`;
    // Named: the log's reader and subscriber connections inherit it (duplicate()).
    const client = new Redis(server.url, { connectionName: name });
    client.on("error", () => {});
    const log = await redisChangeLog({ client, prefix, leaseMs: LEASE_MS, logger: quiet });
    const store = await redisStore({ client, prefix: `${prefix}entry:` });
    const cache = new Cache({ tiers: [memoryStore(), store], log, schema, logger: quiet });
    open.push({
      async close() {
        await cache.close();
        client.disconnect();
      },
    });
    nodes.push({ name, client, cache });
  }
  await until(() => nodes.every((x) => x.cache.log.trusted() && x.cache.log.nodes?.() === n));
  // A log a lease old acknowledges at once; every script this test uses is loaded.
  await nodes[0]!.cache.invalidate({ keys: ["settle"] });
  for (const x of nodes) {
    await x.cache.write(async (record) => {
      await record([userUpdate(9, "a", "b")]);
    });
  }
  return nodes;
}

/** The log's scripts by their SHA1, as MONITOR shows them (EVALSHA's, or EVAL's body). */
function scriptNames(client: Redis): Map<string, string> {
  const set = (client as unknown as { scriptsSet: Record<string, { sha: string }> }).scriptsSet;
  return new Map(Object.entries(set).map(([name, script]) => [script.sha, name]));
}

/** Commands a node's following sends: the log's reads, renewals, starts and history. */
const FOLLOWING = new Set([
  "xread",
  "blpop",
  "lpush",
  "ltrim",
  "pexpire",
  "ecRenew",
  "ecStart",
  "ecReseal",
  "ecKeepHistory",
  "ecLeave",
]);

/**
 * Runs `work` and returns, per node, what it counted (stats().redis, the difference) and
 * what Redis saw from its connections meanwhile: following's commands and the others'.
 */
async function measure(nodes: Node[], work: () => Promise<void>) {
  const monitor = new Redis(server.url);
  open.push({ close: async () => monitor.disconnect() });
  const names = scriptNames(nodes[0]!.client);
  const admin = new Redis(server.url);
  open.push({ close: async () => admin.disconnect() });
  // Which node each connection is (each node's client, reader and subscriber).
  const owner = new Map<string, string>();
  for (const line of ((await admin.client("LIST")) as string).split("\n")) {
    const addr = /addr=(\S+)/.exec(line)?.[1];
    const name = /name=(\S*)/.exec(line)?.[1];
    if (addr && name) owner.set(addr, name);
  }
  const seen = new Map<string, { following: number; requests: number; commands: string[] }>();
  for (const x of nodes) seen.set(x.name, { following: 0, requests: 0, commands: [] });
  const watching = await monitor.monitor();
  watching.on("monitor", (_time: string, args: string[], source: string) => {
    const node = seen.get(owner.get(source) ?? "");
    if (!node) return; // Lua's own calls, or another connection
    const [command = "", first = ""] = args.map((a) => String(a));
    const name =
      command === "evalsha"
        ? (names.get(first) ?? command)
        : command === "eval"
          ? (names.get(createHash("sha1").update(first).digest("hex")) ?? command)
          : command;
    const history = name === "set" && first.includes("claim:history:");
    node.commands.push(name);
    if (FOLLOWING.has(name) || history) node.following++;
    else node.requests++;
  });
  await new Promise((r) => setTimeout(r, 50)); // MONITOR is on
  const before = nodes.map((x) => x.cache.stats().redis);
  await work();
  for (const x of nodes) await x.cache.drain();
  // The other nodes read the last record and renew: their following settles.
  await new Promise((r) => setTimeout(r, 300));
  const after = nodes.map((x) => x.cache.stats().redis);
  await watching.disconnect();
  return nodes.map((x, i) => ({
    counted: difference(before[i]!, after[i]!),
    seen: seen.get(x.name)!,
  }));
}

type Counted = { commands: Record<CostKind, number>; trips: Record<CostKind, number> } & {
  requests: CacheStats["redis"]["requests"];
};

function difference(a: CacheStats["redis"], b: CacheStats["redis"]): Counted {
  const by = (x: Record<string, number>, y: Record<string, number>) =>
    Object.fromEntries(Object.keys(y).map((k) => [k, y[k]! - (x[k] ?? 0)]));
  return {
    commands: by(a.commands, b.commands) as Counted["commands"],
    trips: by(a.trips, b.trips) as Counted["trips"],
    requests: by(a.requests, b.requests) as Counted["requests"],
  };
}

const sumOf = (c: Counted, kinds: readonly CostKind[]) =>
  kinds.reduce((n, k) => n + c.commands[k], 0);
const REQUESTS: CostKind[] = COST_KINDS.filter((k) => k !== "following");

/** What a node counted is what Redis saw from it: following apart, the rest together. */
function sameAsRedis(m: Awaited<ReturnType<typeof measure>>): void {
  for (const { counted, seen } of m) {
    expect({ following: counted.commands.following, requests: sumOf(counted, REQUESTS) }).toEqual({
      following: seen.following,
      requests: seen.requests,
    });
  }
}

const load = (body: string) => async () => ({ body, tags: ["users#1"] });

shared.describe("Redis commands per request, counted by the node", () => {
  it("a hit from memory sends none; a hit from the shared tier one GET; a miss its GET and the copy's SET", async () => {
    const [a, b] = await cluster(2);
    const m = await measure([a!, b!], async () => {
      await a!.cache.resolve("user:1", load("Lane")); // a miss: GET, then SET in the shared tier
      await a!.cache.drain();
      await a!.cache.resolve("user:1", load("x")); // a hit from a's memory
      await b!.cache.resolve("user:1", load("x")); // a hit from the shared tier: GET
      await b!.cache.resolve("user:1", load("x")); // then from b's memory
    });
    sameAsRedis(m);
    const [onA, onB] = m;
    expect(onA!.counted.requests).toMatchObject({ hit: 1, miss: 1 });
    expect(onA!.counted.commands).toMatchObject({ hit: 0, miss: 2 });
    expect(onA!.counted.trips).toMatchObject({ hit: 0, miss: 2 });
    expect(onB!.counted.requests).toMatchObject({ hit: 2, miss: 0 });
    expect(onB!.counted.commands).toMatchObject({ hit: 1, miss: 0 });
    // Redis saw from b exactly that GET besides its following.
    expect(onB!.seen.commands.filter((c) => !FOLLOWING.has(c))).toEqual(["get"]);
  });

  it("a write sends the same commands on 2 nodes as on 3: its turn and its append", async () => {
    const writes = async (n: number) => {
      const nodes = await cluster(n);
      const writer = nodes[0]!;
      const m = await measure(nodes, async () => {
        for (let i = 0; i < 5; i++) {
          await writer.cache.write(async (record) => {
            await record([userUpdate(1, `v${i}`, `v${i + 1}`)]);
          });
        }
      });
      sameAsRedis(m);
      const { counted } = m[0]!;
      expect(counted.requests.write).toBe(5);
      return { commands: counted.commands.write, trips: counted.trips.write };
    };
    const two = await writes(2);
    const three = await writes(3);
    expect(two).toEqual({ commands: 10, trips: 10 });
    expect(three).toEqual(two);
  });
});

/** Read events Redis processed (INFO stats): each is a send from some client, as it saw it. */
async function readsProcessed(admin: Redis): Promise<number> {
  const info = (await admin.info("stats")) as string;
  return Number(/total_reads_processed:(\d+)/.exec(info)?.[1]);
}

/** `n` logs on one prefix, each followed; each one's applied seqs are pushed to `applied`. */
async function logsOn(prefix: string, n: number, applied: number[][] = [], leaseMs = LEASE_MS) {
  const logs: RedisChangeLog[] = [];
  for (let i = 0; i < n; i++) {
    const log = await redisChangeLog({ url: server.url, prefix, leaseMs, logger: quiet });
    const seen: number[] = [];
    applied.push(seen);
    log.follow({ apply: async (r) => void seen.push(r.seq), reset: () => {} });
    open.push(log);
    logs.push(log);
  }
  return logs;
}

/** The sends Redis processed from every connection while `writer` appended `records` records. */
async function sendsFor(writer: RedisChangeLog, records: number): Promise<number> {
  await writer.append([{ prefix: "settle" }]); // the log is a lease old; scripts are loaded
  await new Promise((r) => setTimeout(r, 100));
  const admin = new Redis(server.url);
  open.push({ close: async () => admin.disconnect() });
  const before = await readsProcessed(admin);
  for (let i = 0; i < records; i++) await writer.append([{ prefix: `p${i}` }]);
  await new Promise((r) => setTimeout(r, 100)); // the last acknowledgements and reads
  return (await readsProcessed(admin)) - before - 1; // the INFO itself
}

const RECORDS = 10;

shared.describe("sends per record, as Redis saw them", () => {
  it("a node following the log sends one request per record it reads: its acknowledgement goes with its next read", async () => {
    const logs = await logsOn(`test:${randomId()}:`, 3);
    await until(() => logs.every((l) => l.trusted() && l.nodes() === 3));
    const reads = await sendsFor(logs[0]!, RECORDS);
    // Per record: the writer's append and its reader's next read (its own record asks no
    // acknowledgement), and one send from each of the two others: the renewal that
    // acknowledges the record, with the read that waits for the next. With renewals sent
    // apart from the reads, 6. Room for a lease's renewal or a barrier's question.
    expect(reads).toBeGreaterThanOrEqual(4 * RECORDS);
    expect(reads).toBeLessThanOrEqual(4 * RECORDS + 5);
  });

  it("a node alone on the log sends one per record, its append: its own records do not wake its reader", async () => {
    const [alone] = await logsOn(`test:${randomId()}:`, 1);
    await until(() => alone!.trusted() && alone!.nodes() === 1);
    const reads = await sendsFor(alone!, RECORDS);
    // Waiting on the stream, its reader read each record back and sent its next read: 2 a
    // record. Room for a lease's renewal.
    expect(reads).toBeGreaterThanOrEqual(RECORDS);
    expect(reads).toBeLessThanOrEqual(RECORDS + 3);
  });

  it("a node goes back to its bell once the others left and a quarter lease passed without their records", async () => {
    const [first, second] = await logsOn(`test:${randomId()}:`, 2);
    await until(() => first!.nodes() === 2 && second!.nodes() === 2);
    await second!.append([{ prefix: "heard" }]); // the log is a lease old; first hears it
    await second!.close();
    // first's renewals count it alone again, and its quarter lease since "heard" runs out.
    await until(() => first!.nodes() === 1);
    await new Promise((r) => setTimeout(r, LEASE_MS / 4 + 200));
    const reads = await sendsFor(first!, RECORDS);
    expect(reads).toBeLessThanOrEqual(RECORDS + 3);
  });

  it("a node alone on the log hears the first record of a node that joins at once, not at its next renewal", async () => {
    const prefix = `test:${randomId()}:`;
    const applied: number[][] = [];
    // A long lease: the lone node waits on its bell for a quarter of it (15 s) at a time.
    const LONG_MS = 60_000;
    const [first] = await logsOn(prefix, 1, applied, LONG_MS);
    await until(() => first!.trusted() && first!.nodes() === 1);
    // Woken by hand, it reads, renews (one member) and waits on its bell afresh: its next
    // wake-up on its own is 15 s away.
    const admin = new Redis(server.url);
    open.push({ close: async () => admin.disconnect() });
    await admin.lpush(bellKey(logKeys(prefix).keys, first!.node), "0");
    await new Promise((r) => setTimeout(r, 300));
    // A node with a short lease joins (the log is a lease old for it at once) and writes:
    // its write is acknowledged once the lone node applied the record, so only the bell
    // that its append rang can make that quick.
    const [second] = await logsOn(prefix, 1, applied, 1000);
    await until(() => second!.trusted());
    const started = performance.now();
    const seq = await second!.append([{ prefix: "joined" }]);
    expect(applied[0]).toContain(seq);
    expect(performance.now() - started).toBeLessThan(LONG_MS / 12);
  });
});

shared.describe("claims per record", () => {
  it("a record's claims go to Redis in one command per node, however many keys it concerns", async () => {
    const prefix = `test:${randomId()}:`;
    const client = new Redis(server.url);
    client.on("error", () => {});
    const a = await redisChangeLog({ client, prefix, leaseMs: LEASE_MS, logger: quiet });
    const b = await redisChangeLog({ url: server.url, prefix, leaseMs: LEASE_MS, logger: quiet });
    open.push(a, b, { close: async () => client.disconnect() });
    for (const log of [a, b]) log.follow({ apply: async () => {}, reset: () => {} });
    // Started and subscribed first: MONITOR's own reply must not come among theirs.
    await until(() => a.nodes() === 2 && b.nodes() === 2);
    const claimSha = [...scriptNames(client)].find(([, name]) => name === "ecClaim")![0];
    const monitor = new Redis(server.url);
    open.push({ close: async () => monitor.disconnect() });
    let claims = 0;
    const watching = await monitor.monitor();
    watching.on("monitor", (_time: string, args: string[]) => {
      const [command = "", first = ""] = args.map((x) => String(x));
      // EVAL's body as MONITOR quotes it (newlines escaped): told by what only CLAIM does.
      if (
        command === "evalsha" ? first === claimSha : command === "eval" && first.includes("HSETNX")
      )
        claims++;
    });
    await new Promise((r) => setTimeout(r, 50)); // MONITOR is on
    const names = Array.from({ length: 20 }, (_, i) => `7:users/${i}`);
    const onA = new Cost();
    const wonA = await Promise.all(names.map((n) => a.claim(n, onA)));
    const onB = new Cost();
    const wonB = await Promise.all(names.map((n) => b.claimOrAwait(n, 50, onB)));
    await new Promise((r) => setTimeout(r, 50));
    await watching.disconnect();
    expect(wonA.every(Boolean)).toBe(true);
    expect(wonB.every((w) => w === "late")).toBe(true); // nobody said the work is done
    expect({ a: onA.commands, b: onB.commands, redis: claims }).toEqual({ a: 1, b: 1, redis: 2 });
  });
});
