import type { SortKey } from "../../core/data/query.ts";
import { memoize } from "../../core/memo.ts";
import { columnsRead, selectParts } from "./columns-read.ts";
import { countJoinsAsSubqueries } from "./count-joins.ts";
import { joinsOf } from "./joins.ts";
import { cteNames, type ResolveTable, withSchemas } from "./names.ts";
import { outputReads } from "./outputs.ts";
import { parseSql, withoutAggregateFilters } from "./parse.ts";
import {
  binaryCollation,
  columnOf,
  Fallback,
  forEachNode,
  identifier,
  isNode,
  type Node,
  operand,
  plain,
  predicate,
  qualified,
  resultColumns,
  type Scope,
  split,
  TRUE,
} from "./predicates.ts";
import {
  NO_LIMIT,
  type ShapeJoin,
  type ShapeLists,
  type SqlDialect,
  type SqlSchema,
  type SqlShape,
  type WideningReason,
} from "./shape-types.ts";
import { countsRows, readsOuter, subqueriesOf } from "./subqueries.ts";

/**
 * What a SQL select depends on, from its text, its parameters and what is known of the
 * schema: the registration the data API makes for its own lists (row tags, list
 * predicates and windows the planner evaluates), for the shapes the planner understands,
 * and table tags for everything else. Pure: no I/O.
 *
 * The rule throughout: when unsure, register coarser, never wrongly exact. A condition the
 * planner cannot evaluate as SQL would is replaced by TRUE (the registered predicate then
 * matches more rows than the query's, which costs invalidations, never a stale read), and
 * a window whose order the planner cannot reproduce is dropped (every matching row then
 * invalidates); what cannot be analysed at all is registered on its tables.
 */

export { type Registration, registrationOf } from "./result-registration.ts";
export { resultRows, wholeTable } from "./rows.ts";
export * from "./shape-types.ts";

const parsers = {
  sqlite: memoize((sql) => tryParse(sql, "sqlite"), { size: 2000, maxLength: 8192 }),
  postgres: memoize((sql) => tryParse(sql, "postgres"), { size: 2000, maxLength: 8192 }),
};

/** The tables a statement reads, by its text; undefined when the parser cannot read it. */
function readTables(sql: string, dialect: SqlDialect): string[] | undefined {
  const ast = parsers[dialect](sql);
  return ast === null ? undefined : tablesIn(ast);
}
const tableLists = {
  sqlite: memoize((sql) => readTables(sql, "sqlite"), { size: 2000, maxLength: 8192 }),
  postgres: memoize((sql) => readTables(sql, "postgres"), { size: 2000, maxLength: 8192 }),
};

/**
 * Every table `sql` reads (subqueries included), memoised by its text: for callers that
 * need its tables on every run (a relational query's, hits included), not its shape.
 * Undefined when the parser cannot read it.
 */
export function sqlTables(sql: string, dialect: SqlDialect): readonly string[] | undefined {
  return tableLists[dialect](sql);
}

/**
 * Statements read without the FILTER clause of a `count(...)` (see withoutAggregateFilters):
 * no count of theirs is told by a write's rows (see `withoutCounts`).
 */
const FILTERED_COUNTS = new WeakSet<object>();

function tryParse(sql: string, dialect: SqlDialect): unknown {
  try {
    return parseSql(sql, dialect);
  } catch {
    const unfiltered = withoutAggregateFilters(sql);
    if (unfiltered === undefined) return null;
    // A `?` in a filter gone would shift the parameters after it onto other placeholders.
    const marks = (text: string) => text.split("?").length;
    if (dialect === "sqlite" && marks(unfiltered.sql) !== marks(sql)) return null;
    try {
      const ast = parseSql(unfiltered.sql, dialect);
      if (unfiltered.counts && typeof ast === "object" && ast !== null) FILTERED_COUNTS.add(ast);
      return ast;
    } catch {
      return null;
    }
  }
}

/**
 * What a select depends on. On PostgreSQL, `resolve` places the tables it names without
 * their schema as the session's search path does; without it they are taken as `public`'s.
 *
 * @example
 * sqlShape('select "id", "name" from "users" where "users"."id" = ?', [1], "sqlite",
 *   () => ({ primaryKey: "id" }));
 * // { tables: ["users"], widened: [], lists: { rowIds: [1], disjuncts: [], ... } }
 */
