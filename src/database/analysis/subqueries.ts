import type { ListFilter } from "../../core/data/query.ts";
import type { ListDependency } from "../../core/deps/planner.ts";
import { rowTag } from "../../core/deps/planner.ts";
import { matches } from "../../core/deps/predicate.ts";
import { columnsRead, selectParts } from "./columns-read.ts";
import {
  and,
  columnOf,
  type Dnf,
  Fallback,
  hasSubquery,
  identifier,
  isNode,
  type Node,
  predicate,
  qualified,
  type Scope,
  split,
  TRUE,
} from "./predicates.ts";
import { anyWindow, keysIn, reader, twins, wholeTable } from "./rows.ts";
import type {
  ShapeLists,
  ShapeSubquery,
  SqlDialect,
  SqlSchema,
  TextCollation,
  WideningReason,
} from "./shape-types.ts";

/**
 * The tables a select's subqueries read, and which of their rows can change its result.
 *
 * - In WHERE (`x IN (select ...)`, `EXISTS`, `NOT EXISTS`, `NOT IN`, a scalar compared)
 *   a subquery decides which rows are in the result: any row of its tables that satisfies
 *   its own conditions, references to other tables taken as TRUE, may bring a row in or
 *   take one out. Each of its tables registers those conditions as lists without a
 *   window, and the outer select takes the condition on the subquery as TRUE (widened).
 * - In the select list a subquery computes a value of each result row and cannot change
 *   which rows are in it, nor their order unless ordered by (then links are not followed
 *   under a window). A table whose own WHERE holds `t.col = outer.x` as a conjunct, `outer`
 *   a table of the select and `x` readable from its result, reads only rows whose `col` is
 *   one of the result's values of `x`: lists `col = v AND (its own conditions)` for each.
 *   Any other table of it registers its own conditions, as in WHERE.
 * Nesting and aggregates inside do not matter: what counts is which rows each table is
 * read from. A table on the outer side of an outer join inside reads as NULLs where it has
 * no row: a condition NULL satisfies then registers all its rows.
 */
export interface SubqueryContext {
  schema: SqlSchema;
  params: readonly unknown[];
  dialect: SqlDialect;
  /** The select's own tables: names, column kinds, and whether a link to each can be followed. */
  outer: {
    names: ReadonlySet<string>;
    kinds?: Readonly<Record<string, string>>;
    collations?: Readonly<Record<string, TextCollation>> | undefined;
    anchor?: number;
    linkable: boolean;
  }[];
  /** Whether `column` of outer table `k` can be read from the result. */
  readable(k: number, column: string): boolean;
}

type Mode = ShapeSubquery["in"];

/** The tables read by the select's subqueries; a subquery anywhere else falls back. */
export function subqueriesOf(select: Node, ctx: SubqueryContext): ShapeSubquery[] {
  const elsewhere = [select.groupby, select.having, select.orderby, select.limit];
  if (Array.isArray(select.from)) for (const f of select.from) elsewhere.push(f.on);
  if (hasSubquery(elsewhere)) throw new Fallback("subquery");
  const out: ShapeSubquery[] = [];
  const inners = new Map<Node, Set<string>>();
  const read = (sub: Node, mode: Mode) => {
    const inner = new Set<string>();
    declared(sub, inner);
    inners.set(sub, inner);
    readsOf(sub, mode, ctx, inner, out);
  };
  const columns = Array.isArray(select.columns) ? select.columns : [select.columns];
  columns.forEach((column, output) => {
    const at = out.length;
    const subs = roots(column);
    for (const sub of subs) read(sub, "select");
    for (const q of out.slice(at)) q.output = output;
    // One table read by one subquery whose value is whether it finds a row.
    const only = out.length === at + 1 ? out[at]! : undefined;
    const sub = subs[0]!;
    const value =
      only && subs.length === 1 && toldValue(column, sub, only, ctx.schema, inners.get(sub)!);
    if (value) only![value] = true;
  });
  const members = memberConjuncts(select.where, ctx);
  for (const sub of roots(select.where)) {
    const at = out.length;
    read(sub, "where");
    const from = members.get(sub);
    const found = from && memberOf(sub, out.slice(at), from, ctx, inners.get(sub)!);
    if (found) found.q.member = found.member;
  }
  return out;
}

