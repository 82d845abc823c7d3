import { identifier, isNode, type Node, type Scope } from "./predicates.ts";
import type { OutputRead, ShapeSubquery } from "./shape-types.ts";

/**
 * What each result column of a select reads (group patches): the tables its value may
 * depend on, and whether a parameter enters it. A write to none of its tables leaves a
 * column as it was; a column no parameter enters holds the same values for a row whatever
 * the parameters, so one statement serves results that differ only in those (each
 * viewer's list keeps its per-viewer flags, and takes the rest from one viewer's).
 *
 * Undefined where a parameter is bound in an ON, a GROUP BY or a HAVING: it could change
 * which rows are joined, or how they group (one in the WHERE or the window goes with them
 * in a group patch's statement; one in the ORDER BY orders rows the splice places by key).
 * Conservative where a name cannot be placed: an unqualified column the schema places in
 * no single table reads every table; an aggregate of the select reads every table.
 */
export function outputReads(
  select: Node,
  scopes: readonly Scope[],
  subqueries: readonly ShapeSubquery[],
  baseColumns: (expr: unknown) => string[] | undefined,
  aggregates: (expr: unknown) => boolean,
): OutputRead[] | undefined {
  if (!Array.isArray(select.columns)) return undefined;
  if (hasParam([select.from, select.groupby, select.having])) return undefined;
  const out: OutputRead[] = [];
  for (const [i, column] of (select.columns as unknown[]).entries()) {
    const expr = isNode(column) ? column.expr : undefined;
    if (!isNode(expr) || (expr.type === "column_ref" && identifier(expr.column) === "*")) {
      return undefined;
    }
    const tables = new Set<string>();
    for (const q of subqueries) if (q.output === i) tables.add(q.table);
    for (const t of columnTables(expr, scopes)) tables.add(t);
    // An aggregate of this select counts its joined rows too (`count(*) * ?`, a sum over
    // a join that another child multiplies): any table may change it.
    if (aggregates(expr)) tables.add("*");
    const base = baseColumns(expr);
    out.push({ tables: [...tables], ...(base && { base }), params: hasParam(expr) });
  }
  return out;
}

/** The select's tables the column references in `v` name (`*`: one may be any of them). */
function columnTables(v: unknown, scopes: readonly Scope[], out = new Set<string>()): Set<string> {
  if (Array.isArray(v)) for (const x of v) columnTables(x, scopes, out);
  else if (isNode(v)) {
    // SQLite's grammar reads a lone "x" as a string: SQLite reads it as a column where one has it.
    const bare = v.type === "double_quote_string";
    if (v.type === "column_ref" || bare) {
      const column = bare
        ? typeof v.value === "string"
          ? v.value
          : undefined
        : identifier(v.column);
      const qualifier = !bare && typeof v.table === "string" ? v.table : undefined;
      const named = qualifier
        ? scopes.filter((s) => s.names.has(qualifier))
        : scopes.filter((s) => column !== undefined && Object.hasOwn(s.kinds, column));
      // Inside a subquery a qualifier may be its own table's (already counted); a name no
      // table of the select has is the subquery's.
      if (named.length === 1) out.add(named[0]!.table);
      else if (!qualifier && named.length !== 1) out.add("*");
    } else for (const x of Object.values(v)) columnTables(x, scopes, out);
  }
  return out;
}

/** Whether a placeholder (`?`, read as `:pN`, or `$n`) is anywhere in `v`. */
export function hasParam(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(hasParam);
  if (!isNode(v)) return false;
  if (v.type === "param" || (v.type === "var" && v.prefix === "$")) return true;
  return Object.values(v).some(hasParam);
}
