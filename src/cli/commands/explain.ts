import { defineCommand } from "citty";
import { EdgecacheError } from "../../core/errors.ts";
import { catalogKinds } from "../../query-cache/columns.ts";
import { type Catalog, explainSql, readCatalog } from "../../sources/index.ts";

const GRANULARITY = {
  row: "row: by the rows it looks up (a write elsewhere leaves it)",
  predicate: "predicate and window: by its conditions, order and page",
  join: "join along keys: by its rows and the joined rows they name",
  table: "table: any write to its tables removes it",
} as const;

const args = {
  sql: { type: "positional", required: true, description: "The select, as your code sends it" },
  db: {
    type: "string",
    description:
      "The database whose catalog tells keys and column types (a SQLite file or a postgres:// URL)",
    valueHint: "file|url",
  },
  dialect: {
    type: "string",
    description: "sqlite or postgres, without --db (sqlite)",
    valueHint: "sqlite|postgres",
  },
  params: {
    type: "string",
    description: "Its parameters as a JSON array (otherwise each is guessed as a number or a text)",
    valueHint: "json",
  },
  json: { type: "boolean", description: "Print JSON" },
} as const;

/** `edgecache explain "<sql>"`: how exactly the query caches follow a select, and why not more. */
export const explain = defineCommand({
  meta: {
    name: "explain",
    description: "Tell how exactly a select is cached (row, predicate, join, table) and why",
  },
  args,
  async run({ args: a }) {
    const catalog: Catalog | undefined = a.db ? await readCatalog(a.db) : undefined;
    const dialect = catalog?.dialect ?? a.dialect ?? "sqlite";
    if (dialect !== "sqlite" && dialect !== "postgres") {
      throw new EdgecacheError(
        "E_BAD_OPTION",
        "explain",
        `--dialect: expected sqlite or postgres, got ${JSON.stringify(dialect)}`,
      );
    }
    let params: unknown[] | undefined;
    if (a.params !== undefined) {
      try {
        params = JSON.parse(a.params);
      } catch {
        params = undefined;
      }
      if (!Array.isArray(params)) {
        throw new EdgecacheError(
          "E_BAD_OPTION",
          "explain",
          `--params: expected a JSON array, got ${a.params}`,
        );
      }
    }
    const schema = (name: string) => {
      const t = catalog?.tables.get(name);
      // A captured table without a single-column key (a link table) is read by lists, as
      // the query caches read it; one not captured they do not know.
      if (!t || (!t.primaryKey && !t.captured)) return undefined;
      // No driver's Prisma-form instants here (read only where an adapter gives them).
      const { isoInstants: _, ...kinds } = catalogKinds(t.columns, dialect);
      return { ...(t.primaryKey && { primaryKey: t.primaryKey }), ...kinds };
    };
    const e = explainSql(a.sql, dialect, schema, params);
    // A query cache follows rows only with capture installed on the tables it reads: without
    // it, writes go by table, whatever the read's granularity.
    const uncaptured = catalog
      ? e.tables.filter((t) => catalog.tables.get(t)?.captured === false)
      : [];
    if (a.json) {
      console.log(JSON.stringify(catalog ? { ...e, uncaptured } : e, null, 2));
      return;
    }
    console.log(`granularity: ${GRANULARITY[e.granularity]}`);
    console.log(`tables:      ${e.tables.join(", ") || "(none read)"}`);
    console.log(`why not finer: ${e.reasons.length > 0 ? e.reasons.join(", ") : "(exact)"}`);
    for (const line of reasonLines(e.reasons)) console.log(`  ${line}`);
    if (e.maintained) {
      console.log(
        `maintained:  a write to ${e.maintained.join(", ")} keeps it by a statement for the changed rows alone (group patches)`,
      );
      const dropped = e.tables.filter((t) => !e.maintained!.includes(t));
      if (dropped.length > 0) {
        console.log(
          `             a write to ${dropped.join(", ")} removes it (read again at its next lookup)`,
        );
      }
    }
    if (e.unmaintained) console.log(`not maintained by group patches: ${e.unmaintained}`);
    if (e.memberships) {
      console.log(
        `memberships: base rows written that ${e.memberships.join(", ")} holds for none of its parameters leave it as it was (told by one read of that table)`,
      );
    }
    if (!catalog) console.log("(no --db: tables' keys unknown, so every table counts as unknown)");
    if (uncaptured.length > 0 && e.granularity !== "table") {
      console.log(
        `capture is not installed on ${uncaptured.join(", ")}: until \`edgecache capture install\`, ` +
          "a write through a query cache removes every cached read of its tables, and writes " +
          "made around the cache are not seen",
      );
    }
  },
});

/** What a reason says, as people read it. */
const REASONS: Record<string, string> = {
  expression: "a condition it does not evaluate (a function, NOT, a cast...) is taken as true",
  type: "a condition on a column of a kind it does not compare is taken as true",
  collation: "an order or range under a collation other than the binary one is not followed",
  like: "a LIKE pattern is followed as a wider prefix",
  order: "an order it cannot reproduce: its window is not followed",
  join: "a joined table's conditions and order are taken as true on this side",
  subquery: "a subquery's condition is taken as true; its tables follow their own conditions",
  "key-not-selected":
    "followed at table level: the result does not show the column that names its rows (select it)",
  "unknown-table":
    "followed at table level: its key is unknown (no capture, or not in the catalog)",
};

/**
 * One line a reason: `join` as itself, `labels: join` as the table it puts at table level
 * (a write to it removes the result whatever row it writes).
 */
function reasonLines(reasons: readonly string[]): string[] {
  return reasons.map((r) => {
    const [table, why] = r.includes(": ") ? r.split(": ") : [undefined, r];
    const says = REASONS[why!] ?? "";
    if (!table) return `${r}: ${says}`;
    const level =
      why === "key-not-selected" || why === "unknown-table" ? says : "followed at table level";
    return `${r}: ${level}${why === "join" ? " (joined other than along a key the result shows)" : ""}`;
  });
}
