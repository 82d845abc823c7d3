/**
 * edgecache/drizzle on an application: the Conduit example (examples/conduit), a seeded
 * client against the cached app and an uncached one in another process on one SQLite
 * file, every read compared, every acknowledged write read back (examples/conduit/
 * differential/). Three setups on the same operations: no capture (every write through the
 * cached app, table-level invalidation), capture (the same), and capture with a share of
 * the writes made by the other process around the cache; and the same operations against
 * the uncached app alone, for the statements the app sends without a cache.
 *
 *   npm run bench:app                                   # 3,000 operations, 10% writes
 *   npm run bench:app -- --ops 10000 --writes 0.2 --other 0.5 --seed 7
 *   npm run bench:app -- --client frontend --out bench/results/app-frontend
 *
 * Targets (issue 45): 0 differing reads, 0 lost writes, database statements (the app's
 * and edgecache's) at most half the app's without a cache, edgecache's own at most a tenth.
 * Writes `<out>.json` and `<out>.md` (default bench/results/app); exits 1 if a setup with
 * capture read anything differing or lost a write.
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import {
  type DifferentialReport,
  runBaseline,
  runDifferential,
} from "../examples/conduit/differential/run.ts";
import { benchHead, describeHead, writeResults } from "./lib/results.ts";
import { commandLine, fail, positiveInt, readFlags } from "./lib/settings.ts";

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      ops: { type: "string", default: "3000" },
      writes: { type: "string", default: "0.1" },
      other: { type: "string", default: "0.5" },
      seed: { type: "string", default: "45" },
      client: { type: "string", default: "uniform" },
      out: { type: "string", default: "bench/results/app" },
    },
  });
  const fraction = (name: string, value: string) => {
    const x = Number(value);
    if (!(x >= 0 && x <= 1)) fail(`--${name}: expected a fraction from 0 to 1, got ${value}`);
    return x;
  };
  if (values.client !== "uniform" && values.client !== "frontend") {
    fail(`--client: expected uniform or frontend, got ${values.client}`);
  }
  return {
    client: values.client as "uniform" | "frontend",
    ops: positiveInt("ops", values.ops),
    writes: fraction("writes", values.writes),
    other: fraction("other", values.other),
    seed: positiveInt("seed", values.seed),
    out: values.out,
  };
});

interface Setup {
  name: string;
  capture: boolean;
  other: number;
}

const SETUPS: Setup[] = [
  { name: "no capture", capture: false, other: 0 },
  { name: "capture", capture: true, other: 0 },
  {
    name: `capture, ${pct(options.other)} of the writes by the other process`,
    capture: true,
    other: options.other,
  },
];

const GRANULARITIES = [
  ["row", "row"],
  ["predicate", "predicate and window"],
  ["join", "join along keys"],
  ["table", "table"],
] as const;

function pct(x: number): string {
  return `${Math.round(x * 1000) / 10}%`;
}

const command = commandLine("bench:app");
const started = Date.now();
const loadavgBefore = loadavg();
const log = (line: string) => console.log(`  ${line}`);

console.log(`no cache: ${options.ops} operations against the uncached app alone`);
const baseline = await runBaseline(options);
const runs: { setup: Setup; report: DifferentialReport }[] = [];
for (const setup of SETUPS) {
  console.log(`${setup.name}:`);
  const report = await runDifferential({
    ...options,
    capture: setup.capture,
    other: setup.other,
    log,
  });
  runs.push({ setup, report });
  console.log(`  ${summary(report)}`);
}

const head = benchHead(command, started, loadavgBefore);
const path = writeResults(options.out, { ...head, options, baseline, runs }, markdown());
console.log(`\nwrote ${path}.json and .md`);
if (runs.some(({ setup, report: r }) => setup.capture && (r.differing > 0 || r.lost.length > 0))) {
  console.error("[bench] with capture, reads differed or writes were lost; see above");
  process.exitCode = 1;
}

/** Statements of the cached setup, all told: the app's, edgecache's, the other process's writes. */
function totals(r: DifferentialReport) {
  const edgecache = r.statements.edgecacheOnAppClient + (r.statements.edgecacheOwn ?? 0);
  const total = r.statements.app + edgecache + r.statements.otherWrites;
  return {
    edgecache,
    total,
    ratio: total / baseline.statements,
    edgecacheRatio: edgecache / baseline.statements,
  };
}

