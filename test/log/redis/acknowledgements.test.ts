import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import { Relay } from "../../../bench/lib/relay.ts";
import { Cache } from "../../../src/core/cache/index.ts";
import { MAX_GROUP, WriteGroups } from "../../../src/core/cache/write-group.ts";
import { randomId } from "../../../src/core/random-id.ts";
import type { Store } from "../../../src/core/store.ts";
import { type RedisChangeLog, redisChangeLog } from "../../../src/log/redis/index.ts";
import { logKeys, parseAck, wakeChannel } from "../../../src/log/redis/scripts.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { quiet, schema, until, userUpdate } from "../../helpers/cluster.ts";
import { hookReads } from "../../helpers/log-reader.ts";
import { requireRedis } from "../../helpers/services.ts";

/**
 * A write is acknowledged once every node holding a lease has applied its record. Nodes
 * say so on the log's wake-up channel when they renew, and the writer goes on when it has
 * heard them all: it does not ask Redis while they keep up, so a node near Redis waits one
 * round trip of the farthest node and a node far from Redis nothing beyond its append. A
 * node that stops hearing the log holds writers up to its lease, no longer.
 *
 * The far node's link to Redis crosses a relay that adds 40 ms per round trip; asking
 * Redis who a write still waits for (the barrier script) is made to hang on the writer, so
 * a write that completes did so on acknowledgements alone.
 */

const shared = await requireRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
// Long enough that a loaded machine (the suite runs two files at a time) does not end a lease
// between renewals: a write would then ask Redis, which these tests forbid.
const LEASE_MS = 1000;
const RTT_MS = 40;

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

interface Node {
  log: RedisChangeLog;
  cache: Cache;
  /** The log's requests this node made, by script or command name. */
  calls: string[];
  /** From now on, asking Redis who a write waits for never gets an answer. */
  hangBarrier(): void;
}

async function node(
  prefix: string,
  url: string,
  shared?: Store,
  sharedFirst = false,
  leaseMs = LEASE_MS,
): Promise<Node> {
  const client = new Redis(url);
  client.on("error", () => {});
  const calls: string[] = [];
  // Renewals go with the stream's reads, on the reader's connection, where it has one.
  hookReads(client, { renewed: () => calls.push("ecRenew") });
  const log = await redisChangeLog({ client, prefix, leaseMs, logger: quiet });
  let hang = false;
  const c = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const name of ["ecTurn", "ecAppend", "ecBarrier", "ecRelease", "ecRenew", "xrange"]) {
    const real = c[name]!.bind(client);
    c[name] = (...args: unknown[]) => {
      calls.push(name);
      return hang && name === "ecBarrier" ? new Promise(() => {}) : real(...args);
    };
  }
  // `sharedFirst`: the shared tier alone, first (e.g. tiers: [redisStore()]).
  const tiers = shared ? (sharedFirst ? [shared] : [memoryStore(), shared]) : [memoryStore()];
  const cache = new Cache({ tiers, log, schema, logger: quiet });
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
    calls,
    hangBarrier: () => {
      hang = true;
    },
  };
}

/** Two nodes, `far` through a relay; once both are members and the log is a lease old. */
async function pair(
  leaseMs = LEASE_MS,
  rttMs = RTT_MS,
): Promise<{ near: Node; far: Node; relay: Relay; prefix: string }> {
  const prefix = `test:${randomId()}:`;
  const target = new URL(shared.url);
  const relay = await Relay.start({
    target: { host: target.hostname, port: Number(target.port || 6379) },
    rttMs,
  });
  open.push(relay);
  const near = await node(prefix, shared.url, undefined, false, leaseMs);
  const far = await node(prefix, relay.url(shared.url), undefined, false, leaseMs);
  await until(() => near.log.nodes() === 2 && far.log.nodes() === 2);
  // A log younger than a lease holds every append until it is a lease old.
  await near.cache.invalidate({ keys: ["settle"] });
  return { near, far, relay, prefix };
}

