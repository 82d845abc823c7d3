import { identifier, isNode, type Node, qualified, type Scope } from "./predicates.ts";
import type { SqlSchema } from "./shape-types.ts";

/**
 * The columns of table `j` (one of the select's own tables, `top`) that `parts` of the
 * select may read, anywhere in them, subqueries included; undefined when that cannot be
 * told. A name is resolved as SQL resolves it, the innermost FROM first: a bare column is
 * a subquery table's when the schema says that table has it, else the next level out's;
 * at the select's own level it is `j`'s when `j` has it and another table's when only that
 * one has it. Anything the schema cannot settle (a bare name no known table has, a derived
 * table's column, a `*` or a column of `j` it does not list) makes the answer unknown: a
 * column left out would let an update that changes it be skipped (see ListDependency's
 * `columns`), so only a column read for certain by another table is left out. SQLite's
 * bare `"name"` (a string to the parser) counts as a bare column. Pure.
 */
export function columnsRead(
  parts: unknown,
  j: Scope,
  top: readonly Scope[],
  schema: SqlSchema,
): string[] | undefined {
  const found = new Set<string>();
  let unknown = false;
  const walk = (v: unknown, levels: readonly Node[][]): void => {
    if (unknown) return;
    if (Array.isArray(v)) {
      for (const x of v) walk(x, levels);
      return;
    }
    if (!isNode(v)) return;
    if (v.type === "select") {
      const from = Array.isArray(v.from) ? (v.from as Node[]) : [];
      for (const x of Object.values(v)) walk(x, [...levels, from]);
      return;
    }
    if (v.type === "column_ref") read(v, levels);
    // SQLite's grammar reads a bare "name" so; SQLite takes it as a column where one has it.
    else if (v.type === "double_quote_string" && typeof v.value === "string") {
      read({ type: "column_ref", table: null, column: v.value }, levels);
    } else for (const x of Object.values(v)) walk(x, levels);
  };
  const read = (ref: Node, levels: readonly Node[][]): void => {
    const name = identifier(ref.column);
    const q = typeof ref.table === "string" ? ref.table : undefined;
    if (q !== undefined) {
      if (!j.names.has(q)) return;
      const column = name === undefined ? undefined : columnOf(j.kinds, name);
      if (column === undefined) unknown = true;
      else found.add(column);
      return;
    }
    if (name === undefined) unknown = true;
    // A bare `*` in a subquery is its own FROM's; at this level it may be j's.
    else if (name === "*") unknown ||= levels.length === 0;
    else {
      const owner = bareOwner(name, levels);
      if (owner === "unknown") unknown = true;
      else if (owner === "mine") found.add(columnOf(j.kinds, name)!);
    }
  };
  const bareOwner = (name: string, levels: readonly Node[][]): "mine" | "other" | "unknown" => {
    for (let at = levels.length - 1; at >= 0; at--) {
      for (const f of levels[at]!) {
        if (typeof f.table !== "string") return "unknown";
        const kinds = schema(qualified(f))?.columns;
        if (kinds && columnOf(kinds, name) !== undefined) return "other";
      }
    }
    const owners = top.filter((s) => columnOf(s.kinds, name) !== undefined);
    if (owners.length === 0) return "unknown";
    return owners.includes(j) ? "mine" : "other";
  };
  walk(parts, []);
  return unknown ? undefined : [...found];
}

/** `name` as the table's column is spelled in `kinds` (exactly, else ignoring case). */
function columnOf(kinds: Readonly<Record<string, unknown>>, name: string): string | undefined {
  if (Object.hasOwn(kinds, name)) return name;
  const lower = name.toLowerCase();
  return Object.keys(kinds).find((c) => c.toLowerCase() === lower);
}

/** Every part of `select` that may read a column: all of it but its FROM's tables. */
export function selectParts(select: Node): unknown[] {
  const from = Array.isArray(select.from) ? (select.from as Node[]) : [];
  return [
    select.columns,
    select.where,
    select.groupby,
    select.having,
    select.orderby,
    select.limit,
    from.map((f) => [f.on, f.expr]),
  ];
}
