import { identifier, isNode, type Node } from "./predicates.ts";

/**
 * A LEFT JOIN on a count grouped by a foreign key, as Prisma writes `include: { _count }`:
 *
 *   SELECT p.id, COALESCE(c.n, 0) AS n FROM posts p
 *   LEFT JOIN (SELECT post_id, COUNT(*) AS n FROM comments WHERE ... GROUP BY post_id) AS c
 *     ON p.id = c.post_id
 *
 * computes, for each base row, the same value as the correlated subquery
 * `(SELECT COUNT(*) FROM comments WHERE ... AND comments.post_id = p.id)`: grouped by the
 * joined column, the derived table has at most one row per base row, so the LEFT JOIN
 * neither repeats nor drops a base row, and a base row without children reads NULL (0 once
 * COALESCEd, as the subquery's count is). Read so, the count depends on the child rows whose
 * foreign key is a result row's key (a subquery in the select list with a link, see
 * ShapeSubquery), not on every child row. Only the result's values are read in that form,
 * never computed from it.
 *
 * Rewritten only when that holds and nothing else reads the derived table: its columns are
 * read in the select list alone (not in WHERE, ORDER BY, GROUP BY or another join), its
 * tables are plain tables (joined, for a many-to-many relation's link table), grouped by one
 * of their columns, with no HAVING, DISTINCT, window, ORDER BY or LIMIT, selecting that
 * column and counts (`COUNT(*)`, `COUNT(column)`) only. Anything else is left as it
 * is (a subquery the planner registers by table). Pure: no I/O; the AST is not changed.
 */
export function countJoinsAsSubqueries(select: Node): Node {
  const from = select.from;
  if (!Array.isArray(from) || from.length < 2 || !isNode(from[0])) return select;
  const base = from[0];
  if (typeof base.table !== "string" || isNode(base.expr)) return select;
  let out = select;
  for (const joined of from.slice(1)) {
    const rewritten = rewrite(out, base, joined);
    if (rewritten) out = rewritten;
  }
  return out;
}

/** `select` with the derived table `joined` read as a subquery, or undefined. */
function rewrite(select: Node, base: Node, joined: unknown): Node | undefined {
  if (!isNode(joined) || !/^LEFT( OUTER)? JOIN$/i.test(String(joined.join ?? ""))) return;
  const alias = joined.as;
  const inner = isNode(joined.expr) && isNode(joined.expr.ast) ? joined.expr.ast : undefined;
  if (typeof alias !== "string" || !inner || !plainGroupedCount(inner)) return;
  const group = (inner.groupby as Node).columns as Node[];
  const key = group[0]!;
  const keyName = identifier(key.column);
  if (keyName === undefined || !ownColumn(key, inner)) return;
  const sameColumn = (e: Node) =>
    e.type === "column_ref" &&
    identifier(e.column) === keyName &&
    ownColumn(e, inner) &&
    (e.table ?? null) === (key.table ?? null);
  // The derived table's columns by their names: the key, and counts.
  const counts = new Set<string>();
  let keyOut: string | undefined;
  for (const c of inner.columns as unknown[]) {
    if (!isNode(c) || !isNode(c.expr)) return;
    const e = c.expr;
    if (sameColumn(e)) keyOut = typeof c.as === "string" ? c.as : keyName;
    else if (isCount(e) && typeof c.as === "string") counts.add(c.as);
    else return;
  }
  if (keyOut === undefined || counts.size === 0 || counts.has(keyOut)) return;
  const baseKey = baseSide(joined.on, alias, keyOut, base);
  if (!baseKey) return;
  // Nothing but the select list reads the derived table, and no bare name may be its column.
  const names = new Set([keyOut, ...counts]);
  const rest = {
    ...select,
    columns: null,
    from: (select.from as unknown[]).filter((f) => f !== joined),
  };
  if (reads(rest, alias, names) || readsBare(select.columns, names)) return;
  const from = (select.from as unknown[]).filter((f) => f !== joined);
  if (from.some((f) => isNode(f) && (f.as ?? f.table) === alias)) return;
  const link: Node = { type: "binary_expr", operator: "=", left: key, right: baseKey };
  const where: Node = isNode(inner.where)
    ? { type: "binary_expr", operator: "AND", left: inner.where, right: link }
    : link;
  const count = (inner.columns as Node[]).find((c) => isCount(c.expr))!;
  const subquery = (): Node => ({
    ast: { ...inner, columns: [{ ...count, as: null }], groupby: null, where },
    parentheses: true,
  });
  let unknownColumn = false;
  const replace = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(replace);
    if (!isNode(v)) return v;
    if (v.type === "column_ref" && v.table === alias) {
      const name = identifier(v.column);
      if (name === undefined || !counts.has(name)) unknownColumn = true;
      return subquery();
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, replace(x)]));
  };
  const columns = replace(select.columns);
  if (unknownColumn) return;
  return { ...select, columns, from };
}