/**
 * The subqueries of `where`'s conjuncts `base.col IN (select ...)`, each with its base
 * column `col` and that column's kind (a number or text compared as the planner does).
 */
function memberConjuncts(
  where: unknown,
  ctx: SubqueryContext,
): Map<Node, { column: string; kind: string }> {
  const out = new Map<Node, { column: string; kind: string }>();
  const base = ctx.outer[0];
  if (!base) return out;
  for (const c of conjunctsOf(where)) {
    if (!isNode(c) || c.type !== "binary_expr" || String(c.operator).toUpperCase() !== "IN") {
      continue;
    }
    const left = c.left;
    const list = isNode(c.right) && c.right.type === "expr_list" ? c.right.value : undefined;
    const only = Array.isArray(list) && list.length === 1 && isNode(list[0]) ? list[0] : undefined;
    if (!isNode(left) || left.type !== "column_ref" || isNode(left.collate)) continue;
    if (!only || !isNode(only.ast) || only.ast.type !== "select") continue;
    const q = typeof left.table === "string" ? left.table : undefined;
    if (q === undefined ? ctx.outer.length > 1 : !base.names.has(q)) continue;
    const column = identifier(left.column);
    const kind = column === undefined ? undefined : base.kinds?.[column];
    if (column === undefined || (kind !== "number" && kind !== "text")) continue;
    // SQLite's IN compares by the left column's collation: a read of the subquery's table
    // by value would not.
    if (base.collations?.[column] === "other") continue;
    out.set(only.ast, { column, kind });
  }
  return out;
}

/**
 * The membership a subquery decides (see ShapeSubquery's `member`): it selects one column
 * of one table of its FROM, of the base column's kind. Its conditions are told (`filters`)
 * where it reads that table alone, nothing of the outer select, and they are equalities
 * the planner follows exactly on columns whose values compare as numbers or as text;
 * otherwise only a value the table holds no row of is told outside.
 */
function memberOf(
  sub: Node,
  pushed: readonly ShapeSubquery[],
  from: { column: string; kind: string },
  ctx: SubqueryContext,
  inner: ReadonlySet<string>,
): { q: ShapeSubquery; member: NonNullable<ShapeSubquery["member"]> } | undefined {
  const tables = (Array.isArray(sub.from) ? (sub.from as Node[]) : []).filter(
    (f) => typeof f.table === "string" && !isNode(f.expr),
  );
  const columns = Array.isArray(sub.columns) ? sub.columns : [];
  const only = columns.length === 1 && isNode(columns[0]) ? columns[0].expr : undefined;
  // The table whose column it selects: named by its qualifier, or the FROM's one table.
  const found: { f: Node; name: string; kinds: Record<string, string> }[] = [];
  for (const f of tables) {
    const kinds = ctx.schema(qualified(f))?.columns ?? {};
    const others =
      tables.length > 1 ? new Set(tables.filter((o) => o !== f).flatMap(namesOf)) : undefined;
    const scope: Scope = {
      ...{ table: qualified(f), names: new Set(namesOf(f)), primaryKey: undefined, kinds },
      ...{ params: ctx.params, dialect: ctx.dialect, widened: new Set(), inSubquery: true },
      ...(others && { others }),
    };
    const column = columnOf(only, scope);
    if (column && !column.collate) found.push({ f, name: column.name, kinds });
  }
  const selected = found.length === 1 ? found[0]! : undefined;
  if (!selected || selected.kinds[selected.name] !== from.kind) return undefined;
  if (ctx.schema(qualified(selected.f))?.collations?.[selected.name] === "other") return undefined;
  const reads = pushed.filter((q) => q.table === qualified(selected.f));
  const q = reads.length === 1 ? reads[0]! : undefined;
  if (!q) return undefined;
  const member = { column: selected.name, from: from.column };
  const alone =
    pushed.length === 1 &&
    tables.length === 1 &&
    !q.whole &&
    q.widened.length === 0 &&
    q.rowIds.length === 0 &&
    q.disjuncts.length > 0 &&
    !sub.groupby &&
    !sub.having &&
    !hasWindow(sub.limit) &&
    !hasOuterRef([sub.columns, sub.where, sub.orderby], inner);
  const filters: Record<string, "number" | "text"> = {};
  for (const d of alone ? q.disjuncts : []) {
    for (const f of d) {
      const kind = selected.kinds[f.column];
      if (f.op !== "eq" || (kind !== "number" && kind !== "text")) return { q, member };
      filters[f.column] = kind;
    }
  }
  return { q, member: alone ? { ...member, filters } : member };
}