export function sqlShape(
  sql: string,
  params: readonly unknown[],
  dialect: SqlDialect,
  schema: SqlSchema,
  resolve?: ResolveTable,
): SqlShape {
  const parsed = parsers[dialect](sql);
  if (parsed === null) return { tables: [], fallback: "parse", widened: [] };
  const { ast, unresolved } = resolve
    ? withSchemas(parsed, resolve)
    : { ast: parsed, unresolved: false };
  let shape = analysed(ast, params, dialect, schema);
  if (typeof parsed === "object" && FILTERED_COUNTS.has(parsed)) shape = withoutCounts(shape);
  return unresolved ? { ...shape, unresolved: true } : shape;
}

/**
 * `shape` with no count told by rows (a tally, a presence, a counted aggregate): one of
 * its counts was read without the FILTER clause that narrows the rows it counts.
 */
function withoutCounts(shape: SqlShape): SqlShape {
  const s = shape.lists;
  if (!s) return shape;
  const { counted: _, ...lists } = s;
  if (s.subqueries) {
    lists.subqueries = s.subqueries.map(({ tally: __, presence: ___, ...q }) => q);
  }
  return { ...shape, lists };
}

function analysed(
  ast: unknown,
  params: readonly unknown[],
  dialect: SqlDialect,
  schema: SqlSchema,
): SqlShape {
  const statements = Array.isArray(ast) ? ast : [ast];
  if (statements.length !== 1 || !isNode(statements[0])) {
    return { tables: tablesIn(statements), fallback: "statements", widened: [] };
  }
  const select = countJoinsAsSubqueries(statements[0]);
  const tables = tablesIn(select);
  try {
    return { tables, ...analyse(select, params, dialect, schema) };
  } catch (err) {
    if (err instanceof Fallback) return { tables, fallback: err.reason, widened: [] };
    throw err;
  }
}

/** Every table named anywhere in the statement (its FROM and JOINs, subqueries included). */
function tablesIn(ast: unknown): string[] {
  const found = new Set<string>();
  forEachNode(ast, (v) => {
    if (!Array.isArray(v.from)) return;
    for (const f of v.from) {
      if (isNode(f) && typeof f.table === "string") found.add(qualified(f));
    }
  });
  const ctes = cteNames(ast);
  return [...found].filter((t) => !ctes.has(t));
}

