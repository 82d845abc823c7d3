/**
 * The workload benchmark's data and request sequences through Drizzle, on libSQL (a file),
 * postgres.js (a schema of its own in the local PostgreSQL) and D1 (inside workerd, the
 * application a Worker there: bench/drizzle-exact/d1.ts), with every other write made
 * around the ORM (straight SQL on another connection, or D1's binding): hit rate, entries
 * kept per write, stale reads and database statements per request of edgecache/drizzle
 * following change capture, against its table-level mode and an Upstash-style Drizzle cache
 * (bench/drizzle-exact/table-keyed-cache.ts), in the same run on the same sequences; on D1,
 * capture's lag too.
 *
 *   npm run bench:drizzle-exact              # 2,000 users, 10,000 orders, 10,000 requests
 *   npm run bench:drizzle-exact -- --quick   # 2,000 requests
 *   npm run bench:drizzle-exact -- --drivers d1 --out bench/results/drizzle-exact-d1
 *   npm run bench:orm-exact                  # Drizzle, Kysely and Prisma (--orms)
 *
 * Kysely (edgecache/kysely) and Prisma (edgecache/prisma) run the same reads and writes on
 * a SQLite file through better-sqlite3 and on PostgreSQL through node-postgres
 * (bench/drizzle-exact/orms.ts), and on D1 inside workerd (kysely-d1's dialect and
 * @prisma/adapter-d1: bench/drizzle-exact/d1-kysely-entry.ts, d1-prisma-entry.ts), in the
 * capture and table-level modes.
 *
 * The default run takes all three drivers: 5 to 6 minutes on 2 shared cores, D1 more than
 * half of it (each operation is a request to the Worker). bench:orm-exact runs Kysely and
 * Prisma on D1 too: about 12 minutes more (a minute and a half a run there).
 *
 * Writes `<out>.json` and `<out>.md` (default bench/results/drizzle-exact). Exits 1 if
 * edgecache following capture read anything stale.
 *
 * Flags: --users n, --orders n, --requests n, --connections n, --ratios 0.05,0.1, --seed n,
 * --orms drizzle,kysely,prisma (drizzle), --drivers libsql,postgres-js,d1,better-sqlite3,pg
 * (each ORM runs on those of its own), --modes capture,tables,table-keyed, --around-every n,
 * --pg-text-order collate-c|plain (PostgreSQL reads order text `collate "C"` or plainly),
 * --pg postgres://..., --out path, --quick.
 */
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { DRIVERS, type Driver } from "./drizzle-exact/databases.ts";
import {
  type ExactRecord,
  MODES,
  type Mode,
  ORM_DRIVERS,
  ORMS,
  type Orm,
  runDrizzleExact,
} from "./drizzle-exact/run.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { commandLine, fail, positiveInt, readFlags } from "./lib/settings.ts";
import { readSmallWorkloadFlags, workloadFlags } from "./workload/flags.ts";
import { pctLabel } from "./workload/workload.ts";

const TARGETS = { hitRateAt5: 0.95, hitRateAt10: 0.9, kept: 0.99 };

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      ...workloadFlags({ ratios: "0.05,0.1", out: "bench/results/drizzle-exact" }),
      orms: { type: "string", default: "drizzle" },
      drivers: { type: "string", default: DRIVERS.join(",") },
      modes: { type: "string", default: MODES.join(",") },
      "around-every": { type: "string", default: "2" },
      "pg-text-order": { type: "string", default: "collate-c" },
      pg: { type: "string", default: "postgres://postgres@127.0.0.1:5432/test" },
    },
  });
  const some = <T extends string>(name: string, given: string, known: readonly T[]): T[] =>
    given.split(",").map((x) => {
      if (!known.includes(x as T))
        fail(`--${name}: expected some of ${known.join(", ")}, got ${x}`);
      return x as T;
    });
  const order = values["pg-text-order"];
  if (order !== "collate-c" && order !== "plain") {
    fail(`--pg-text-order: expected collate-c or plain, got ${order}`);
  }
  return {
    pgCollateC: order === "collate-c",
    ...readSmallWorkloadFlags(values, { quick: "2000", full: "10000" }),
    orms: some<Orm>("orms", values.orms, ORMS),
    drivers: some<Driver>("drivers", values.drivers, DRIVERS),
    modes: some<Mode>("modes", values.modes, MODES),
    aroundEvery: positiveInt("around-every", values["around-every"]),
    pg: values.pg,
    out: values.out,
    log: (line: string) => console.log(line),
  };
});

const NAMES: Record<Mode, string> = {
  capture: "edgecache, capture",
  tables: "edgecache, table level",
  "table-keyed": "Upstash-style",
};

