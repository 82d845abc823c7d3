import { forEachNode, isNode, type Node } from "./predicates.ts";

/**
 * The schema holding a table a statement names without one, as the session's search path
 * finds it (PostgreSQL), or undefined when that cannot be told (the path is not read, or
 * was changed by the session, or holds no such table yet).
 */
export type ResolveTable = (table: string) => string | undefined;

/** Where node-sql-parser keeps the tables a statement reads or writes: lists of `{ db, table }`. */
const TABLE_LISTS = new Set(["from", "table", "using"]);

/**
 * `ast` with every table named without its schema given the schema `resolve` finds for it
 * (a CTE's name is no table), and whether some could not be placed (those are left bare).
 * The AST is not changed (parses are memoised): nodes along a changed path are copied.
 * Pure: no I/O.
 */
export function withSchemas(
  ast: unknown,
  resolve: ResolveTable,
): { ast: unknown; unresolved: boolean } {
  const ctes = cteNames(ast);
  let unresolved = false;
  const place = (item: unknown): unknown => {
    if (!isNode(item) || typeof item.table !== "string") return item;
    const named = typeof item.db === "string" || typeof item.schema === "string";
    if (named || ctes.has(item.table)) return item;
    const schema = resolve(item.table);
    if (schema === undefined) {
      unresolved = true;
      return item;
    }
    return { ...item, db: schema };
  };
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) {
      const out = v.map(walk);
      return out.some((x, i) => x !== v[i]) ? out : v;
    }
    if (!isNode(v)) return v;
    let copy: Node | undefined;
    for (const [key, child] of Object.entries(v)) {
      let next = walk(child);
      if (TABLE_LISTS.has(key) && Array.isArray(next)) {
        const placed = next.map(place);
        if (placed.some((x, i) => x !== (next as unknown[])[i])) next = placed;
      }
      if (next !== child) {
        copy ??= { ...v };
        copy[key] = next;
      }
    }
    return copy ?? v;
  };
  const resolved = walk(ast);
  return { ast: resolved, unresolved };
}

/** The names the statement's WITH clauses give, at any depth. */
export function cteNames(ast: unknown): Set<string> {
  const names = new Set<string>();
  forEachNode(ast, (v) => {
    if (!Array.isArray(v.with)) return;
    for (const w of v.with) {
      const name = isNode(w) && isNode(w.name) ? w.name.value : undefined;
      if (typeof name === "string") names.add(name);
    }
  });
  return names;
}
