/**
 * Drizzle ORM selects, cached by edgecache/drizzle against uncached, on libSQL (file URL),
 * postgres-js and node-postgres (the local PostgreSQL), all in one run:
 *
 *   npm run bench:drizzle -- --duration 3 --rounds 5 --concurrency 8
 *
 * Per database three targets run the same select (10 rows of a 50-row table) in a closed
 * loop of `concurrency` callers: `uncached` (no cache: the database answers), `reference`
 * (a Drizzle cache that returns the result it holds by reference: Drizzle's own cost of a
 * hit, the floor any cache adds to) and `edgecache` (a memory-tier hit through the
 * adapter). Rounds alternate the targets so noise lands on all of them; each target's
 * median ops/s is taken. Reported: edgecache / uncached (what caching gains) and
 * edgecache / reference (the adapter's overhead on a hit: decoding the stored result
 * anew, the engine's lookup and the counters). Writes `<out>.json` and `<out>.md`
 * (default bench/results/drizzle).
 *
 * Flags: --duration s (per round and target), --rounds n, --concurrency n, --out path,
 * --pg postgres://... (default the local `test` database).
 */

import { lt } from "drizzle-orm";
import type { Cache } from "drizzle-orm/cache/core";
import { drizzleCache, withTransactions } from "../src/drizzle/index.ts";
import { memoryStore } from "../src/stores/memory.ts";
import {
  type AnyDb,
  type Harness,
  libsqlHarness,
  nodePgHarness,
  postgresJsHarness,
} from "../test/drizzle/drivers.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { closedLoop, median, round2, round3, thousands } from "./lib/rounds.ts";
import { commandLine, fail } from "./lib/settings.ts";

const flags = parseFlags(process.argv.slice(2));
const command = commandLine("bench:drizzle");
const TARGETS = ["uncached", "reference", "edgecache"] as const;
type Target = (typeof TARGETS)[number];

/** Holds each result by reference, as a cache with no encoding at all would. */
class ReferenceCache implements Cache {
  #entries = new Map<string, unknown[]>();
  strategy(): "all" {
    return "all";
  }
  async get(key: string): Promise<unknown[] | undefined> {
    return this.#entries.get(key);
  }
  async put(key: string, response: unknown): Promise<void> {
    this.#entries.set(key, response as unknown[]);
  }
  async onMutate(): Promise<void> {
    this.#entries.clear();
  }
}

interface DriverResult {
  driver: string;
  opsPerRound: Record<Target, number[]>;
  medianOps: Record<Target, number>;
  usPerOp: Record<Target, number>;
  cachedOverUncached: number;
  edgecacheOverReference: number;
  edgecacheHits: number;
  edgecacheMisses: number;
}

const results: DriverResult[] = [];
const started = new Date().toISOString();
for (const make of [
  () => libsqlHarness(),
  () => postgresJsHarness(flags.pg),
  () => nodePgHarness(flags.pg),
]) {
  const h = make();
  try {
    results.push(await measure(h));
  } finally {
    await h.close();
  }
}

const json = {
  date: started,
  command,
  git: gitState(),
  node: process.version,
  settings: flags,
  results,
};
const rows = results.map(
  (r) =>
    `| ${r.driver} | ${thousands(r.medianOps.uncached)} | ${thousands(r.medianOps.reference)} | ${thousands(r.medianOps.edgecache)} | ${r.cachedOverUncached} | ${r.edgecacheOverReference} | ${r.usPerOp.edgecache} (${r.usPerOp.reference}) |`,
);
const markdown = `# Drizzle selects: edgecache/drizzle against uncached

${started}, ${describeCode(json.git)}. Node ${process.version}. ${flags.rounds} rounds of ${flags.duration} s per target, alternating (uncached, reference, edgecache, ...), ${flags.concurrency} concurrent callers; the select reads 10 rows of 50.

| driver | uncached ops/s | reference cache ops/s | edgecache hit ops/s | edgecache / uncached | edgecache / reference | µs per hit, edgecache (reference) |
| --- | --- | --- | --- | --- | --- | --- |
${rows.join("\n")}

"reference" is a Drizzle cache holding each result by reference (no encoding, no tiers):
Drizzle's own cost of a hit. edgecache / reference is the share of that floor the adapter
keeps; the rest is the adapter's overhead on a hit (decoding the stored result anew, so no
caller can change another's rows, the engine's lookup and its counters).

Command:

\`\`\`sh
${command}
\`\`\`
`;
const out = writeResults(flags.out, json, markdown);
console.log(markdown);
console.log(`wrote ${out}.json and ${out}.md`);