/** The share of the shapes' lookups at row or predicate level. */
function rowOrPredicate(r: DifferentialReport): number {
  const all = r.shapes.reduce((n, s) => n + lookups(s), 0);
  const fine = r.shapes
    .filter((s) => s.granularity === "row" || s.granularity === "predicate")
    .reduce((n, s) => n + lookups(s), 0);
  return all === 0 ? 0 : fine / all;
}

function summary(r: DifferentialReport): string {
  const t = totals(r);
  return `${r.reads} reads (${pct(rowOrPredicate(r))} of lookups at row or predicate level), ${r.differing} differing, ${r.transient} transient, ${r.lost.length} lost, hit rate ${fmt(r.hitRate)}, statements ${t.total} (${t.ratio.toFixed(2)} of no cache), ${Math.round(r.seconds)} s`;
}

function fmt(x: number | undefined): string {
  return x === undefined ? "n/a" : x.toFixed(3);
}

function table(r: DifferentialReport): string {
  const t = totals(r);
  const own = r.statements.edgecacheOwn;
  const needless = r.missClasses.reduce((n, [, , same]) => n + same, 0);
  const rows: [string, string][] = [
    ["reads compared", String(r.reads)],
    [
      "differing reads",
      `${r.differing}${
        r.differing
          ? ` (${Object.entries(r.differingByKind)
              .map(([k, n]) => `${k} ${n}`)
              .join(", ")})`
          : ""
      }`,
    ],
    ["transient reads (agreed within 500 ms of a write by the other process)", String(r.transient)],
    [
      "writes: through the cached app / by the other process / failed",
      `${r.writes.cached} / ${r.writes.other} / ${r.writes.failed.length}`,
    ],
    ["lost writes (missing from the file at the end)", String(r.lost.length)],
    ["acknowledged writes the cached app did not show at the end", String(r.unseen.length)],
    ["hit rate", `${fmt(r.hitRate)} (${r.hits} hits, ${r.misses} misses)`],
    [
      "results kept by group patches (of them by another viewer's statement; told by the write's rows, with no statement; written rows told outside them by a shared read of their `IN (select ...)` table; counts moved by the rows they gained or lost; windows that lost deleted rows and took in those past their end) / their statements / given up; patches overtaken by the next write's record and brought through it; lookups answered from a held result (`getStats().groupPatches`)",
      r.groupPatches
        ? `${r.groupPatches.patched} (${r.groupPatches.shared}; ${r.groupPatches.told ?? 0}; ${r.groupPatches.outside ?? 0}; ${r.groupPatches.counted ?? 0}; ${r.groupPatches.slid ?? 0}) / ${r.groupPatches.statements} / ${r.groupPatches.dropped}; ${r.groupPatches.followed ?? 0}; ${r.groupPatches.answered}`
        : "-",
    ],
    ["lookups at row or predicate level (`getStats().shapes`; below)", pct(rowOrPredicate(r))],
    ["app statements (cached app)", String(r.statements.app)],
    ["app statements for the other process's writes", String(r.statements.otherWrites)],
    ["edgecache statements on the app's connection", String(r.statements.edgecacheOnAppClient)],
    [
      "edgecache statements on its own connection (`getStats().capture.statements`)",
      own === undefined ? "n/a" : String(own),
    ],
    [
      "all statements / no cache",
      `${t.total} / ${baseline.statements} = ${t.ratio.toFixed(2)} (target ≤ 0.5)`,
    ],
    [
      "all statements / the floor a perfect cache could reach",
      `${t.total} / ${baseline.floor} = ${(t.total / baseline.floor).toFixed(2)}`,
    ],
    [
      "all statements / no cache, had no invalidation been needless (each miss below whose result came back unchanged is one select fewer)",
      `${t.total - needless} / ${baseline.statements} = ${((t.total - needless) / baseline.statements).toFixed(2)}`,
    ],
    [
      "all statements / the floor, had no invalidation been needless (what reloading only the results a write changed would reach; below it, a changed result is kept without a statement)",
      `${t.total - needless} / ${baseline.floor} = ${((t.total - needless) / baseline.floor).toFixed(2)}`,
    ],
    [
      "edgecache's / no cache",
      `${t.edgecache} / ${baseline.statements} = ${t.edgecacheRatio.toFixed(2)} (target ≤ 0.1)`,
    ],
    [
      "writes invalidate by",
      `${r.writesMode}${r.captureTables.length ? ` (captured: ${r.captureTables.join(", ")})` : ""}`,
    ],
  ];
  return ["| | |", "| --- | --- |", ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join("\n");
}

/** Why lookups missed (examples/conduit/differential/misses.ts), and selects sent without one. */
function misses(r: DifferentialReport): string {
  const total = r.missClasses.reduce((n, [, k]) => n + k, 0);
  const rows = r.missClasses.map(
    ([what, n, same]) =>
      `| ${what} | ${n} | ${pct(n / total)} | ${what.startsWith("invalidated") ? same : ""} |`,
  );
  return [
    `\nWhy the cache's lookups missed (${total} misses; examples/conduit/differential/misses.ts), and ${r.readsWithoutLookup} selects sent without a lookup. For an invalidated class, "unchanged" counts the misses whose fresh result equalled the one removed (invalidations an exact planner would not have made):\n`,
    "| miss | count | share | unchanged |",
    "| --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}

/** A shape's lookups: the reads it carried. */
function lookups(s: DifferentialReport["shapes"][number]): number {
  return s.hits + s.misses;
}

/**
 * The app's reads by granularity, from the adapter's own stats per query shape
 * (`getStats().shapes`): per granularity the share of lookups and of stored results, then
 * each shape with its reasons, the most read first.
 */
function granularity(r: DifferentialReport): string {
  const shapes = [...r.shapes].sort((a, b) => lookups(b) - lookups(a) || b.stored - a.stored);
  const read = shapes.reduce((n, s) => n + lookups(s), 0);
  const stored = shapes.reduce((n, s) => n + s.stored, 0);
  const rows = GRANULARITIES.map(([g, label]) => {
    const of = shapes.filter((s) => s.granularity === g);
    const n = of.reduce((k, s) => k + lookups(s), 0);
    const exact = of.filter((s) => s.reasons.length === 0).reduce((k, s) => k + lookups(s), 0);
    const st = of.reduce((k, s) => k + s.stored, 0);
    return `| ${label} | ${of.length} | ${n} (${pct(n / read)}) | ${exact} (${pct(exact / read)}) | ${st} (${pct(st / stored)}) |`;
  });
  const perShape = shapes.map((s) => {
    const again = r.bySql[s.sql];
    const repeats = again ? `${again.repeatHits} / ${again.repeats}` : "-";
    return `| ${lookups(s)} | ${s.hits} | ${repeats} | ${s.stored} | ${s.granularity} | ${s.reasons.join(", ") || "exact"} | \`${abbreviated(s.sql)}\` |`;
  });
  const table = shapes.filter((s) => s.granularity === "table");
  const tableLine =
    table.length === 0
      ? "No shape is followed at table level."
      : `At table level: ${table.map((s) => `\`${abbreviated(s.sql)}\` (${s.reasons.join(", ")}; ${lookups(s)} lookups)`).join("; ")}.`;
  return [
    `\nThe app's reads by granularity (\`getStats().shapes\`: ${shapes.length} query shapes, ${read} of the cache's ${r.hits + r.misses} lookups; the rest are of selects never stored). A shape's lookups are its reads; "exact" ones are followed at their granularity without a widening reason:\n`,
    "| granularity | shapes | lookups | of them exact | results stored |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
    "",
    tableLine,
    "",
    "Each shape, the most read first (its select list shortened). Hits of repeats: of the lookups that were not the first of their SQL and parameters, how many hit (issue 71's target: 80% for the main article list and the single article):",
    "",
    "| lookups | hits | hits of repeats | stored | granularity | reasons | query |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...perShape,
    "",
    ...topMisses(r, shapes.slice(0, 6)),
  ].join("\n");
}