/**
 * Plain tables (the first alone, the others joined to it), grouped by one column, nothing
 * else that shapes its rows. Joined tables are how Prisma counts a many-to-many relation:
 * `FROM "Tag" LEFT JOIN "_PostToTag" ON ... GROUP BY "_PostToTag"."A"`. Whatever the joins,
 * a group's rows are the joined rows whose grouped column has the group's value, which the
 * correlated subquery selects with that column equal to the base's.
 */
function plainGroupedCount(s: Node): boolean {
  const from = s.from;
  const group = isNode(s.groupby) ? s.groupby.columns : undefined;
  const limit = isNode(s.limit) ? s.limit.value : undefined;
  return (
    s.type === "select" &&
    !s.with &&
    !s._next &&
    !s.set_op &&
    Array.isArray(from) &&
    from.length > 0 &&
    from.every(
      (f, i) => isNode(f) && typeof f.table === "string" && !f.expr && !f.join === (i === 0),
    ) &&
    !(isNode(s.distinct) && s.distinct.type) &&
    !s.having &&
    !s.orderby &&
    !s.window &&
    (limit === undefined || (Array.isArray(limit) && limit.length === 0)) &&
    Array.isArray(group) &&
    group.length === 1 &&
    isNode(group[0]) &&
    group[0].type === "column_ref" &&
    Array.isArray(s.columns)
  );
}

/**
 * A column reference of one of the derived table's own tables: by its name or alias, or
 * bare where it has one table (a bare column among several could be any of theirs).
 */
function ownColumn(ref: Node, inner: Node): boolean {
  const from = inner.from as Node[];
  if (ref.table === null || ref.table === undefined) return from.length === 1;
  return from.some((t) => ref.table === (t.as ?? t.table));
}

/** `COUNT(*)` or `COUNT(column)`: the same in a group as over the subquery's rows. */
function isCount(e: unknown): boolean {
  if (!isNode(e) || e.type !== "aggr_func" || String(e.name).toUpperCase() !== "COUNT") {
    return false;
  }
  const args = e.args;
  return (
    !e.over &&
    isNode(args) &&
    !args.distinct &&
    isNode(args.expr) &&
    (args.expr.type === "star" || args.expr.type === "column_ref")
  );
}

/** The base's column of `on` (`base.x = alias.key`, either way round), or undefined. */
function baseSide(on: unknown, alias: string, key: string, base: Node): Node | undefined {
  if (!isNode(on) || on.type !== "binary_expr" || on.operator !== "=") return undefined;
  const sides = [on.left, on.right];
  const joinedAt = sides.findIndex(
    (s) =>
      isNode(s) && s.type === "column_ref" && s.table === alias && identifier(s.column) === key,
  );
  if (joinedAt < 0) return undefined;
  const other = sides[1 - joinedAt];
  if (!isNode(other) || other.type !== "column_ref" || identifier(other.column) === undefined) {
    return undefined;
  }
  const name = base.as ?? base.table;
  const schema = other.schema ?? other.db;
  const baseSchema = base.db ?? base.schema;
  const sameSchema = schema === undefined || schema === null || schema === baseSchema;
  return other.table === name && sameSchema ? other : undefined;
}

/** Whether `v` holds a reference to `alias`, or to one of `names` bare. */
function reads(v: unknown, alias: string, names: ReadonlySet<string>): boolean {
  if (Array.isArray(v)) return v.some((x) => reads(x, alias, names));
  if (!isNode(v)) return false;
  if (v.type === "column_ref") {
    if (v.table === alias) return true;
    const bare = v.table === null || v.table === undefined;
    return bare && names.has(identifier(v.column) ?? "");
  }
  return Object.values(v).some((x) => reads(x, alias, names));
}

/** Whether a bare column reference in `v` may name one of `names`. */
function readsBare(v: unknown, names: ReadonlySet<string>): boolean {
  if (Array.isArray(v)) return v.some((x) => readsBare(x, names));
  if (!isNode(v)) return false;
  if (v.type === "column_ref" && (v.table === null || v.table === undefined)) {
    return names.has(identifier(v.column) ?? "");
  }
  return Object.values(v).some((x) => readsBare(x, names));
}