async function measure(h: Harness): Promise<DriverResult> {
  await h.reset();
  const values = Array.from(
    { length: 49 },
    (_, i) => `(${i + 2}, 'user ${i + 2}', null, null, ${i})`,
  );
  await h.exec(
    `insert into ${h.dialect === "pg" ? schemaOf(h) : ""}users (id, name, at, big, count) values ${values.join(", ")}`,
  );
  const edgecache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
  const dbs: Record<Target, AnyDb> = {
    uncached: h.db(),
    reference: h.db(new ReferenceCache()),
    edgecache: withTransactions(h.db(edgecache)),
  };
  const select = (db: AnyDb) => db.select().from(h.users).where(lt(h.users.id, 11));
  const expected = JSON.stringify(await select(dbs.uncached), jsonSafe);
  for (const t of TARGETS) {
    const got = JSON.stringify(await select(dbs[t]), jsonSafe);
    if (got !== expected) fail(`${h.name} ${t}: another result than the database's`);
  }
  const opsPerRound = { uncached: [], reference: [], edgecache: [] } as Record<Target, number[]>;
  // Warm-up (JIT, connections), not recorded.
  for (const t of TARGETS)
    await closedLoop(() => select(dbs[t]), Math.min(1, flags.duration), flags.concurrency);
  for (let round = 0; round < flags.rounds; round++) {
    for (const t of TARGETS) {
      opsPerRound[t].push(
        await closedLoop(() => select(dbs[t]), flags.duration, flags.concurrency),
      );
    }
  }
  const medianOps = {} as Record<Target, number>;
  const usPerOp = {} as Record<Target, number>;
  for (const t of TARGETS) {
    medianOps[t] = median(opsPerRound[t]);
    usPerOp[t] = round2(1e6 / medianOps[t]);
  }
  const stats = edgecache.getStats();
  console.log(`${h.name}: ${JSON.stringify(medianOps)}`);
  return {
    driver: h.name,
    opsPerRound,
    medianOps,
    usPerOp,
    cachedOverUncached: round3(medianOps.edgecache / medianOps.uncached),
    edgecacheOverReference: round3(medianOps.edgecache / medianOps.reference),
    edgecacheHits: stats.hits,
    edgecacheMisses: stats.misses,
  };
}

function schemaOf(h: Harness): string {
  return `${h.users[Symbol.for("drizzle:Schema")]}.`;
}

function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? `${value}n` : value;
}

function parseFlags(argv: string[]) {
  const flags = {
    duration: 3,
    rounds: 5,
    concurrency: 8,
    out: "bench/results/drizzle",
    pg: "postgres://postgres@127.0.0.1:5432/test",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (value === undefined) fail(`${name}: expected a value`);
    if (name === "--out" || name === "--pg") flags[name.slice(2) as "out" | "pg"] = value;
    else if (name === "--duration" || name === "--rounds" || name === "--concurrency") {
      const n = Number(value);
      if (!(n > 0)) fail(`${name}: expected a positive number, got ${value}`);
      flags[name.slice(2) as "duration" | "rounds" | "concurrency"] = n;
    } else fail(`unknown flag ${name}`);
  }
  return flags;
}