function analyse(
  select: Node,
  params: readonly unknown[],
  dialect: SqlDialect,
  schema: SqlSchema,
): Omit<SqlShape, "tables"> {
  if (select.type !== "select") throw new Fallback("not-select");
  if (Array.isArray(select.with) && select.with.length > 0) throw new Fallback("cte");
  if (select._next || select.set_op) throw new Fallback("set-operation");
  if (isNode(select.distinct) ? select.distinct.type : select.distinct) {
    throw new Fallback("distinct");
  }
  if (select.having) throw new Fallback("group-by");
  if (Array.isArray(select.window) && select.window.length > 0) {
    throw new Fallback("window-function");
  }
  const from = select.from;
  if (!Array.isArray(from) || from.length === 0) throw new Fallback("unknown-table");
  const inner = aggregatedSelect(select);
  if (inner) return aggregateOver(select, analyse(inner, params, dialect, schema));
  for (const f of from) if (isNode(f) && (f.expr || f.ast)) throw new Fallback("subquery");
  for (const f of from)
    if (!isNode(f) || typeof f.table !== "string") throw new Fallback("unknown-table");
  scan(select);
  const groupBy = groupColumns(select.groupby);
  const grouped = groupBy.length > 0;
  // One row over every matching row: its columns name no row, its window is moot.
  const aggregate = !grouped && hasAggregate([select.columns, select.orderby]);

  const widened = new Set<WideningReason>();
  const known = (from as Node[]).map((f) => schema(qualified(f)) !== undefined);
  const scopes = (from as Node[]).map((f, i) => scopeOf(f, schema, params, dialect, widened, i));
  const base = scopes[0]!;
  if (scopes.length > 1) {
    for (const s of scopes) {
      const others = new Set(scopes.filter((o) => o !== s).flatMap((o) => [...o.names]));
      // Two tables going by one name: neither's columns can be told apart.
      if ([...s.names].some((n) => others.has(n))) throw new Fallback("join");
      s.others = others;
    }
  }
  const names = outputNames(select.columns);
  const columns = resultColumns(select.columns, base).map((c) => (aggregate ? undefined : c));
  const where = select.where ? predicate(select.where, base) : TRUE;
  const { rowIds, disjuncts, lookupsAlone } = split(where);
  const order = aggregate ? { sort: [], ordered: false } : orderOf(select.orderby, base);
  const window = aggregate
    ? { offset: 0, limit: NO_LIMIT, known: true }
    : windowOf(select.limit, base);
  const { offset, limit } = window;
  const windowed = offset > 0 || limit < NO_LIMIT;
  // A window matters only to lists: row lookups are exact whatever the window.
  if (windowed && !(order.ordered && window.known) && disjuncts.length > 0) {
    widened.add(order.reason ?? "order");
  }
  const lists: ShapeLists = {
    table: base.table,
    primaryKey: base.primaryKey!,
    columns,
    names,
    rowIds,
    lookupsAlone,
    disjuncts,
    sort: aggregate ? [{ column: base.primaryKey!, desc: false }] : order.sort,
    ordered: order.ordered && window.known,
    offset,
    limit,
    instants: Object.keys(base.kinds).filter((c) => base.kinds[c] === "instant"),
  };
  if (base.dates?.length) lists.dates = [...base.dates];
  if (base.numberTexts && Object.keys(base.numberTexts).length > 0) {
    lists.numberTexts = { ...base.numberTexts };
  }
  if (base.isoInstants) lists.isoInstants = { ...base.isoInstants };
  const ref = (from[0] as Node).as ?? (from[0] as Node).table;
  if (typeof ref === "string") lists.ref = ref;
  if (base.unique?.length) lists.unique = [...base.unique];
  if (grouped) lists.grouping = "key";
  if (aggregate) lists.grouping = "aggregate";
  if (aggregate && countsRows(select)) lists.counted = true;
  const read = columnsRead(selectParts(select), base, scopes, schema);
  if (read) lists.decides = read.filter((c) => c !== base.primaryKey);
  const ons = (from as Node[]).map((f) => f.on);
  const deciding = columnsRead(
    [select.where, ons, select.orderby, select.groupby],
    base,
    scopes,
    schema,
  );
  if (deciding) lists.deciding = deciding;
  const joins =
    scopes.length > 1
      ? joinsOf({
          select,
          base: lists,
          scopes,
          known,
          grouped,
          reads: (expr, n) => readsOuter(expr, n, schema),
          columnsRead: (parts, j) => columnsRead(parts, j, scopes, schema),
        })
      : [];
  if (joins.length > 0) lists.joins = joins;
  // Grouped by the base's key (and columns it decides): one result row per base row.
  if (grouped && !groupBy.some((c) => columnOf(c, base)?.name === base.primaryKey)) {
    throw new Fallback("group-by");
  }
  for (const c of groupBy) {
    const at = scopes.findIndex((s) => columnOf(c, s) !== undefined);
    if (at < 0 || (at > 0 && !parentChain(joins, at - 1))) throw new Fallback("group-by");
  }
  // A value computed per result row cannot decide which rows are in a window it may order.
  const linkable = !aggregate && !(windowed && !orderedByColumns(select.orderby, scopes, names));
  const subqueries = subqueriesOf(select, {
    schema,
    params,
    dialect,
    outer: scopes.map((s, i) => ({
      names: s.names,
      kinds: s.kinds,
      collations: s.collations,
      ...(i > 0 && { anchor: i - 1 }),
      linkable: linkable && (i === 0 || !grouped || parentChain(joins, i - 1)),
    })),
    readable: (k, column) => {
      const read = k === 0 ? columns : joins[k - 1]!.columns;
      return read.indexOf(column) >= 0 && read.indexOf(column) === read.lastIndexOf(column);
    },
  });
  if (subqueries.length > 0) lists.subqueries = subqueries;
  const outputs = outputReads(
    select,
    scopes,
    subqueries,
    (expr) => columnsRead(expr, base, scopes, schema),
    hasAggregate,
  );
  if (outputs) lists.outputs = outputs;
  for (const q of subqueries) {
    for (const r of q.widened) widened.add(r);
    if (q.whole) widened.add("subquery");
  }
  return { widened: [...widened], lists };
}

/**
 * Whether the ORDER BY reads only columns of the FROM's tables: not a result column's
 * alias (`order by "favoritesCount"`) nor any other expression.
 */
function orderedByColumns(
  orderBy: unknown,
  scopes: readonly Scope[],
  names: readonly (string | undefined)[],
): boolean {
  if (!Array.isArray(orderBy)) return true;
  return orderBy.every((o) => {
    const expr = isNode(o) ? o.expr : undefined;
    if (!isNode(expr) || expr.type !== "column_ref") return false;
    const column = identifier(expr.column);
    if (column === undefined) return false;
    if (typeof expr.table === "string")
      return scopes.some((s) => s.names.has(expr.table as string));
    return !names.includes(column) && Object.hasOwn(scopes[0]!.kinds, column);
  });
}