/** Where each driver's database is. */
const WHERE: Record<Driver, string> = {
  libsql: "libSQL (a file)",
  "postgres-js": "postgres.js (a schema of its own in the local PostgreSQL)",
  d1: "D1 (a local database inside workerd, the application a Worker there)",
  "better-sqlite3": "a SQLite file through better-sqlite3",
  pg: "node-postgres (a schema of its own in the local PostgreSQL)",
};

/** How each ORM's edgecache entry is set up in the capture and table-level modes. */
const SETUPS: Record<Orm, string> = {
  drizzle: "",
  kysely:
    "- **Kysely**: `new Kysely({ dialect: kyselyCache(new SqliteDialect({ database }) or new PostgresDialect({ pool }), { client, tiers: [memoryStore()], capture }) })`, selecting the tables' columns by name; with capture installed, or `capture: false` for table level (bench/drizzle-exact/orms.ts).",
  prisma:
    "- **Prisma**: `new PrismaClient({ adapter: prismaCache(new PrismaBetterSqlite3({ url }) or new PrismaPg(..., { schema }), { tiers: [memoryStore()], capture }) })`, items by `findFirst` (Prisma batches concurrent `findUnique`s into one statement, which the bench would count for one request), lists by `findMany` (`startsWith` for a prefix), writes by `updateMany`, `create` and `deleteMany`; PostgreSQL's text orders are plain, since Prisma has no `collate`.",
};

/** How the application runs on D1, with each ORM's setup there (`orms`: those measured). */
function d1Setup(orms: readonly Orm[]): string {
  const setups: Record<Orm, string> = {
    drizzle:
      'Drizzle as docs/guides/drizzle.md\'s "On Workers" does (d1-entry.ts): `withTransactions(drizzle(env.DB, { cache }))` with `drizzleCache({ tiers: [memoryStore()], log, strategy: "all" })`',
    kysely:
      "Kysely as docs/guides/kysely.md's \"D1\" does (d1-kysely-entry.ts): `new Kysely({ dialect: kyselyCache(new D1Dialect({ database: env.DB }), { client: env.DB, tiers: [memoryStore()], log, capture }) })`, kysely-d1's dialect",
    prisma:
      'Prisma as docs/guides/prisma.md\'s "D1" does (d1-prisma-entry.ts): `new PrismaClient({ adapter: prismaCache(new PrismaD1(env.DB), { tiers: [memoryStore()], log, capture }) })`, the client generated for the workerd runtime (bench/drizzle-exact/prisma/schema.d1.prisma) and its query compiler a compiled WebAssembly module beside the script',
  };
  return `On D1 the application is a Worker inside workerd (miniflare, offline; bench/drizzle-exact/d1-worker.ts and each ORM's entry), ${listed(orms.map((o) => setups[o]))}; \`log\` is \`durableChangeLog({ namespace: env.CHANGE_LOG })\`, \`log.sync()\` runs before each request, \`ctx.waitUntil(cache.engine.drain())\` after it (the cache's background reloads run in the request that started them and would end with it), and under capture \`installD1Capture(env.DB)\`: the change log's Durable Object drains D1's change table on its alarm (the default 1 s) and at once when a write through the ORM or \`catchUp()\` asks. This process sends the Worker one request per operation, running the same queries as elsewhere (bench/drizzle-exact/queries.ts, orm-queries.ts); the oracle's fresh reads are uncached queries of the same ORM in the Worker. A write around the ORM is \`env.DB.prepare(sql).bind(...).run()\` in the Worker, then \`cache.catchUp()\`. The table-level mode uses the same log, the Upstash-style model none. D1's captured changes reach the isolate through the object's log, which orders the records it drains, so a cached result a write touches is patched in place as on libSQL where the patch can tell (Prisma's D1 adapter types each result's columns by its values: a patched result is typed again as it would type it), else removed (and reloaded if hot).`;
}

const command = commandLine("bench:drizzle-exact");
const started = Date.now();
const records = await runDrizzleExact(options);
const seconds = Math.round((Date.now() - started) / 1000);
const git = gitState();
const json = {
  date: new Date(started).toISOString(),
  command,
  git,
  node: process.version,
  cpus: cpus().length,
  seconds,
  options: { ...options, log: undefined },
  records,
};
const path = writeResults(options.out, json, markdown(records));
console.log(`\n${table(records)}\n\nwrote ${path}.json and .md in ${seconds} s`);
for (const r of records.filter((r) => r.staleSamples.length > 0).slice(0, 6)) {
  console.log(
    `stale under ${r.orm} on ${r.driver} ${r.mode} at ${pctLabel(r.writeRatio)}:`,
    JSON.stringify(r.staleSamples[0]),
  );
}
if (records.some((r) => r.mode === "capture" && r.staleReads > 0)) {
  console.error("[bench] edgecache following capture read stale; see above");
  process.exitCode = 1;
}