/** Why the most read shapes missed: their miss classes, the largest first. */
function topMisses(r: DifferentialReport, shapes: DifferentialReport["shapes"]): string[] {
  const lines = shapes.flatMap((s) => {
    const classes = Object.entries(r.bySql[s.sql]?.misses ?? {}).sort((a, b) => b[1] - a[1]);
    if (classes.length === 0) return [];
    const list = classes.map(([what, n]) => `${what} ${n}`).join("; ");
    return [`- \`${abbreviated(s.sql)}\`: ${list}`];
  });
  return lines.length === 0 ? [] : ["Why the most read shapes missed:", "", ...lines];
}

/** A select with its select list (up to its top-level FROM) shortened to `…`. */
function abbreviated(sql: string): string {
  let depth = 0;
  let quote: string | undefined;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (depth === 0 && sql.startsWith(" from ", i) && /^select /i.test(sql)) {
      const list = sql.slice(7, i);
      // Its head and tail: shapes that differ in their last columns (per-viewer flags) stay apart.
      const short = list.length > 90 ? `${list.slice(0, 25)} … ${list.slice(-60)}` : list;
      return `select ${short}${sql.slice(i)}`.replaceAll("|", "\\|");
    }
  }
  return sql.replaceAll("|", "\\|");
}

function samples(r: DifferentialReport): string {
  if (r.samples.length === 0) return "";
  const lines = r.samples.map(
    (s) =>
      `- #${s.op} \`${s.route}\` (user ${s.user ?? "anonymous"}) after ${s.lastWrite}${s.waited ? ", asked again for 500 ms" : ""}: ${s.difference}`,
  );
  return `\nFirst differing reads:\n\n${lines.join("\n")}\n`;
}

