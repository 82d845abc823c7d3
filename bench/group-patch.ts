/**
 * What a group patch's statement costs against the full reload it replaces (issue 71), on
 * the Conduit example's seeded database (examples/conduit/seed.ts: 40 users, 200 articles):
 * the article list a favourite of one article changes (all articles by date, a page of 20,
 * with a viewer's flags), and the same select restricted to that article as edgecache
 * writes it (database/analysis/groups.ts: `where articles.id in (?)`, no window). Both run on
 * one libSQL client, in turn, `--calls` at a time, over `--rounds` rounds; the figure is
 * the median time a statement took, and the ratio restricted / full of each round.
 *
 *   npm run bench:group-patch
 *   npm run bench:group-patch -- --rounds 9 --calls 400 --out bench/results/group-patch
 */
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { articleSelect, countSelect } from "../examples/conduit/articles.ts";
import type { ConduitDb } from "../examples/conduit/db.ts";
import { createSchema } from "../examples/conduit/migrate.ts";
import * as schema from "../examples/conduit/schema.ts";
import { seedDatabase } from "../examples/conduit/seed.ts";
import {
  linkedRowsStatement,
  restrictedStatement,
} from "../src/database/analysis/group-statements.ts";
import { groupPlan } from "../src/database/analysis/groups.ts";
import { memberColumns } from "../src/database/analysis/memberships.ts";
import { type SqlTable, sqlShape } from "../src/database/analysis/shapes.ts";
import { learnTable } from "../src/drizzle/selects.ts";
import { benchHead, describeHead, writeResults } from "./lib/results.ts";
import { commandLine, positiveInt, readFlags } from "./lib/settings.ts";

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "7" },
      calls: { type: "string", default: "200" },
      out: { type: "string", default: "bench/results/group-patch" },
    },
  });
  return {
    rounds: positiveInt("rounds", values.rounds),
    calls: positiveInt("calls", values.calls),
    out: values.out,
  };
});

const started = Date.now();
const loadavgBefore = loadavg();
const command = commandLine("bench:group-patch");
const dir = mkdtempSync(join(tmpdir(), "edgecache-group-patch-"));
const client = createClient({ url: `file:${join(dir, "conduit.db")}` });
await createSchema(client);
await seedDatabase(client, 45);
const db = drizzle(client, { schema }) as unknown as ConduitDb;

// What the Drizzle adapter learns of the tables from the select's columns.
const tables = new Map<string, SqlTable>();
const learner = { learnTable: (name: string, t: SqlTable) => tables.set(name, t) };
for (const t of Object.values(schema)) learnTable(t, learner as never, "sqlite");

const viewer = 3;
const full = articleSelect(db, {}, viewer).limit(20).offset(0).toSQL();
const shape = sqlShape(full.sql, full.params, "sqlite", (t) => tables.get(t));
const plan = groupPlan(shape);
if (!plan) throw new Error("[bench] the article list has no group plan");
const [{ id } = { id: 1 }] = (
  await client.execute("select id from articles order by created_at desc limit 1 offset 7")
).rows as unknown as { id: number }[];
const restricted = restrictedStatement(
  plan,
  full.sql,
  full.params,
  "sqlite",
  new Map([["id", [id]]]),
);
if (!restricted) throw new Error("[bench] no restricted statement");
// A feed's count (the articles of the authors the viewer follows), and the membership's
// read that tells a new article of one author outside it or not (memberships.ts).
const feed = countSelect(db, { feedOf: viewer }).toSQL();
const feedShape = sqlShape(feed.sql, feed.params, "sqlite", (t) => tables.get(t));
const member = feedShape.lists?.subqueries?.find((q) => q.member);
const [{ author } = { author: 1 }] = (
  await client.execute("select author_id as author from articles order by created_at desc limit 1")
).rows as unknown as { author: number }[];
const membership =
  member &&
  linkedRowsStatement(
    feed.sql,
    { table: member.table, column: member.member!.column },
    memberColumns(member).slice(1),
    [author],
    1000,
  );