/** The last `n` records of the log under `prefix`, as Redis holds them: ordered, and how many ops. */
async function lastRecords(
  prefix: string,
  n: number,
): Promise<{ ordered: boolean; ops: number }[]> {
  const reader = new Redis(shared.url);
  try {
    const stream = (await reader.xrange(logKeys(prefix).keys[1]!, "-", "+")).slice(-n);
    const field = (entry: [string, string[]], name: string) =>
      entry[1][entry[1].indexOf(name) + 1]!;
    return stream.map((e) => ({
      ordered: field(e, "ordered") === "1",
      ops: (JSON.parse(field(e, "ops")) as unknown[]).length,
    }));
  } finally {
    reader.disconnect();
  }
}

const cached = async (n: Node, key: string) => {
  await n.cache.setEntry(key, { body: "Lane", tags: ["users#1"] });
  expect(n.cache.peek(key)).toBeDefined();
};

const rename = (n: Node) =>
  n.cache.write(async (record) => {
    await record([userUpdate(1, "Lane", "Lana")]);
  });

shared.describe("acknowledgements", () => {
  it("a write through a near node ends on the far node's acknowledgement, never on asking Redis", async () => {
    const { near, far } = await pair();
    await cached(far, "user:1");
    near.hangBarrier();
    await rename(near);
    // The far node applied it before the write was acknowledged.
    expect(far.cache.peek("user:1")).toBeUndefined();
    expect(far.cache.position.seq).toBe(near.cache.position.seq);
  });

  it("a write's record has its place (`placed`) before the far node is heard from, and once", async () => {
    const { near, far } = await pair();
    await cached(far, "user:1");
    // What the far node held each time the write was placed.
    const placed: { seq: number; cached: boolean }[] = [];
    let seq = 0;
    await near.cache.write(
      async (record) => {
        await record([userUpdate(1, "Lane", "Lana")]);
        seq = near.cache.position.seq;
      },
      {
        placed: () =>
          placed.push({ seq: far.cache.position.seq, cached: !!far.cache.peek("user:1") }),
      },
    );
    // Placed on the append's reply, while the record was still 20 ms from the far node.
    expect(placed).toEqual([{ seq: seq - 1, cached: true }]);
    expect(far.cache.peek("user:1")).toBeUndefined();
  });

  it("a write through a far node sends its turn and its append, then hears the near node: nothing else", async () => {
    const { near, far } = await pair();
    await cached(near, "user:1");
    far.hangBarrier();
    far.calls.length = 0;
    await rename(far);
    // (Renewals go on as the lease wants, whatever the node writes.)
    expect(far.calls.filter((c) => c !== "ecRenew")).toEqual(["ecTurn", "ecAppend"]);
    expect(near.cache.peek("user:1")).toBeUndefined();
    expect(near.cache.position.seq).toBe(far.cache.position.seq);
  });

  it("writes waiting on a far node take the turn its append hands over: one turn for two groups, both ordered", async () => {
    const { far, prefix } = await pair();
    const groups = new WriteGroups((make, o) => far.cache.write(make, o));
    far.calls.length = 0;
    const write = (from: string, to: string) =>
      groups.run(async (record) => {
        await record([userUpdate(1, from, to)]);
      });
    // The second arrives while the first is on its way: it waits, and goes next.
    await Promise.all([write("Lane", "Lana"), write("Lana", "Lena"), write("Lena", "Luna")]);
    const sent = far.calls.filter((c) => c !== "ecRenew" && c !== "xrange");
    expect(sent).toEqual(["ecTurn", "ecAppend", "ecAppend"]);
    // Both records ordered (each may patch), the later writes in one record, in order.
    const records = await lastRecords(prefix, 2);
    expect(records.map((r) => r.ordered)).toEqual([true, true]);
    expect(records.map((r) => r.ops)).toEqual([1, 2]);
    // The turn handed over and not needed is given back: nothing held once the writes end.
    expect(await far.log.quietSince(far.cache.position)).toBe(true);
  });

  it("a write that comes after a far node's record was sent has its turn taken behind that record at once, and its record is ordered", async () => {
    // A long round trip: the second write comes well within the first record's.
    const { far, prefix } = await pair(LEASE_MS, 200);
    const groups = new WriteGroups(
      (make, o) => far.cache.write(make, o),
      MAX_GROUP,
      () => far.cache.writeTurn(),
    );
    const write = (from: string, to: string) =>
      groups.run(async (record) => {
        await record([userUpdate(1, from, to)]);
      });
    const sent = () => far.calls.filter((c) => c !== "ecRenew" && c !== "xrange");
    const at = far.cache.position.seq;
    const first = write("Lane", "Lana");
    await until(() => sent().includes("ecAppend")); // nobody waited as it was sent
    const second = write("Lana", "Lena");
    // Its turn is asked for at once, while the first record is still on its way, on the
    // same connection behind it: taken at that record's place, as a turn handed over is.
    expect(sent()).toEqual(["ecTurn", "ecAppend", "ecTurn"]);
    expect(far.cache.position.seq).toBe(at);
    await Promise.all([first, second]);
    expect(sent()).toEqual(["ecTurn", "ecAppend", "ecTurn", "ecAppend"]);
    // Both ordered: each may patch.
    expect((await lastRecords(prefix, 2)).map((r) => r.ordered)).toEqual([true, true]);
    expect(await far.log.quietSince(far.cache.position)).toBe(true);
  });

  it("a far node cut off holds a write up to its lease, no longer, and serves nothing meanwhile", async () => {
    const { near, far, relay } = await pair();
    await cached(far, "user:1");
    relay.partition();
    const started = performance.now();
    await rename(near);
    const waited = performance.now() - started;
    // It waited for the far node's lease to run out in Redis: the far node stopped trusting
    // its own before that, so it serves nothing it could not check.
    expect(far.log.trusted()).toBe(false);
    expect(waited).toBeLessThan(LEASE_MS * 3);
    relay.heal();
    // Back, it applies the record before it serves from memory again.
    await until(() => far.log.trusted());
    expect(far.cache.peek("user:1")).toBeUndefined();
    expect(far.cache.position.seq).toBe(near.cache.position.seq);
  });
});

