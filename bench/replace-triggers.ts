/**
 * What recording the rows a REPLACE deletes costs SQLite's writes: the time per row of
 * inserts, updates of a plain column, updates of a unique column and REPLACEs, with
 * capture's triggers as they are (BEFORE triggers noting conflicting rows), against the
 * same writes with capture's AFTER triggers alone (what an earlier version installed) and
 * without capture, measured in the same run, on a table with an INTEGER PRIMARY KEY and a
 * unique column and on a table without a key. Reported as ratios; the median of the rounds.
 *
 *   npm run bench:replace-triggers               # 20,000 rows per step, 5 rounds
 *   npm run bench:replace-triggers -- --rows 2000 --rounds 3
 */
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { runSteps } from "../src/database/driver.ts";
import { capturedTablesSteps, captureInstallSql } from "../src/database/sqlite/capture-sql.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { commandLine, positiveInt, readFlags } from "./lib/settings.ts";

const { rows, rounds } = readFlags(() => {
  const { values } = parseArgs({
    options: {
      rows: { type: "string", default: "20000" },
      rounds: { type: "string", default: "5" },
    },
  });
  return {
    rows: positiveInt("--rows", values.rows),
    rounds: positiveInt("--rounds", values.rounds),
  };
});

type Setup = "none" | "after-only" | "replace-notes";
const SETUPS: Setup[] = ["none", "after-only", "replace-notes"];

function database(setup: Setup): Database.Database {
  const db = new Database(":memory:");
  db.exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT);
    CREATE TABLE notes (body TEXT, n INTEGER)`);
  if (setup === "none") return db;
  const tables = runSteps(capturedTablesSteps(["users", "notes"]), (s) => {
    return db.prepare(s.sql).all(...s.params) as Record<string, unknown>[];
  });
  // An earlier version's install: the same AFTER triggers, no keys to note conflicts by.
  const installed =
    setup === "after-only" ? tables.map(({ name, columns }) => ({ name, columns })) : tables;
  for (const sql of captureInstallSql(installed, { install: "bench" })) db.exec(sql);
  return db;
}

/** Each step's statements, run `rows` times in one transaction: ns per row. */
const STEPS: Record<string, (db: Database.Database) => (i: number) => void> = {
  "insert (keyed table)": (db) => {
    const s = db.prepare("INSERT INTO users (email, name) VALUES (?, 'n')");
    return (i) => s.run(`u${i}@x`);
  },
  "update a plain column": (db) => {
    const s = db.prepare("UPDATE users SET name = ? WHERE id = ?");
    return (i) => s.run(`m${i}`, i + 1);
  },
  "update the unique column": (db) => {
    const s = db.prepare("UPDATE users SET email = ? WHERE id = ?");
    return (i) => s.run(`v${i}@x`, i + 1);
  },
  "REPLACE on the unique column": (db) => {
    const s = db.prepare("REPLACE INTO users (id, email, name) VALUES (?, ?, 'r')");
    return (i) => s.run(rows + i + 1, `v${i}@x`);
  },
  "insert (table without a key)": (db) => {
    const s = db.prepare("INSERT INTO notes VALUES ('b', ?)");
    return (i) => s.run(i);
  },
};

const times = new Map<string, number[]>();
for (let round = 0; round < rounds; round++) {
  for (const setup of SETUPS) {
    const db = database(setup);
    for (const [step, make] of Object.entries(STEPS)) {
      const run = make(db);
      const started = process.hrtime.bigint();
      db.transaction(() => {
        for (let i = 0; i < rows; i++) run(i);
      })();
      const ns = Number(process.hrtime.bigint() - started) / rows;
      const key = `${step}\u0000${setup}`;
      times.set(key, [...(times.get(key) ?? []), ns]);
      // The change table kept small, as a consuming node keeps it.
      if (setup !== "none") db.exec("DELETE FROM _edgecache_changes");
    }
    db.close();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const table = Object.keys(STEPS).map((step) => {
  const [none, after, notes] = SETUPS.map((s) => median(times.get(`${step}\u0000${s}`)!));
  return {
    step,
    noCaptureNs: Math.round(none!),
    afterOnlyNs: Math.round(after!),
    replaceNotesNs: Math.round(notes!),
    vsAfterOnly: Number((notes! / after!).toFixed(2)),
  };
});
const command = commandLine("bench:replace-triggers");
const code = describeCode(gitState());
const markdown = `# SQLite capture triggers: the cost of recording REPLACE's deletes

\`${command}\` (${rows} rows per step, median of ${rounds} rounds, better-sqlite3 in memory, ${code}).
ns per row written; "after only" is capture's AFTER triggers alone (an earlier version's
install), "replace notes" adds the BEFORE triggers that note conflicting rows.

| step | no capture | after only | replace notes | replace notes / after only |
| --- | ---: | ---: | ---: | ---: |
${table.map((r) => `| ${r.step} | ${r.noCaptureNs} | ${r.afterOnlyNs} | ${r.replaceNotesNs} | ${r.vsAfterOnly} |`).join("\n")}
`;
const path = writeResults(
  "bench/results/replace-triggers",
  { command, code, rows, rounds, table },
  markdown,
);
console.log(markdown);
console.log(`written: ${path}.md`);