/**
 * What result column `column` is, where a write to the table `sub` reads tells it without a
 * statement: `presence` where it is whether `sub` finds a row, `sub` reading one table
 * (`read`) on its link and equalities to values that cover a key of that table: at most
 * one row for each result row, so a write to the table tells the value for the rows it
 * names. `exists (...)`, or `(select count(*) ...)`, with no GROUP BY, HAVING or window;
 * `tally` where it is such a count whose conditions name no key (a favourites count).
 */
function toldValue(
  column: unknown,
  sub: Node,
  read: ShapeSubquery,
  schema: SqlSchema,
  inner: ReadonlySet<string>,
): "presence" | "tally" | undefined {
  const expr = isNode(column) ? column.expr : undefined;
  if (!isNode(expr)) return undefined;
  const name = isNode(expr.name) ? functionName(expr.name) : undefined;
  const args = isNode(expr.args) && Array.isArray(expr.args.value) ? expr.args.value : [];
  const exists = name === "exists" && args.length === 1 && isNode(args[0]) && args[0].ast === sub;
  const counted = expr.ast === sub && countsRows(sub);
  if (!exists && !counted) return undefined;
  const from = Array.isArray(sub.from) ? sub.from : [];
  if (from.length !== 1 || sub.groupby || sub.having || hasWindow(sub.limit)) return undefined;
  const link = read.link ?? read.unshown;
  if (!link || link.anchor !== undefined || read.whole) return undefined;
  // The link the only reference outside it: one the result does not show widens the
  // subquery's registration (its rows read by its own conditions), and nothing else.
  const outward = conjunctsOf(sub.where).filter((c) => hasOuterRef(c, inner));
  const widened = read.link ? read.widened : read.widened.filter((w) => w !== "subquery");
  if (outward.length !== 1 || widened.length > 0) return undefined;
  if (read.rowIds.length > 0 || read.disjuncts.length !== 1) return undefined;
  const filters = read.disjuncts[0]!;
  const equal = new Set([
    link.column,
    ...filters.filter((f) => f.op === "eq").map((f) => f.column),
  ]);
  const known = schema(read.table);
  const keys = [
    ...(known?.primaryKey !== undefined ? [[known.primaryKey]] : []),
    ...(known?.unique ?? []).map((c) => [c]),
    ...(known?.keys ?? []),
  ];
  const one = keys.some((key) => key.length > 0 && key.every((c) => equal.has(c)));
  if (one && filters.every((f) => f.op === "eq")) return "presence";
  // A count of the rows on its link that match its own conditions: each write to the
  // table adds to it or takes from it, told by the write's rows.
  return counted ? "tally" : undefined;
}

function functionName(name: Node): string | undefined {
  const parts = Array.isArray(name.name) ? name.name : [];
  const last = parts.at(-1);
  return isNode(last) && typeof last.value === "string" ? last.value.toLowerCase() : undefined;
}