/** Holds the event loop for `ms` (a long task, a GC pause). */
function stall(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {}
}

shared.describe("how long a writer waits before it asks Redis", () => {
  it("an event-loop stall during a write is no missed acknowledgement: the writer does not ask", async () => {
    const { near, far } = await pair();
    await cached(far, "user:1");
    near.calls.length = 0;
    // 300 ms held from just after the append's reply, while the writer waits for the far
    // node: its timer comes due in the stall, before the acknowledgement is read (or even
    // sent: the far node stalls with it).
    await near.cache.write(
      async (record) => {
        await record([userUpdate(1, "Lane", "Lana")]);
      },
      { placed: () => setTimeout(() => stall(300), 5) },
    );
    expect(near.calls.filter((c) => c === "ecBarrier")).toEqual([]);
    expect(far.cache.peek("user:1")).toBeUndefined();
  });

  it("a writer waiting on a node 150 ms from Redis does not ask Redis on every write, once it knows how long acknowledgements take", async () => {
    const { near, far } = await pair(LEASE_MS, 150);
    const barriers: number[] = [];
    for (let i = 0; i < 5; i++) {
      await cached(far, "user:1");
      near.calls.length = 0;
      await rename(near);
      barriers.push(near.calls.filter((c) => c === "ecBarrier").length);
      expect(far.cache.peek("user:1")).toBeUndefined();
    }
    // The first wait for the far node's acknowledgement (about 150 ms) teaches the writer
    // how long they take; it waits twice that before it asks (a fixed 100 ms asked 5 of 5).
    // One more ask is allowed: a loaded machine may delay one acknowledgement past that.
    const later = barriers.slice(1).reduce((a, b) => a + b, 0);
    expect(later, `asks per write: ${barriers.join(", ")}`).toBeLessThanOrEqual(1);
  });
});

