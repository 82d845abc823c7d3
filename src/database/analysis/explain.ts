import { groupPlan, unmaintained } from "./groups.ts";
import type { SqlDialect } from "./parse.ts";
import type { SqlShape, SqlTable } from "./shape-types.ts";
import { sqlShape } from "./shapes.ts";

/**
 * How exactly a cached select is followed, from its shape: by the rows it looked up
 * (`row`), by its predicate and window (`predicate`), along the keys of its joins (`join`),
 * or by its tables (`table`); and, below the exactness of its granularity, why. What
 * `edgecache explain` prints and the query caches' stats count per query. Pure.
 */
export interface Explanation {
  granularity: "row" | "predicate" | "join" | "table";
  /**
   * Why it is followed less exactly than its granularity says, or at table level: the
   * fallback (`join`, `aggregate`, `subquery`, `unknown-table`...), the widenings
   * (`expression`, `order`, `collation`...), and `<table>: <reason>` for a joined or
   * subquery table followed as a whole. Empty when exact.
   */
  reasons: string[];
  /** The tables it reads. */
  tables: string[];
  /**
   * Group patches: the tables a write to which keeps the result by its statement run for
   * the changed rows alone (a count, a tag list, an author's name), where results of the
   * query cache are maintained (see database/analysis/groups.ts); absent where none is.
   */
  maintained?: string[];
  /**
   * The tables of its `where`'s `IN (select ...)` conjuncts that tell a write's base rows
   * outside its results with one shared read, keeping them as they were (memberships; see
   * database/analysis/memberships.ts); absent where none does.
   */
  memberships?: string[];
  /**
   * Why a select with joins or subqueries in its select list is not maintained so (its
   * results then go at a write to those tables, and are loaded again); absent otherwise.
   */
  unmaintained?: string;
}

/** The explanation of `shape` (see sqlShape), with `widened` when its registration went wider. */
export function explainShape(shape: SqlShape, widened?: string): Explanation {
  const tables = [...shape.tables];
  const lists = shape.lists;
  if (shape.fallback || !lists) {
    return { granularity: "table", reasons: [shape.fallback ?? "parse"], tables };
  }
  const reasons = [...shape.widened];
  if (widened && !reasons.includes(widened as never)) reasons.push(widened as never);
  const whole = [
    ...(lists.joins ?? []).filter((j) => j.whole).map((j) => `${j.table}: ${j.whole}`),
    ...(lists.subqueries ?? []).filter((s) => s.whole).map((s) => `${s.table}: ${s.whole}`),
  ];
  const lookups = lists.rowIds.length > 0 && lists.disjuncts.length === 0 && lists.lookupsAlone;
  const granularity =
    (lists.joins?.length ?? 0) > 0 ? "join" : lookups ? "row" : ("predicate" as const);
  const plan = groupPlan(shape);
  const grouped =
    (lists.joins?.length ?? 0) > 0 || (lists.subqueries ?? []).some((q) => q.in === "select");
  const why = !plan && grouped ? unmaintained(shape) : undefined;
  const members = (lists.subqueries ?? []).filter((q) => q.member).map((q) => q.table);
  return {
    granularity,
    reasons: [...reasons, ...whole],
    tables,
    ...(plan && { maintained: [...new Set(plan.feeds.map((f) => f.table))] }),
    ...(why && { unmaintained: why }),
    ...(members.length > 0 && { memberships: [...new Set(members)] }),
  };
}

/** Placeholders tried one value of each kind at most this many (2^n shapes). */
const MAX_GUESSED = 8;
const RANK = { row: 0, join: 1, predicate: 2, table: 3 } as const;

/**
 * The explanation of a select's text, with `params` bound to its placeholders; without
 * them, each placeholder is taken as the number or the text that explains the select
 * best (a value of the wrong kind would widen its condition), for up to 8 of them.
 */
export function explainSql(
  sql: string,
  dialect: SqlDialect,
  schema: (table: string) => SqlTable | undefined,
  params?: readonly unknown[],
): Explanation & { params: unknown[] } {
  const explain = (p: unknown[]) => ({
    ...explainShape(sqlShape(sql, p, dialect, schema)),
    params: p,
  });
  if (params) return explain([...params]);
  const n = Math.min(placeholders(sql, dialect), MAX_GUESSED);
  let best: ReturnType<typeof explain> | undefined;
  for (let mask = 0; mask < 2 ** n; mask++) {
    const guess = Array.from({ length: n }, (_, i) => ((mask >> i) & 1 ? "a" : 1));
    const e = explain(guess);
    const better =
      !best ||
      RANK[e.granularity] < RANK[best.granularity] ||
      (RANK[e.granularity] === RANK[best.granularity] && e.reasons.length < best.reasons.length);
    if (better) best = e;
  }
  return best!;
}

/** How many parameters a statement binds: `?` (SQLite) or the highest `$n` (PostgreSQL). */
function placeholders(sql: string, dialect: SqlDialect): number {
  // Outside quoted strings and identifiers.
  const text = sql.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"/g, "");
  if (dialect === "postgres") {
    return Math.max(0, ...[...text.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
  }
  return (text.match(/\?/g) ?? []).length;
}