/** Whether a select's one column is `count(*)` (or `count(1)`), with no FILTER or OVER. */
export function countsRows(sub: Node): boolean {
  const columns = Array.isArray(sub.columns) ? sub.columns : [];
  const only = columns.length === 1 && isNode(columns[0]) ? columns[0].expr : undefined;
  if (!isNode(only) || only.type !== "aggr_func" || String(only.name).toUpperCase() !== "COUNT") {
    return false;
  }
  if (only.filter || only.over) return false;
  const arg = isNode(only.args) ? only.args : undefined;
  if (!arg || arg.distinct) return false;
  const e = isNode(arg.expr) ? arg.expr : undefined;
  return e?.type === "star" || (e?.type === "number" && e.value === 1);
}

/** Whether a LIMIT or OFFSET is written (PostgreSQL's grammar gives an empty one). */
function hasWindow(limit: unknown): boolean {
  if (!isNode(limit)) return false;
  return !Array.isArray(limit.value) || limit.value.length > 0;
}

/** The outermost subqueries in `v`. */
function roots(v: unknown, out: Node[] = []): Node[] {
  if (Array.isArray(v)) for (const x of v) roots(x, out);
  else if (isNode(v)) {
    if (v.type === "select") out.push(v);
    else if (isNode(v.ast)) roots(v.ast, out);
    else for (const x of Object.values(v)) roots(x, out);
  }
  return out;
}

/** Every name a FROM clause declares in `sub`, at any depth: none of them is an outer table. */
function declared(v: unknown, into: Set<string>): void {
  if (Array.isArray(v)) for (const x of v) declared(x, into);
  else if (isNode(v)) {
    if (v.type === "select" && Array.isArray(v.from)) {
      for (const f of v.from as Node[]) for (const n of namesOf(f)) into.add(n);
    }
    for (const x of Object.values(v)) declared(x, into);
  }
}

function namesOf(f: Node): string[] {
  if (typeof f.as === "string") return [f.as];
  return typeof f.table === "string" ? [f.table, qualified(f)] : [];
}

function readsOf(
  sel: Node,
  mode: Mode,
  ctx: SubqueryContext,
  inner: ReadonlySet<string>,
  out: ShapeSubquery[],
): void {
  if (Array.isArray(sel.with) && sel.with.length > 0) throw new Fallback("cte");
  if (sel._next || sel.set_op) throw new Fallback("set-operation");
  const from = Array.isArray(sel.from) ? (sel.from as Node[]) : [];
  // Subqueries in its FROM, its ON clauses and every other part: their own tables.
  for (const sub of roots(Object.entries(sel).filter(([k]) => k !== "from"))) {
    readsOf(sub, mode, ctx, inner, out);
  }
  for (const f of from)
    for (const sub of roots([f.expr, f.on])) readsOf(sub, mode, ctx, inner, out);
  const outerJoined = from.some((f) => f.join && !/^(INNER )?JOIN$/i.test(String(f.join)));
  for (const f of from) {
    if (typeof f.table !== "string") continue;
    const others =
      from.length > 1 ? new Set(from.filter((o) => o !== f).flatMap(namesOf)) : undefined;
    out.push(tableRead(f, sel, others, outerJoined, mode, ctx, inner));
  }
}

/** What one table of a subquery reads: its own conditions, and its link when it has one. */
function tableRead(
  f: Node,
  sel: Node,
  others: Set<string> | undefined,
  outerJoined: boolean,
  mode: Mode,
  ctx: SubqueryContext,
  inner: ReadonlySet<string>,
): ShapeSubquery {
  const table = qualified(f);
  const read: ShapeSubquery = { table, in: mode, rowIds: [], disjuncts: [], widened: [] };
  const known = ctx.schema(table);
  if (!known) return { ...read, whole: "unknown-table" };
  const widened = new Set<WideningReason>();
  const scope: Scope = {
    table,
    names: new Set(namesOf(f)),
    primaryKey: known.primaryKey,
    kinds: known.columns ?? {},
    collations: known.collations,
    params: ctx.params,
    dialect: ctx.dialect,
    widened,
    inSubquery: true,
  };
  if (others) scope.others = others;
  let conjuncts = conjunctsOf(sel.where);
  if (mode === "select") {
    for (const c of conjuncts) {
      const found = linkOf(c, scope, ctx, inner);
      if (!found) continue;
      // One the result cannot show is no link to follow, but still names the rows it reads.
      if (!found.readable) {
        read.unshown ??= found.link;
        continue;
      }
      read.link = found.link;
      conjuncts = conjuncts.filter((x) => x !== c);
      break;
    }
  }
  try {
    let where: Dnf = TRUE;
    for (const c of conjuncts) where = and(where, predicate(c, scope));
    const { rowIds, disjuncts } = split(where);
    read.rowIds = rowIds;
    // A NULL-extended row is no row of the table: its absence matches such a condition.
    read.disjuncts = outerJoined && disjuncts.some((d) => matches({}, d)) ? [[]] : disjuncts;
  } catch (err) {
    if (err instanceof Fallback) return { ...read, whole: "subquery" };
    throw err;
  }
  if (!read.link && mode === "select" && hasOuterRef(sel.where, inner)) widened.add("subquery");
  read.widened = [...widened];
  const columns = subqueryColumns(sel, scope, ctx.schema);
  if (columns) read.columns = columns;
  return read;
}