shared.describe("who hears an acknowledgement", () => {
  it("only the record's writer: the nodes that did not write are not woken, and the writer hears each of the others", async () => {
    const prefix = `test:${randomId()}:`;
    const [a, b, c] = [
      await node(prefix, shared.url),
      await node(prefix, shared.url),
      await node(prefix, shared.url),
    ];
    await until(() => [a, b, c].every((n) => n!.log.nodes() === 3));
    await a!.cache.invalidate({ keys: ["settle"] }); // a log a lease old
    // Every message on the log's channels from here on, by channel.
    const { channel } = logKeys(prefix);
    const listener = new Redis(shared.url);
    open.push({ close: async () => listener.disconnect() });
    const heard: { channel: string; message: string }[] = [];
    listener.on("pmessage", (_, ch: string, message: string) =>
      heard.push({ channel: ch, message }),
    );
    await listener.psubscribe(`${channel}*`);
    await rename(b!);
    const seq = b!.cache.position.seq;
    await until(() => heard.length >= 2);
    await new Promise((r) => setTimeout(r, 100)); // nothing else comes
    const acks = heard.map((h) => ({ ...h, ack: parseAck(h.message) }));
    // a and c each told b, on b's channel alone, that they applied the record.
    expect(acks.map((h) => h.channel)).toEqual([
      wakeChannel(channel, b!.log.node),
      wakeChannel(channel, b!.log.node),
    ]);
    expect(new Set(acks.map((h) => h.ack?.node))).toEqual(new Set([a!.log.node, c!.log.node]));
    expect(acks.every((h) => h.ack?.seq === seq)).toBe(true);
  });
});

shared.describe("a writer's own records", () => {
  it("cost it no renewal: it applied them as it appended them, and nobody waits for its acknowledgement", async () => {
    // A long lease, so that the lease's own renewals (every lease / 4) are few however
    // slowly a loaded machine runs the writes.
    const leaseMs = 8000;
    const { near, far } = await pair(leaseMs);
    near.calls.length = 0;
    far.calls.length = 0;
    const started = performance.now();
    for (let i = 0; i < 10; i++) await rename(near);
    await until(() => far.cache.position.seq === near.cache.position.seq);
    await new Promise((r) => setTimeout(r, RTT_MS * 2)); // the far node's last renewal
    const elapsed = performance.now() - started;
    const renewals = (n: Node) => n.calls.filter((c) => c === "ecRenew").length;
    // The far node acknowledges each record it reads (some may come in one read); the writer
    // renews as its lease wants (a read returns every lease / 4), not once per write, even
    // where its reader gets its own record before the append's reply does (under load, 8 of
    // the 10 writes once). Renewing for its own records, it renews 10 times or more.
    expect(renewals(far)).toBeGreaterThanOrEqual(1);
    expect(renewals(near)).toBeLessThanOrEqual(2 + Math.floor(elapsed / (leaseMs / 4)));
  });
});

/** A tier both nodes read, like Redis, whose deletes wait until `release`. */
function heldShared() {
  const inner = memoryStore();
  let release!: () => void;
  let held = new Promise<void>((r) => {
    release = r;
  });
  const store: Store = {
    name: "held-shared",
    shared: true,
    get: (key) => inner.get(key),
    set: (key, entry, ttl) => inner.set(key, entry, ttl),
    delete: async (keys) => {
      await held;
      return inner.delete(keys);
    },
  };
  return {
    store,
    hold() {
      held = new Promise<void>((r) => {
        release = r;
      });
    },
    release: () => release(),
  };
}

shared.describe("deletes in a shared tier", () => {
  it("a write is answered before its deletes in the shared tier land, and no node serves the old copy meanwhile", async () => {
    const prefix = `test:${randomId()}:`;
    const tier = heldShared();
    tier.release();
    const a = await node(prefix, shared.url, tier.store);
    const b = await node(prefix, shared.url, tier.store);
    await until(() => a.log.nodes() === 2 && b.log.nodes() === 2);
    await a.cache.invalidate({ keys: ["settle"] }); // a log a lease old
    await b.cache.setEntry("user:1", { body: "Lane", tags: ["users#1"] });
    tier.hold();
    await rename(a); // answered while the shared tier still holds the old copy
    expect(await tier.store.get("user:1")).toBeDefined();
    // Read from the shared tier, the old copy is checked against the log and refused.
    expect(b.cache.peek("user:1")).toBeUndefined();
    expect(await b.cache.getEntry("user:1")).toBeUndefined();
    expect(await a.cache.getEntry("user:1")).toBeUndefined();
    tier.release();
    await a.cache.drain();
    expect(await tier.store.get("user:1")).toBeUndefined();
  });

  it("a value set waits for the old copy's delete in the shared tier, so the delete cannot remove the new one", async () => {
    const prefix = `test:${randomId()}:`;
    const tier = heldShared();
    tier.release();
    const a = await node(prefix, shared.url, tier.store);
    await a.cache.set("greeting", "hello");
    tier.hold();
    let done = false;
    const setting = a.cache.set("greeting", "hi").then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(done).toBe(false);
    tier.release();
    await setting;
    await a.cache.drain();
    expect(await tier.store.get("greeting")).toBeDefined();
  });
});