function listed(items: string[]): string {
  return items.length < 2
    ? (items[0] ?? "")
    : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

/** D1 capture's lag as the Durable Object measures it, per run under capture. */
function d1Lag(records: ExactRecord[]): string {
  const mine = records.filter((r) => r.driver === "d1" && r.mode === "capture");
  if (mine.length === 0) return "";
  const lines = mine.map(
    (r) =>
      `- ${pctLabel(r.writeRatio)} writes: p50 ${r.captureLagP50 ?? "-"} ms, p99 ${r.captureLagP99 ?? "-"} ms`,
  );
  return `
D1 capture's lag (\`getStats().capture\`: from a change's record by D1's trigger to its record in the Durable Object's log, as the object measures it). Every write here is followed by a drain on demand (a Drizzle mutation asks for one, and a write around the ORM is acknowledged after \`catchUp()\`), so this is the lag of a drain that was asked for; a write nobody asks about waits for the alarm: \`npx tsx bench/d1-capture.ts\` measures that (bench/results/d1-capture.md).

${lines.join("\n")}
`;
}

function pct(x: number, digits = 1): string {
  return `${(x * 100).toFixed(digits)}%`;
}

function table(records: ExactRecord[]): string {
  const rows = records.map(
    (r) =>
      `| ${r.orm} | ${r.driver} | ${pctLabel(r.writeRatio)} | ${NAMES[r.mode]} | ${pct(r.hitRate)} | ${pct(r.entriesKeptPerWrite, 2)} (${r.removedPerWrite} of ${r.entriesMean}) | ${r.staleReads} of ${r.reads} | ${r.dbQueriesPerRequest.toFixed(3)} + ${r.captureQueriesPerRequest.toFixed(3)} | ${r.writes} (${r.aroundWrites} around) | ${r.errors} |`,
  );
  return [
    "| ORM | driver | writes | cache | hit rate | entries kept per write (removed of cached) | stale reads | DB statements / request (+ capture's) | writes | errors |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}

function registrations(records: ExactRecord[]): string[] {
  return records
    .filter((r) => r.registrations)
    .map((r) => {
      const g = r.registrations!;
      const reasons = Object.entries(g.reasons)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
      const misses = Object.entries(r.missesByKind)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
      return `- ${r.orm} on ${r.driver}, ${pctLabel(r.writeRatio)}, ${NAMES[r.mode]}: ${g.exact} exact, ${g.widened} widened, ${g.table} at table level${reasons ? ` (${reasons})` : ""}${r.captureLagP99 !== undefined ? `; capture lag p99 ${r.captureLagP99} ms` : ""}; ${r.fenced ?? 0} results fenced; ${r.patched ?? 0} patched in place; misses by read: ${misses}`;
    });
}

function targetLines(records: ExactRecord[]): string[] {
  const runs = options.orms.flatMap((orm) =>
    options.drivers.filter((d) => ORM_DRIVERS[orm].includes(d)).map((driver) => ({ orm, driver })),
  );
  return runs.map(({ orm, driver }) => {
    const mine = records.filter(
      (r) => r.orm === orm && r.driver === driver && r.mode === "capture",
    );
    const stale = mine.reduce((n, r) => n + r.staleReads, 0);
    const parts = [`stale reads ${stale} (${stale === 0 ? "met" : "MISSED"})`];
    const check = (name: string, value: number, target: number) =>
      `${name} ${pct(value, 2)} (${value >= target ? "met" : "MISSED"})`;
    const five = mine.find((r) => r.writeRatio === 0.05);
    const ten = mine.find((r) => r.writeRatio === 0.1);
    if (five) parts.push(check("hit rate at 5%", five.hitRate, TARGETS.hitRateAt5));
    if (ten) parts.push(check("hit rate at 10%", ten.hitRate, TARGETS.hitRateAt10));
    for (const r of mine) {
      parts.push(
        check(`kept per write at ${pctLabel(r.writeRatio)}`, r.entriesKeptPerWrite, TARGETS.kept),
      );
    }
    return `- **${orm} on ${driver}**: ${parts.join("; ")}.`;
  });
}

function markdown(records: ExactRecord[]): string {
  const orms = options.orms.map(
    (o) => ({ drizzle: "Drizzle", kysely: "Kysely", prisma: "Prisma" })[o],
  );
  const used = options.drivers.filter((d) => options.orms.some((o) => ORM_DRIVERS[o].includes(d)));
  const others = options.orms.filter((o) => o !== "drizzle").map((o) => SETUPS[o]);
  return `# ${listed(orms)}, exact: the workload through the ORM, with writes around it

${new Date(started).toISOString()}, ${describeCode(git)}. Node ${process.version}, ${cpus().length} CPUs shared with other work. ${seconds} s in all.

bench:workload's data and request sequences (${options.users.toLocaleString("en-US")} users, ${options.orders.toLocaleString("en-US")} orders, ${options.requests.toLocaleString("en-US")} requests per run, seed ${options.seed}) made as ${listed(orms)} queries by ${options.connections} concurrent callers, on ${listed(used.map((d) => WHERE[d]))}. One write in ${options.aroundEvery} (updates, inserts and deletes alike) is made around the ORM: straight SQL on another connection. Each cache is warmed with every read of its sequence once; each run starts from a fresh copy of the data.

- **edgecache, capture**: \`withTransactions(drizzle(client, { cache: drizzleCache({ tiers: [memoryStore()], strategy: "all" }) }))\` with capture installed (\`npx edgecache capture install\`): reads register their rows, predicates and windows from their SQL; every change, through Drizzle or around it, reaches the planner with its rows.
- **edgecache, table level**: the same with \`withTransactions(db, { capture: false })\` and no capture: a mutation through Drizzle empties its tables.
- **Upstash-style**: a model of drizzle-orm's Upstash cache in memory (bench/drizzle-exact/table-keyed-cache.ts, a subclass of drizzle-orm's \`Cache\`): results keyed by the query's hash, a mutation through Drizzle deletes every cached query of its tables; no TTL (its best case), no write fence.
${others.length > 0 ? `\nThe other ORMs' applications make the same reads and writes, in the capture and table-level modes:\n\n${others.join("\n")}\n` : ""}
${options.drivers.includes("postgres-js") ? `${options.pgCollateC ? 'On PostgreSQL, reads order text columns `collate "C"`, as docs/guides/drizzle.md advises (PostgreSQL orders text by its collation; the planner follows a text order by code point only): `--pg-text-order plain` measures the plain form.' : "On PostgreSQL, reads order text columns plainly (`--pg-text-order plain`): the planner cannot follow such an order, so those windows are dropped (widened `collation`)."}\n\n` : ""}
${options.drivers.includes("d1") ? `${d1Setup(options.orms.filter((o) => ORM_DRIVERS[o].includes("d1")))}\n\n` : ""}The two baselines never hear of a write made around the ORM, nor of the orders a user's delete cascades to: their stale reads are what that costs, not a fault of the bench.

${table(records)}

- **hit rate**: reads that sent no statement to the database (the join views are two selects: the user or users, then their orders by \`userId\`).
- **entries kept per write**: 1 - entries removed during the sequence / entries cached at each write's start, summed over writes.
- **stale reads**: reads the workload's oracle (bench/workload/oracle.ts) found stale: a row older than a write acknowledged before the read began, a deleted row, a 404 for a row that existed, a list missing a row it should show. A write through Drizzle is acknowledged when it returns, one around it when committed and, under capture, once \`cache.catchUp()\` says capture has applied it.
- **DB statements / request**: statements the application sent during the sequence (selects on a miss, writes through Drizzle, and the writes around the ORM), per request; **+ capture's**: capture's own statements on the application's client (SQLite's \`PRAGMA data_version\` that tells it of a commit, reading and deleting its change table, reading the catalog every second): all of them on libSQL; on postgres.js only the catalog's, since it drains its change table on a connection of its own; on D1 only the catalog's too, since the Durable Object drains the change table through a binding of its own (not counted).

How edgecache registered the selects (warming and sequence; \`getStats().registrations\`), and which reads missed. Following capture (where this process consumes the change table, SQLite and PostgreSQL, and on D1, where the log's object orders the records), edgecache patches a cached result of every column in place after a write, with the data API's rules (src/core/deps/patch.ts, src/database/analysis/patch.ts; \`getStats().patched\`); where a patch cannot tell (a row leaving a full page whose next page is not cached, a value whose driver form it cannot make exactly: a \`Date\` of a timestamp finer than milliseconds, a number Prisma's SQLite adapters give as text (better-sqlite3's as ISO text, D1's as its decimal text beside other text), a Prisma pg DateTime outside a UTC session) it removes the result and, with capture, reloads it in the background if it was read twice since stored (the engine's rehydration); otherwise the next read runs the query: a page that an insert shifts (every order insert reaches the first page of its status; a user's insert or new lastName shifts the sorted pages after it) and an item whose row changed miss once each unless reloaded first.

${registrations(records).join("\n")}
${d1Lag(records)}
Targets (issue #28) for edgecache following capture: 0 stale; hit rate ≥ ${pct(TARGETS.hitRateAt5, 0)} at 5% writes and ≥ ${pct(TARGETS.hitRateAt10, 0)} at 10%; entries kept per write ≥ ${pct(TARGETS.kept, 0)}.

${targetLines(records).join("\n")}

Command:

\`\`\`sh
${command}
\`\`\`
`;
}