/** Whether join `k` and every anchor it hangs from are parents: one row per base row. */
function parentChain(joins: readonly ShapeJoin[], k: number | undefined): boolean {
  for (let at = k; at !== undefined; at = joins[at]!.anchor) {
    if (joins[at]!.kind !== "parent") return false;
  }
  return true;
}

/** The GROUP BY's expressions (none without one). */
function groupColumns(groupBy: unknown): unknown[] {
  if (Array.isArray(groupBy)) return groupBy;
  if (isNode(groupBy) && Array.isArray(groupBy.columns)) return groupBy.columns;
  return [];
}

/** Aggregate functions SQLite's and PostgreSQL's grammars read as plain functions. */
const AGGREGATES = new Set([
  ...["count", "sum", "total", "avg", "min", "max", "group_concat", "string_agg"],
  ...["json_group_array", "json_group_object", "jsonb_group_array", "jsonb_group_object"],
  ...["json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "array_agg"],
  ...["bool_and", "bool_or", "every", "bit_and", "bit_or", "xmlagg"],
]);

/** Whether an aggregate is computed at this level (those of subqueries are their own). */
function hasAggregate(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(hasAggregate);
  if (!isNode(v) || v.type === "select" || isNode(v.ast)) return false;
  if (v.type === "aggr_func") return true;
  if (v.type === "function" && isNode(v.name) && Array.isArray(v.name.name)) {
    const name = v.name.name.map((p) => (isNode(p) ? p.value : "")).join(".");
    if (AGGREGATES.has(String(name).toLowerCase())) return true;
  }
  return Object.values(v).some(hasAggregate);
}

/**
 * The select of `SELECT COUNT(*) FROM (SELECT ...) AS sub`: one derived table, and only
 * aggregates over it (Prisma counts so, its `take` and `skip` inside). Undefined otherwise.
 */
function aggregatedSelect(select: Node): Node | undefined {
  const from = select.from as unknown[];
  const only = from.length === 1 && isNode(from[0]) ? from[0] : undefined;
  const inner = only && isNode(only.expr) && isNode(only.expr.ast) ? only.expr.ast : undefined;
  if (!inner || select.where || select.groupby || select.orderby) return undefined;
  const columns = select.columns;
  if (!Array.isArray(columns) || columns.length === 0) return undefined;
  const aggregates = columns.every(
    (c) => isNode(c) && isNode(c.expr) && c.expr.type === "aggr_func" && !c.expr.over,
  );
  return aggregates ? inner : undefined;
}

/**
 * Aggregates over the rows of a derived table (`aggregatedSelect`): one row that any
 * change of a row the inner select matches may change, whatever its window (a count of a
 * page changes when a row enters the predicate anywhere before it), so its lists are the
 * inner select's predicates without a window. Inner joins or groups fall back: their rows
 * are not in the result to register them by.
 */
function aggregateOver(select: Node, inner: Omit<SqlShape, "tables">): Omit<SqlShape, "tables"> {
  const lists = inner.lists;
  if (inner.fallback || !lists) return inner;
  if (lists.joins || lists.grouping) throw new Fallback("subquery");
  const names = outputNames(select.columns);
  return {
    // The window is gone: what made it unordered no longer narrows anything.
    widened: inner.widened.filter((w) => w !== "order"),
    lists: {
      ...lists,
      columns: names.map(() => undefined),
      names,
      sort: [{ column: lists.primaryKey, desc: false }],
      ordered: false,
      offset: 0,
      limit: NO_LIMIT,
      grouping: "aggregate",
    },
  };
}

/**
 * What is known of one table of the FROM clause, and the names its columns go by. The base
 * needs a known primary key; a joined table the schema does not know is registered whole.
 */
function scopeOf(
  from: Node,
  schema: SqlSchema,
  params: readonly unknown[],
  dialect: SqlDialect,
  widened: Set<WideningReason>,
  at: number,
): Scope {
  const table = qualified(from);
  const known = schema(table);
  if (!known && at === 0) throw new Fallback("unknown-table");
  const primaryKey = known?.primaryKey;
  if (!primaryKey && at === 0) throw new Fallback("no-primary-key");
  const name = from.table as string;
  return {
    table,
    names: new Set(typeof from.as === "string" ? [from.as] : [name, table]),
    primaryKey,
    kinds: known?.columns ?? {},
    collations: known?.collations,
    dates: known?.dates,
    numberTexts: known?.numberTexts,
    isoInstants: known?.isoInstants,
    unique: known?.unique,
    params,
    dialect,
    widened,
  };
}

/** Each result column's name in a row read by name: its alias, or its column's name. */
function outputNames(columns: unknown): (string | undefined)[] {
  if (!Array.isArray(columns)) return [];
  return columns.map((c) => {
    if (!isNode(c)) return undefined;
    if (typeof c.as === "string") return c.as;
    const expr = c.expr;
    if (!isNode(expr)) return undefined;
    if (expr.type === "double_quote_string" && typeof expr.value === "string") return expr.value;
    return expr.type === "column_ref" ? identifier(expr.column) : undefined;
  });
}

/**
 * Refuses what the planner cannot follow at this level: window functions, aggregates
 * outside the select list and ORDER BY. Subqueries are analysed on their own.
 */
function scan(select: Node): void {
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    if (!isNode(v) || v.type === "select" || isNode(v.ast)) return;
    if (v.over) throw new Fallback("window-function");
    for (const x of Object.values(v)) walk(x);
  };
  walk([select.columns, select.where, select.orderby, select.limit, select.groupby]);
  if (hasAggregate([select.where, select.limit, select.groupby])) throw new Fallback("aggregate");
}

