/**
 * What following change capture costs a Drizzle mutation, and the lag of a write made around
 * Drizzle, on libSQL (file URL) and postgres-js (the local PostgreSQL), in one run:
 *
 *   npx tsx bench/drizzle-capture.ts --duration 2 --rounds 5 --concurrency 4
 *
 * Per database, capture installed, two Drizzle databases on edgecache/drizzle run the same
 * update by primary key in a closed loop of `concurrency` callers: `tables`
 * (`withTransactions(db, { capture: false })`: the mutation empties its table) and
 * `capture` (the mutation returns once capture has applied its rows). Rounds alternate the
 * two; each one's median ops/s is taken, and capture / tables is the cost of waiting for
 * capture. Then, with capture on: `checks` times an update through Drizzle followed by a
 * cached read compared with a fresh query (stale reads, expected 0), and `around` writes
 * made on another connection 20 ms apart, whose capture lag (the database's record to
 * applied) the adapter reports. Writes `<out>.json` and `<out>.md` (default
 * bench/results/drizzle-capture).
 *
 * Flags: --duration s, --rounds n, --concurrency n, --checks n, --around n, --out path,
 * --pg postgres://...
 */

import { cpus, loadavg } from "node:os";
import { eq } from "drizzle-orm";
import { drizzleCache, withTransactions } from "../src/drizzle/index.ts";
import { memoryStore } from "../src/stores/memory.ts";
import {
  type AnyDb,
  type Harness,
  libsqlHarness,
  postgresJsHarness,
} from "../test/drizzle/drivers.ts";
import { usersName } from "../test/drizzle/suite.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { closedLoop, median, round2, round3, thousands } from "./lib/rounds.ts";
import { commandLine, fail } from "./lib/settings.ts";

const flags = parseFlags(process.argv.slice(2));
const command = commandLine("bench:drizzle-capture");
const MODES = ["tables", "capture"] as const;
type Mode = (typeof MODES)[number];
const USERS = 50;

interface DriverResult {
  driver: string;
  opsPerRound: Record<Mode, number[]>;
  medianOps: Record<Mode, number>;
  captureOverTables: number;
  checks: number;
  stale: number;
  around: number;
  aroundLagP50?: number;
  aroundLagP99?: number;
}

const results: DriverResult[] = [];
const started = new Date().toISOString();
const loadBefore = loadavg().map(round2);
for (const make of [() => libsqlHarness(), () => postgresJsHarness(flags.pg)]) {
  const h = make();
  try {
    results.push(await measure(h));
  } finally {
    await h.close();
  }
}

