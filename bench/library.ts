/**
 * The library's memory hit against bentocache and lru-cache, in one run:
 *
 *   npm install --no-save --legacy-peer-deps bentocache@1.6.1   # once; see below
 *   npm run bench:library -- --rounds 5 --ms 300
 *
 * 1,000 keys, each a 0.5 KB object, all in the memory tier. Targets, rounds alternating so
 * noise on this shared machine lands on all of them, each round starting one target later (each target's median ops/s is taken):
 * `lru-cache` (an awaited `get` of lru-cache 11 holding the objects: the floor),
 * `bentocache` and `bentocache-raw` (its memory driver with `serialize` on, the default,
 * and off), `edgecache-get` and `edgecache-getOrSet` (hits). Then two tiers after memory
 * eviction (memory holds 100 of the 1,000 keys, so most gets fall to the second tier and
 * back-fill memory): memory + SQLite file, memory + Redis (skipped with --no-redis), each
 * read key by key (`get`) and 100 keys per `getMany`. Memory targets are timed in this
 * process's CPU time, two-tier ones in wall time (see Target).
 *
 * bentocache is not a dependency of the project: its optional ioredis peer (^5) conflicts
 * with ours (^6), so it is installed for the run only, without saving.
 *
 * Flags: --rounds n, --ms per round and target, --out path (default bench/results/library),
 * --redis url (default redis://127.0.0.1:6379), --no-redis.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LRUCache } from "lru-cache";
import { createCache } from "../src/core/cache/index.ts";
import { randomId } from "../src/core/random-id.ts";
import { memoryStore } from "../src/stores/memory.ts";
import { redisStore } from "../src/stores/redis.ts";
import { sqliteStore } from "../src/stores/sqlite.ts";
import { BenchRedis } from "./lib/redis.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { median, round2 } from "./lib/rounds.ts";
import { commandLine, fail, positiveInt } from "./lib/settings.ts";

const KEYS = 1000;
const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const rounds = positiveInt("rounds", flag("rounds") ?? "5");
const ms = positiveInt("ms", flag("ms") ?? "300");
const out = flag("out") ?? "bench/results/library";
const redisUrl = args.includes("--no-redis")
  ? undefined
  : (flag("redis") ?? "redis://127.0.0.1:6379");
const command = commandLine("bench:library");

/** A 0.5 KB object, different per key. */
function value(i: number) {
  return {
    id: i,
    name: `user ${i}`,
    email: `user${i}@example.com`,
    active: i % 2 === 0,
    roles: ["reader", "writer"],
    bio: "x".repeat(380),
    address: { city: "Lisbon", zip: `${1000 + i}` },
  };
}
const keys = Array.from({ length: KEYS }, (_, i) => `user:${i}`);

type Get = (key: string) => Promise<unknown>;
/** Reads a batch of keys at once (getMany); the benchmark counts each key as one get. */
type GetMany = (keys: string[]) => Promise<unknown[]>;
/** Keys per getMany call in the batch rows. */
const BATCH = 100;

/**
 * A target: how one pass over the keys reads them, and which time divides the gets. The
 * memory targets use this process's CPU time: they never wait, and on this shared machine
 * (2 cores, often a load of 5 or more) wall time mostly measures the neighbours. The tiered
 * targets wait for SQLite and Redis, which CPU time would leave out: wall time.
 */
interface Target {
  time: "cpu" | "wall";
  pass(): Promise<void>;
}

function one(get: Get, time: Target["time"]): Target {
  return {
    time,
    async pass() {
      for (let i = 0; i < KEYS; i++) {
        if ((await get(keys[i]!)) === undefined) fail(`no value for ${keys[i]}`);
      }
    },
  };
}

function many(getMany: GetMany): Target {
  return {
    time: "wall",
    async pass() {
      for (let i = 0; i < KEYS; i += BATCH) {
        const values = await getMany(keys.slice(i, i + BATCH));
        if (values.includes(undefined)) fail(`getMany missed a key of ${keys[i]}...`);
      }
    },
  };
}