function markdown(): string {
  const sections = runs.map(
    ({ setup, report }) =>
      `## ${setup.name}\n\n${table(report)}\n${granularity(report)}\n${misses(report)}\n${samples(report)}`,
  );
  return `# edgecache/drizzle on the Conduit example

${describeHead(head)}

Command:

\`\`\`sh
${command}
\`\`\`

${options.ops} operations (seed ${options.seed}), ${pct(options.writes)} of them writes, reads ${options.client === "frontend" ? "as a frontend makes them (the first pages of the home list and feed, the tag cloud and popular tags far more often; examples/conduit/differential/ops.ts)" : "spread over every list, filter and page"}, on the Conduit example's seeded database (40 users, 200 articles, 30 tags; examples/conduit/seed.ts). Reads go to the cached app (in this process, set up as docs/guides/drizzle.md's quick start) and to the uncached app (examples/conduit/server.ts in another process) on the same file, and are compared; a read that differs within a second of a write by the other process is asked again for up to 500 ms (capture's lag) and counted transient if it then agrees. At the end every acknowledged write is read back through the cached app, and in the file on a fresh connection once both apps are closed. Statements are counted on the app's libSQL client (examples/conduit/counting.ts): those on edgecache's tables or SQLite's catalog as edgecache's.

No cache: the same operations against the uncached app alone sent ${baseline.statements} statements (${baseline.failedWrites} writes failed). Of those, ${baseline.floor} (${pct(baseline.floor / baseline.statements)}) are every write and each distinct read (its SQL and arguments) once: what a perfect cache would still send before any write changed a read (the floor; the client's reads are spread over many users, filters and pages, so most come once).

${sections.join("\n")}`;
}