const machine = { cpus: cpus().length, loadBefore, loadAfter: loadavg().map(round2) };
const json = {
  date: started,
  command,
  git: gitState(),
  node: process.version,
  machine,
  flags,
  results,
};
const rows = results.map(
  (r) =>
    `| ${r.driver} | ${thousands(r.medianOps.tables)} | ${thousands(r.medianOps.capture)} | ${r.captureOverTables} | ${r.stale} of ${r.checks} | ${r.aroundLagP50 ?? "-"} / ${r.aroundLagP99 ?? "-"} (${r.around} writes) |`,
);
const markdown = `# Drizzle with change capture: the cost of a mutation, and the lag

${started}, ${describeCode(json.git)}. Node ${process.version}, ${machine.cpus} CPUs shared with other work (load average ${machine.loadBefore[0]} before, ${machine.loadAfter[0]} after). ${flags.rounds} rounds of ${flags.duration} s per mode, alternating (tables, capture, ...), ${flags.concurrency} concurrent callers updating users by primary key (${USERS} rows), capture installed.

| driver | tables: updates/s | capture: updates/s | capture / tables | stale reads after an update | lag of a write around Drizzle, p50 / p99 ms |
| --- | --- | --- | --- | --- | --- |
${rows.join("\n")}

"tables": \`withTransactions(db, { capture: false })\`, a mutation empties its table once it has
finished (capture's triggers installed, nobody following them). "capture": the mutation
returns once capture has applied its rows (one more read of the change table and the plan;
its delete follows), and empties nothing else. A stale read is a
cached read, right after an acknowledged update through Drizzle, that differs from a fresh
query. The lag is the adapter's own figure (\`getStats().capture.lagP50/lagP99\`) for writes
made on another connection 20 ms apart: from the trigger's record, so it includes the
writer's commit.

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
  const values = Array.from({ length: USERS - 1 }, (_, i) => `(${i + 2}, 'user ${i + 2}')`);
  await h.exec(`insert into ${usersName(h)} (id, name) values ${values.join(", ")}`);
  await h.installCapture();
  const fresh = h.db();
  const open = async (capture: boolean) => {
    const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    const db = withTransactions(h.db(cache), { capture });
    await db.select().from(h.users).where(eq(h.users.id, 1));
    if (capture) {
      const until = Date.now() + 10_000;
      while (cache.getStats().writes !== "capture") {
        if (Date.now() > until) fail(`${h.name}: capture not followed`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    return { cache, db };
  };
  // The capture database is opened for its rounds only: while it follows, its consumer
  // would also delete the rows the tables rounds' updates leave (triggers stay installed
  // for both, so their cost is in both figures).
  const tables = await open(false);
  let n = 0;
  const update = (db: AnyDb) =>
    db
      .update(h.users)
      .set({ name: `n${n++}` })
      .where(eq(h.users.id, 1 + (n % USERS)));
  const round = async (mode: Mode, seconds: number) => {
    if (mode === "tables") return closedLoop(() => update(tables.db), seconds, flags.concurrency);
    const capture = await open(true);
    await capture.cache.catchUp(); // the tables rounds' backlog
    const ops = await closedLoop(() => update(capture.db), seconds, flags.concurrency);
    await release(capture);
    return ops;
  };

  const opsPerRound = { tables: [], capture: [] } as Record<Mode, number[]>;
  for (const m of MODES) await round(m, Math.min(1, flags.duration));
  for (let r = 0; r < flags.rounds; r++) {
    for (const m of MODES) opsPerRound[m].push(await round(m, flags.duration));
  }
  const medianOps = { tables: median(opsPerRound.tables), capture: median(opsPerRound.capture) };
  console.log(`${h.name}: ${JSON.stringify(medianOps)}`);
  await release(tables);

  // Stale reads right after an acknowledged update.
  const checking = await open(true);
  const { db } = checking;
  const user = (d: AnyDb, id: number) =>
    d.select({ id: h.users.id, name: h.users.name }).from(h.users).where(eq(h.users.id, id));
  let stale = 0;
  for (let i = 0; i < flags.checks; i++) {
    const id = 1 + (i % 5);
    await user(db, id);
    await db
      .update(h.users)
      .set({ name: `check ${i}` })
      .where(eq(h.users.id, id));
    const got = JSON.stringify(await user(db, id));
    if (got !== JSON.stringify(await user(fresh, id))) stale++;
  }

  // The lag of writes around Drizzle, on a database of its own so only they are counted.
  await release(checking);
  const lagged = await open(true);
  for (let i = 0; i < flags.around; i++) {
    await h.exec(`update ${usersName(h)} set name = 'around ${i}' where id = ${1 + (i % USERS)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await lagged.cache.catchUp();
  const lag = lagged.cache.getStats().capture;
  await release(lagged);
  return {
    driver: h.name,
    opsPerRound,
    medianOps,
    captureOverTables: round3(medianOps.capture / medianOps.tables),
    checks: flags.checks,
    stale,
    around: lag?.applied ?? 0,
    ...(lag?.lagP50 !== undefined && { aroundLagP50: round2(lag.lagP50) }),
    ...(lag?.lagP99 !== undefined && { aroundLagP99: round2(lag.lagP99) }),
  };
}

/** Stops following and ends the database's client (each round opens one: PostgreSQL's connections). */
async function release(opened: { cache: { close(): Promise<void> }; db: AnyDb }): Promise<void> {
  await opened.cache.close();
  const client = opened.db.$client;
  await (typeof client.end === "function" ? client.end() : client.close());
}

function parseFlags(argv: string[]) {
  const flags = {
    duration: 2,
    rounds: 5,
    concurrency: 4,
    checks: 500,
    around: 200,
    out: "bench/results/drizzle-capture",
    pg: "postgres://postgres@127.0.0.1:5432/test",
  };
  type Numeric = "duration" | "rounds" | "concurrency" | "checks" | "around";
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (value === undefined) fail(`${name}: expected a value`);
    if (name === "--out" || name === "--pg") flags[name.slice(2) as "out" | "pg"] = value;
    else if (["--duration", "--rounds", "--concurrency", "--checks", "--around"].includes(name!)) {
      const n = Number(value);
      if (!(n > 0)) fail(`${name}: expected a positive number, got ${value}`);
      flags[name!.slice(2) as Numeric] = n;
    } else fail(`unknown flag ${name}`);
  }
  return flags;
}