/** Gets per second (of CPU or wall time, see Target): passes over the keys for `ms`. */
async function measure(target: Target): Promise<number> {
  let ops = 0;
  const start = performance.now();
  const cpu = process.cpuUsage();
  let now = start;
  while (now - start < ms) {
    await target.pass();
    ops += KEYS;
    now = performance.now();
  }
  if (target.time === "wall") return (ops / (now - start)) * 1000;
  const used = process.cpuUsage(cpu);
  return (ops / (used.user + used.system)) * 1e6;
}

/** What the benchmark uses of bentocache (not a dependency, so not type-checked against it). */
interface Bento {
  set(options: { key: string; value: unknown; ttl: string }): Promise<unknown>;
  get(options: { key: string }): Promise<unknown>;
}
interface BentoModule {
  BentoCache: new (options: object) => Bento;
  bentostore(): { useL1Layer(driver: unknown): object };
}

async function bentoTarget(serialize: boolean): Promise<Get> {
  // Names in variables: the type checker must not require the package (see above).
  const [main, memory] = ["bentocache", "bentocache/drivers/memory"];
  let mod: BentoModule;
  let drivers: { memoryDriver(options: object): unknown };
  try {
    mod = await import(main);
    drivers = await import(memory);
  } catch {
    fail("bentocache is not installed: npm install --no-save --legacy-peer-deps bentocache@1.6.1");
  }
  const bento = new mod.BentoCache({
    default: "memory",
    stores: {
      memory: mod.bentostore().useL1Layer(drivers.memoryDriver({ maxItems: 10_000, serialize })),
    },
  });
  for (let i = 0; i < KEYS; i++) await bento.set({ key: keys[i]!, value: value(i), ttl: "1h" });
  return (key) => bento.get({ key });
}

async function main(): Promise<void> {
  const lru = new LRUCache<string, object>({ max: 10_000 });
  for (let i = 0; i < KEYS; i++) lru.set(keys[i]!, value(i));
  const cache = createCache({ tiers: [memoryStore()] });
  for (let i = 0; i < KEYS; i++) await cache.set(keys[i]!, value(i));
  const memoryTargets: Record<string, Target> = {
    "lru-cache": one(async (key) => lru.get(key), "cpu"),
    bentocache: one(await bentoTarget(true), "cpu"),
    "bentocache-raw": one(await bentoTarget(false), "cpu"),
    "edgecache-get": one((key) => cache.get(key), "cpu"),
    "edgecache-getOrSet": one(
      (key) => cache.getOrSet(key, () => fail(`getOrSet loaded ${key}: not a hit`)),
      "cpu",
    ),
  };

  const dir = mkdtempSync(join(tmpdir(), "edgecache-bench-library-"));
  const bench = redisUrl ? new BenchRedis(redisUrl) : undefined;
  const prefix = `${bench?.freshPrefix() ?? `bench-${randomId()}:`}`;
  const closers: (() => Promise<unknown>)[] = [];
  const twoTier: Record<string, Target> = {};
  const tiered = async (
    name: string,
    lower: Parameters<typeof createCache>[0]["tiers"][number],
  ) => {
    const c = createCache({ tiers: [memoryStore({ maxEntries: 100 }), lower] });
    for (let i = 0; i < KEYS; i++) await c.set(keys[i]!, value(i));
    twoTier[name] = one((key) => c.get(key), "wall");
    twoTier[`${name} getMany`] = many((batch) => c.getMany(batch));
  };
  try {
    const sqlite = sqliteStore({ path: join(dir, "cache.db") });
    closers.push(() => sqlite.close());
    await tiered("memory+sqlite", sqlite);
    if (bench && redisUrl) {
      await bench.check();
      const redis = await redisStore({ url: redisUrl, prefix });
      closers.push(
        () => redis.close(),
        () => bench.drop(prefix),
      );
      await tiered("memory+redis", redis);
    }

    const all = { ...memoryTargets, ...twoTier };
    const perRound: Record<string, number[]> = {};
    for (const name of Object.keys(all)) perRound[name] = [];
    // A warm-up round each, unmeasured: JIT and caches.
    for (const target of Object.values(all)) await measure(target);
    // Each round starts one target later, so none always follows the same neighbour (a
    // target that leaves garbage behind slows whichever runs next).
    const order = Object.entries(all);
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < order.length; i++) {
        const [name, target] = order[(i + r) % order.length]!;
        perRound[name]!.push(await measure(target));
      }
    }
    const med: Record<string, number> = {};
    for (const [name, list] of Object.entries(perRound)) med[name] = median(list);
    report(perRound, med);
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