/**
 * The columns of the subquery's table `scope` it may read anywhere (see columnsRead), when
 * every table of its FROM is a plain table the schema knows: a bare name is then settled
 * by their columns, innermost first, as SQL settles it.
 */
function subqueryColumns(sel: Node, scope: Scope, schema: SqlSchema): string[] | undefined {
  const from = Array.isArray(sel.from) ? (sel.from as Node[]) : [];
  const top: Scope[] = [];
  for (const f of from) {
    if (typeof f.table !== "string" || isNode(f.expr)) return undefined;
    const known = schema(qualified(f));
    if (!known?.columns) return undefined;
    top.push(
      namesOf(f).some((n) => scope.names.has(n))
        ? scope
        : { ...scope, names: new Set(namesOf(f)), kinds: known.columns },
    );
  }
  if (!scope.kinds || Object.keys(scope.kinds).length === 0) return undefined;
  return columnsRead(selectParts(sel), scope, top, schema);
}

function conjunctsOf(where: unknown): unknown[] {
  if (where === null || where === undefined) return [];
  if (
    isNode(where) &&
    where.type === "binary_expr" &&
    String(where.operator).toUpperCase() === "AND"
  ) {
    return [...conjunctsOf(where.left), ...conjunctsOf(where.right)];
  }
  return [where];
}

/**
 * `t.col = outer.x`: `col` surely this table's (qualified, or a column it is known to have),
 * `outer` a name no FROM of the subquery declares, `x` readable from the result, and both
 * compared as the planner compares key values (no collation, no floats or instants).
 */
function linkOf(
  c: unknown,
  scope: Scope,
  ctx: SubqueryContext,
  inner: ReadonlySet<string>,
): { link: NonNullable<ShapeSubquery["link"]>; readable: boolean } | undefined {
  if (!isNode(c) || c.type !== "binary_expr" || c.operator !== "=") return undefined;
  for (const [mine, theirs] of [
    [c.left, c.right],
    [c.right, c.left],
  ]) {
    const column = columnOf(mine, scope);
    if (!column || column.collate || !isNode(mine) || !isNode(theirs)) continue;
    if (mine.table == null && !(column.name in scope.kinds)) continue;
    if (!keyKind(scope.kinds[column.name])) continue;
    if (
      theirs.type !== "column_ref" ||
      isNode(theirs.collate) ||
      typeof theirs.table !== "string"
    ) {
      continue;
    }
    const q = theirs.table;
    const k = ctx.outer.findIndex((o) => o.names.has(q));
    const from = identifier(theirs.column);
    if (inner.has(q) || k < 0 || !ctx.outer[k]!.linkable || from === undefined || from === "*") {
      continue;
    }
    const link: NonNullable<ShapeSubquery["link"]> = { column: column.name, from };
    const anchor = ctx.outer[k]!.anchor;
    if (anchor !== undefined) link.anchor = anchor;
    return { link, readable: ctx.readable(k, from) };
  }
  return undefined;
}

