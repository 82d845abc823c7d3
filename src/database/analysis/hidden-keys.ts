import { carriedStatement } from "./group-statements.ts";
import { unmaintained } from "./groups.ts";
import type { SqlDialect } from "./parse.ts";
import type { SqlShape } from "./shape-types.ts";

/**
 * Hidden keys (issue 71 item 2): a select that does not show the columns naming the rows it
 * reads (the Conduit list shows `slug`, not `articles.id`; nor `articles.author_id`, which
 * names its author) is registered wider than it reads, and its result is not maintained by
 * group patches. Run with those base columns carried after its own, its result names its
 * rows, and the application is handed the columns it asked for alone (the ORM adapter
 * strips the carried ones). Pure: the statement cache decides, an adapter runs it.
 */

/** A select as run with the base columns it does not show carried after its own. */
export interface HiddenKeys {
  sql: string;
  params: unknown[];
  /** How many columns were carried (the last ones of each row). */
  hidden: number;
  /** Its shape. */
  shape: SqlShape;
}

/** Why a select's group patches want its base's key: the plan's reason when none shows. */
const NO_KEY = "it shows neither its base's key nor a unique column of it";

/**
 * The base columns a select's result would need to name the rows it reads: the base's key
 * where neither it nor a unique column is shown and the select joins, groups or computes a
 * column by a subquery; the base column each join or select-list subquery is linked by
 * where the result does not show it. Empty when it shows them all.
 */
export function wantedKeys(shape: SqlShape): string[] {
  const s = shape.lists;
  if (!s || shape.fallback || s.ref === undefined || s.grouping === "aggregate") return [];
  const shown = (c: string) => s.columns.includes(c);
  const wanted = new Set<string>();
  if (unmaintained(shape) === NO_KEY) wanted.add(s.primaryKey);
  for (const j of s.joins ?? []) {
    if (j.whole === "key-not-selected" && j.anchor === undefined) wanted.add(j.from);
  }
  for (const q of s.subqueries ?? []) {
    const link = q.in === "select" ? q.unshown : undefined;
    if (link && link.anchor === undefined) wanted.add(link.from);
  }
  return [...wanted].filter((c) => !shown(c));
}

/**
 * `sql` with the base columns its shape wants carried after its own columns, and how many;
 * undefined where it wants none, where its text cannot be rewritten safely (a compound
 * select, DISTINCT, a comment, placeholders other than the dialect's), or where the
 * rewritten select, read again by `reshape`, would not be followed finer or maintained
 * where the original is not.
 */
export function hiddenKeys(
  shape: SqlShape,
  sql: string,
  params: readonly unknown[],
  dialect: SqlDialect,
  reshape: (sql: string) => SqlShape,
): HiddenKeys | undefined {
  const wanted = wantedKeys(shape);
  if (wanted.length === 0) return undefined;
  const carried = carriedStatement(sql, params, dialect, shape.lists!.ref!, wanted);
  if (!carried) return undefined;
  const after = reshape(carried.sql);
  // Carried, the columns must be read as the base's: otherwise nothing is gained.
  if (after.fallback || wantedKeys(after).length > 0) return undefined;
  return { ...carried, hidden: wanted.length, shape: after };
}