shared.describe("a shared first tier", () => {
  it("no node serves the old copy from a shared first tier after the write is answered", async () => {
    const prefix = `test:${randomId()}:`;
    const tier = heldShared();
    tier.release();
    const a = await node(prefix, shared.url, tier.store, true);
    const b = await node(prefix, shared.url, tier.store, true);
    await until(() => a.log.nodes() === 2 && b.log.nodes() === 2);
    await a.cache.invalidate({ keys: ["settle"] });
    await b.cache.setEntry("user:1", { body: "Lane", tags: ["users#1"] });
    tier.hold(); // Redis slow to delete (a far link, a busy server)
    await a.cache.write(async (record) => {
      await record([userUpdate(1, "Lane", "Lana")]);
    });
    // Acknowledged. Any node reading user:1 now must not get "Lane".
    const got = await b.cache.getEntry("user:1");
    tier.release();
    await a.cache.drain();
    expect(got).toBeUndefined();
  });
});

/** A shared tier as seen from a node `delayMs` from it: each read takes that long. */
function seenFrom(store: Store, delayMs: number): Store {
  return {
    ...store,
    get: async (key) => {
      await new Promise((r) => setTimeout(r, delayMs));
      return store.get(key);
    },
  };
}

shared.describe("a refused shared copy", () => {
  // A node whose shared tier answers slower than its database loads that key itself rather
  // than claim its reload and wait for another node's copy: two more far round trips. It
  // does not even ask the tier (it skips a far tier but for one read in 16, which, refused,
  // loads without claiming as well).
  it.each([
    ["near the tier, claims the reload (one load for the cluster)", 0, 1, 1],
    ["far from it, loads it itself without asking the tier or claiming", RTT_MS, 0, 0],
  ])("a node %s", async (_, delayMs, claims, refused) => {
    const prefix = `test:${randomId()}:`;
    const tier = heldShared();
    tier.release();
    const a = await node(prefix, shared.url, tier.store);
    const b = await node(prefix, shared.url, seenFrom(tier.store, delayMs));
    await until(() => a.log.nodes() === 2 && b.log.nodes() === 2);
    await a.cache.invalidate({ keys: ["settle"] }); // a log a lease old
    // b has loaded some keys: it knows what a load of its database costs, and what the
    // tier's reads take (the least of the last 16).
    for (let i = 0; i < 16; i++) await b.cache.resolve(`warm-${i}`, async () => ({ body: "x" }));
    await a.cache.setEntry("user:1", { body: "Lane", tags: ["users#1"] });
    tier.hold(); // the old copy stays in the shared tier after the write
    await rename(a);
    await until(() => b.cache.position.seq === a.cache.position.seq);
    let claimed = 0;
    const claim = b.log.claimOrAwait.bind(b.log);
    b.log.claimOrAwait = (name, ms, cost) => {
      claimed++;
      return claim(name, ms, cost);
    };
    const loads = b.cache.stats().loads;
    const got = await b.cache.resolve("user:1", async () => ({ body: "Lana", tags: ["users#1"] }));
    tier.release();
    expect(new TextDecoder().decode(got.entry.body)).toBe("Lana");
    expect(got.status).toBe("miss");
    expect(b.cache.stats().refused).toBe(refused);
    expect(b.cache.stats().tiers[1]!.skipped).toBe(1 - refused);
    expect(b.cache.stats().loads - loads).toBe(1);
    expect(claimed).toBe(claims);
  });
});