/** A column kind whose values the planner compares as SQL's `=` does on keys. */
function keyKind(kind: string | undefined): boolean {
  return kind !== "float" && kind !== "instant";
}

/** Whether `where` holds a column reference qualified by a name the subquery does not declare. */
function hasOuterRef(where: unknown, inner: ReadonlySet<string>): boolean {
  if (Array.isArray(where)) return where.some((x) => hasOuterRef(x, inner));
  if (!isNode(where)) return false;
  if (where.type === "column_ref")
    return typeof where.table === "string" && !inner.has(where.table);
  return Object.values(where).some((x) => hasOuterRef(x, inner));
}

/**
 * Whether `expr` may read a column of the outer table called `names`: at its own level as
 * `mentions` reads it; inside a subquery, qualified by one of `names` that no FROM around
 * the reference declares, or unqualified where its FROM is not one table known to have it.
 */
export function readsOuter(
  expr: unknown,
  names: ReadonlySet<string>,
  schema: SqlSchema,
  levels: readonly Node[] = [],
): boolean {
  if (Array.isArray(expr)) return expr.some((x) => readsOuter(x, names, schema, levels));
  if (!isNode(expr)) return false;
  if (expr.type === "select") {
    // A derived table's select sees the levels around its FROM, not that FROM's names.
    const inside = [...levels, expr];
    const from = Array.isArray(expr.from) ? (expr.from as Node[]) : [];
    const rest = Object.entries(expr).filter(([k]) => k !== "from");
    return (
      from.some(
        (f) => readsOuter(f.expr, names, schema, levels) || readsOuter(f.on, names, schema, inside),
      ) || readsOuter(rest, names, schema, inside)
    );
  }
  if (isNode(expr.ast)) return readsOuter(expr.ast, names, schema, levels);
  if (expr.type !== "column_ref") {
    return Object.values(expr).some((x) => readsOuter(x, names, schema, levels));
  }
  const q = typeof expr.table === "string" ? expr.table : undefined;
  const own = levels.at(-1);
  if (!own) return q === undefined || names.has(q);
  if (q !== undefined) {
    return (
      names.has(q) &&
      !levels.some((l) => (l.from as Node[] | null)?.some((f) => namesOf(f).includes(q)))
    );
  }
  const from = Array.isArray(own.from) ? (own.from as Node[]) : [];
  const column = identifier(expr.column);
  const only = from.length === 1 && typeof from[0]!.table === "string" ? from[0]! : undefined;
  const kinds = only ? schema(qualified(only))?.columns : undefined;
  return !(kinds && column !== undefined && column in kinds);
}

/**
 * What a subquery's table registers: row tags of its lookups, and lists of its own
 * conditions, each AND-ed with `column = v` for the values `v` of its link in the result.
 * Returns false when the link could not be followed (a value unreadable, or too many):
 * then its own conditions alone.
 */
export function subqueryRegistration(
  s: ShapeLists,
  q: ShapeSubquery,
  rows: readonly unknown[] | undefined,
  tags: string[],
  lists: ListDependency[],
): boolean {
  if (q.whole) {
    lists.push(wholeTable(q.table));
    return true;
  }
  for (const id of q.rowIds) tags.push(rowTag(q.table, id));
  const link = q.link;
  if (link) {
    const columns = link.anchor === undefined ? s.columns : s.joins![link.anchor]!.columns;
    const read = reader(columns, s.names);
    const keys = keysIn(rows, (row) => read(row, link.from));
    if (keys) {
      for (const key of keys) {
        for (const value of twins(key)) {
          const eq: ListFilter = { column: link.column, op: "eq", value };
          for (const d of q.disjuncts) lists.push(readBy(q, [eq, ...d]));
        }
      }
      return true;
    }
  }
  for (const d of q.disjuncts) lists.push(readBy(q, d));
  return !link;
}

/** A list of the subquery's table without a window, with the columns it reads when known. */
function readBy(q: ShapeSubquery, filters: ListFilter[]): ListDependency {
  const list = anyWindow(q.table, filters);
  if (q.columns) list.columns = q.columns;
  return list;
}