function report(perRound: Record<string, number[]>, med: Record<string, number>): void {
  const lru = med["lru-cache"]!;
  const bento = med.bentocache!;
  const bentoRaw = med["bentocache-raw"]!;
  const get = med["edgecache-get"]!;
  const ratios = {
    getVsLruCache: round2(get / lru),
    ...(med["memory+sqlite"] && {
      sqliteGetManyVsGet: round2(med["memory+sqlite getMany"]! / med["memory+sqlite"]),
    }),
    ...(med["memory+redis"] && {
      redisGetManyVsGet: round2(med["memory+redis getMany"]! / med["memory+redis"]),
    }),
    getVsBentocache: round2(get / bento),
    getVsBentocacheRaw: round2(get / bentoRaw),
    getOrSetVsGet: round2(med["edgecache-getOrSet"]! / get),
  };
  const git = gitState();
  const json = {
    date: new Date().toISOString(),
    command,
    git,
    node: process.version,
    keys: KEYS,
    rounds,
    msPerRound: ms,
    opsPerSecondMedian: Object.fromEntries(Object.entries(med).map(([k, v]) => [k, Math.round(v)])),
    opsPerSecondRounds: Object.fromEntries(
      Object.entries(perRound).map(([k, v]) => [k, v.map(Math.round)]),
    ),
    ratios,
  };
  const rows = Object.entries(med)
    .map(
      ([name, v]) => `| ${name} | ${Math.round(v).toLocaleString("en-US")} | ${round2(v / lru)} |`,
    )
    .join("\n");
  const md = `# Library: memory hit against bentocache and lru-cache

${json.date}, ${describeCode(git)}, Node ${process.version}. ${KEYS} keys of a 0.5 KB object;
${rounds} rounds of ${ms} ms per target, alternating; median gets per second: per second of
this process's CPU time for the memory targets (they never wait; on this shared machine wall
time would mostly measure the neighbours), per second of wall time for the two-tier rows
(they wait for SQLite or Redis). The two-tier rows hold 100 of the ${KEYS} keys in memory,
so most gets come from the second tier (and back-fill memory, evicting others); their
getMany rows read ${BATCH} keys per call, each counted as a get (one SQLite transaction,
one Redis MGET per call for the keys memory does not hold).

Command:

\`\`\`sh
npm install --no-save --legacy-peer-deps bentocache@1.6.1
${command}
\`\`\`

| target | gets/s (median) | / lru-cache |
| --- | ---: | ---: |
${rows}

- edgecache get / bentocache (serialize on, its default): **${ratios.getVsBentocache}**
- edgecache get / bentocache (serialize off): **${ratios.getVsBentocacheRaw}**
- edgecache get / awaited lru-cache get: **${ratios.getVsLruCache}**
- edgecache getOrSet hit / get: **${ratios.getOrSetVsGet}**
- two tiers after memory eviction, getMany / get per key: memory+sqlite **${ratios.sqliteGetManyVsGet ?? "n/a"}**, memory+redis **${ratios.redisGetManyVsGet ?? "n/a"}**

Not the same work: lru-cache and bentocache with serialize off hand every caller the one
object they hold, which a caller can change for everyone; edgecache hands out a deep-frozen
shared value (a value holding a Map, Set, Date or typed array is decoded anew per read,
a copy), and checks the write fence's state and counts the hit.
`;
  const written = writeResults(out, json, md);
  console.log(md);
  console.log(`wrote ${written}.json and .md`);
}

await main();
process.exit(0);