/**
 * The ORDER BY as the planner's sort, cut after the primary key (the order is total from
 * there). `ordered` is false when a key is not a column it compares as the database
 * orders: then the result's window is dropped, never guessed.
 */
function orderOf(
  orderBy: unknown,
  scope: Scope,
): { sort: SortKey[]; ordered: boolean; reason?: WideningReason } {
  const sort: SortKey[] = [];
  if (!Array.isArray(orderBy) || orderBy.length === 0) {
    return { sort: [{ column: scope.primaryKey!, desc: false }], ordered: false };
  }
  for (const o of orderBy) {
    const column = isNode(o) ? columnOf(o.expr, scope) : undefined;
    if (!column) return { sort, ordered: false };
    const kind = scope.kinds[column.name] ?? "other";
    if (kind === "other") return { sort, ordered: false };
    if (column.collate && kind === "instant") return { sort, ordered: false };
    const text = kind === "text" || kind === "ordered" || column.collate;
    if (text && !binaryCollation(scope, column)) {
      return { sort, ordered: false, reason: "collation" };
    }
    const node = o as Node;
    const desc = String(node.type ?? "ASC").toUpperCase() === "DESC";
    const key: SortKey = { column: column.name, desc, ...(column.collate && { collated: true }) };
    const nulls = String(node.nulls ?? "")
      .toLowerCase()
      .replace(/[\s_]/g, "");
    if (nulls === "nullsfirst") key.nulls = "first";
    else if (nulls === "nullslast") key.nulls = "last";
    else if (nulls !== "") return { sort, ordered: false };
    // PostgreSQL sorts NULLs last ascending and first descending: the planner's reverse.
    else if (scope.dialect === "postgres") key.nulls = desc ? "first" : "last";
    sort.push(key);
    if (column.name === scope.primaryKey) break;
  }
  return { sort, ordered: true };
}

/** LIMIT and OFFSET; `known` is false when either is not a plain number (the window is dropped). */
function windowOf(limit: unknown, scope: Scope): { offset: number; limit: number; known: boolean } {
  const none = { offset: 0, limit: NO_LIMIT, known: true };
  if (!isNode(limit) || !Array.isArray(limit.value) || limit.value.length === 0) return none;
  const values = limit.value.map((v) => plain(operand(v, scope)));
  const sep = String(limit.seperator ?? "").toLowerCase();
  // SQLite's `LIMIT offset, count`; `LIMIT count OFFSET offset`; PostgreSQL's lone OFFSET.
  let [count, offset] =
    sep === ","
      ? [values[1], values[0]]
      : sep === "offset" && values.length === 1
        ? [undefined, values[0]]
        : [values[0], values[1]];
  const integer = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v);
  let known = true;
  if (count === undefined || count === null || (integer(count) && (count as number) < 0)) {
    count = NO_LIMIT; // no limit (SQLite reads a negative LIMIT as none)
  } else if (!integer(count)) {
    count = NO_LIMIT;
    known = false;
  }
  if (offset === undefined || offset === null) offset = 0;
  else if (!integer(offset) || (offset as number) < 0) {
    offset = 0;
    known = false;
  }
  return { offset: offset as number, limit: count as number, known };
}