if (!membership) throw new Error("[bench] the feed's count has no membership read");

async function time(sql: string, params: readonly unknown[]): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < options.calls; i++) {
    const t = performance.now();
    await client.execute({ sql, args: params as never[] });
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

type Pair = { fullMs: number; restrictedMs: number; ratio: number };
/** `options.rounds` rounds of a reload against the statement that replaces it, in turn. */
async function pairs(
  fullSql: { sql: string; params: readonly unknown[] },
  patch: { sql: string; params: readonly unknown[] },
  label: string,
): Promise<Pair[]> {
  const out: Pair[] = [];
  await time(fullSql.sql, fullSql.params);
  await time(patch.sql, patch.params);
  for (let r = 0; r < options.rounds; r++) {
    // Which goes first changes each round.
    const a = r % 2 === 0 ? await time(fullSql.sql, fullSql.params) : undefined;
    const restrictedMs = await time(patch.sql, patch.params);
    const fullMs = a ?? (await time(fullSql.sql, fullSql.params));
    out.push({ fullMs, restrictedMs, ratio: restrictedMs / fullMs });
    console.log(
      `${label} round ${r + 1}: full ${fullMs.toFixed(3)} ms, patch ${restrictedMs.toFixed(3)} ms`,
    );
  }
  return out;
}
const rounds = await pairs(full, restricted, "list");
const feedRounds = await pairs(feed, membership, "feed count");
client.close();
rmSync(dir, { recursive: true, force: true });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const summed = (rs: Pair[]) => ({
  fullMs: median(rs.map((r) => r.fullMs)),
  restrictedMs: median(rs.map((r) => r.restrictedMs)),
  ratio: median(rs.map((r) => r.ratio)),
});
const summary = summed(rounds);
const feedSummary = summed(feedRounds);
const head = benchHead(command, started, loadavgBefore);
const md = `# A group patch's statement against the full reload it replaces

${describeHead(head)}

Command:

\`\`\`sh
${command}
\`\`\`

The Conduit example's article list (all articles by date, page 1 of 20, viewer ${viewer}'s flags), as
Drizzle writes it, and the statement a group patch runs after a favourite of article ${id} (on the
page), on one libSQL client over the seeded database; ${options.calls} runs of each a round, ${options.rounds} rounds, the
median run a round. The full reload scans, groups and sorts every article to keep 20; the
group patch groups one.

| | median ms a statement |
| --- | --- |
| full reload | ${summary.fullMs.toFixed(3)} |
| group patch | ${summary.restrictedMs.toFixed(3)} |
| group patch / full reload (median of the rounds' ratios) | ${summary.ratio.toFixed(3)} |

Rounds: ${rounds.map((r) => r.ratio.toFixed(3)).join(", ")}.

The restricted statement:

\`\`\`sql
${restricted.sql}
\`\`\`

## A feed's count against the membership's read that keeps it

Viewer ${viewer}'s feed count (the articles of the authors they follow), reloaded whole, against
the read a new article by author ${author} costs instead (memberships: one read of the follows
for the author, shared by every viewer's feed and count; a count the article enters moves by
one, the others stay).

| | median ms a statement |
| --- | --- |
| full reload of the count | ${feedSummary.fullMs.toFixed(3)} |
| membership's read | ${feedSummary.restrictedMs.toFixed(3)} |
| read / full reload (median of the rounds' ratios) | ${feedSummary.ratio.toFixed(3)} |

Rounds: ${feedRounds.map((r) => r.ratio.toFixed(3)).join(", ")}.

\`\`\`sql
${membership.sql}
\`\`\`
`;
const path = writeResults(
  options.out,
  { ...head, options, summary, rounds, restricted, feedSummary, feedRounds, membership },
  md,
);
console.log(`\nwrote ${path}.json and .md`);
