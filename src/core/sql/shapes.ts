import type { ListDependency } from "../deps/planner.ts";
import { rowTag, tableTag } from "../deps/planner.ts";
import { matches } from "../deps/predicate.ts";
import { memoize } from "../memo.ts";
import type { ListFilter, SortKey } from "../query.ts";
import { canonicalInstant } from "./forms.ts";
import { parseSql } from "./parse.ts";
import {
  binaryCollation,
  columnOf,
  Fallback,
  identifier,
  isNode,
  mentions,
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
  MAX_ROW_TAGS,
  NO_LIMIT,
  type ShapeJoin,
  type ShapeLists,
  type SqlDialect,
  type SqlSchema,
  type SqlShape,
  type WideningReason,
} from "./shape-types.ts";

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

export * from "./shape-types.ts";

const parsers = {
  sqlite: memoize((sql) => tryParse(sql, "sqlite"), { size: 2000, maxLength: 8192 }),
  postgres: memoize((sql) => tryParse(sql, "postgres"), { size: 2000, maxLength: 8192 }),
};

function tryParse(sql: string, dialect: SqlDialect): unknown {
  try {
    return parseSql(sql, dialect);
  } catch {
    return null;
  }
}

/**
 * What a select depends on.
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
): SqlShape {
  const ast = parsers[dialect](sql);
  if (ast === null) return { tables: [], fallback: "parse", widened: [] };
  const statements = Array.isArray(ast) ? ast : [ast];
  if (statements.length !== 1 || !isNode(statements[0])) {
    return { tables: tablesIn(statements), fallback: "statements", widened: [] };
  }
  const select = statements[0];
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
  const ctes = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    if (!isNode(v)) return;
    if (Array.isArray(v.with)) {
      for (const w of v.with) {
        const name = isNode(w) && isNode(w.name) ? w.name.value : undefined;
        if (typeof name === "string") ctes.add(name);
      }
    }
    if (Array.isArray(v.from)) {
      for (const f of v.from) {
        if (isNode(f) && typeof f.table === "string") found.add(qualified(f));
      }
    }
    for (const x of Object.values(v)) walk(x);
  };
  walk(ast);
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
  const groupBy = select.groupby;
  if (
    (Array.isArray(groupBy) && groupBy.length > 0) ||
    (isNode(groupBy) && Array.isArray(groupBy.columns) && groupBy.columns.length > 0) ||
    select.having
  ) {
    throw new Fallback("group-by");
  }
  if (Array.isArray(select.window) && select.window.length > 0) {
    throw new Fallback("window-function");
  }
  const from = select.from;
  if (!Array.isArray(from) || from.length === 0) throw new Fallback("unknown-table");
  for (const f of from) if (isNode(f) && (f.expr || f.ast)) throw new Fallback("subquery");
  if (from.length > 2) throw new Fallback("join");
  for (const f of from)
    if (!isNode(f) || typeof f.table !== "string") throw new Fallback("unknown-table");
  scan([select.columns, select.where, select.orderby, select.limit]);

  const widened = new Set<WideningReason>();
  const scopes = (from as Node[]).map((f) => scopeOf(f, schema, params, dialect, widened));
  const [base, joined] = scopes as [Scope, Scope | undefined];
  if (joined) {
    // A table joined to itself: one write would change both sides at once.
    if (base.table === joined.table || [...joined.names].some((n) => base.names.has(n))) {
      throw new Fallback("join");
    }
    base.others = joined.names;
    joined.others = base.names;
  }
  const names = outputNames(select.columns);
  const columns = resultColumns(select.columns, base);
  const where = select.where ? predicate(select.where, base) : TRUE;
  const { rowIds, disjuncts, lookupsAlone } = split(where);
  const { sort, ordered, reason } = orderOf(select.orderby, base);
  const { offset, limit, known: windowKnown } = windowOf(select.limit, base);
  // A window matters only to lists: row lookups are exact whatever the window.
  if ((offset > 0 || limit < NO_LIMIT) && !(ordered && windowKnown) && disjuncts.length > 0) {
    widened.add(reason ?? "order");
  }
  const lists: ShapeLists = {
    table: base.table,
    primaryKey: base.primaryKey,
    columns,
    names,
    rowIds,
    lookupsAlone,
    disjuncts,
    sort,
    ordered: ordered && windowKnown,
    offset,
    limit,
    instants: Object.keys(base.kinds).filter((c) => base.kinds[c] === "instant"),
  };
  if (joined) lists.join = joinOf(from[1] as Node, select, lists, base, joined);
  return { widened: [...widened], lists };
}

/** What is known of one table of the FROM clause, and the names its columns go by. */
function scopeOf(
  from: Node,
  schema: SqlSchema,
  params: readonly unknown[],
  dialect: SqlDialect,
  widened: Set<WideningReason>,
): Scope {
  const table = qualified(from);
  const known = schema(table);
  if (!known) throw new Fallback("unknown-table");
  const primaryKey = known.primaryKey;
  if (!primaryKey) throw new Fallback("no-primary-key");
  const name = from.table as string;
  return {
    table,
    names: new Set(typeof from.as === "string" ? [from.as] : [name, table]),
    primaryKey,
    kinds: known.columns ?? {},
    params,
    dialect,
    widened,
  };
}

const JOINS = new Set(["INNER JOIN", "JOIN", "LEFT JOIN", "LEFT OUTER JOIN"]);

/**
 * How the joined table's writes reach the result, for a join on one key equality whose one
 * side is a primary key (what a foreign key references): the base's rows then each meet at
 * most one parent row, or a parent's set of children. Declared foreign keys are not needed,
 * nor trusted: a reference may dangle (SQLite does not enforce them by default), and that
 * is allowed for below. Anything else is a `join` fallback.
 *
 * - Parent (`orders JOIN users ON users.id = orders.user_id`): the result's rows name their
 *   parents by the base's key column: those parents' row tags. A parent row elsewhere can
 *   change the result only through the parent's conditions, its order under a window, or
 *   (inner join) by completing a dangling reference: then also lists on the parent table
 *   with its conditions and no window (all of it when it has none).
 * - Children (`users LEFT JOIN orders ON orders.user_id = users.id`): the children of each
 *   base row in the result, or looked up, as a list on the foreign key's value. Exact when
 *   every base row whose children could change the result is one of those: base rows looked
 *   up by key only, or a left join whose WHERE does not read the children, from the first
 *   row, with no LIMIT or an order the planner follows. Otherwise the child table at table
 *   level.
 */
function joinOf(from: Node, select: Node, base: ShapeLists, b: Scope, j: Scope): ShapeJoin {
  const type = String(from.join ?? "").toUpperCase();
  if (!JOINS.has(type) || from.using || !isNode(from.on)) throw new Fallback("join");
  const inner = !type.startsWith("LEFT");
  const on = from.on;
  if (on.type !== "binary_expr" || on.operator !== "=") throw new Fallback("join");
  const ends = [on.left, on.right];
  const baseEnd = ends.map((e) => columnOf(e, b)).find((c) => c !== undefined);
  const joinedEnd = ends.map((e) => columnOf(e, j)).find((c) => c !== undefined);
  if (!baseEnd || !joinedEnd || baseEnd.collate || joinedEnd.collate) throw new Fallback("join");
  const columns = resultColumns(select.columns, j);
  const whereReads = mentions(select.where, j.names);
  const windowed = base.offset > 0 || base.limit < NO_LIMIT;
  // Keys past the base's primary key do not decide the window: an order that reaches it
  // (`ordered`) reads none of the joined table's columns before it.
  const orderReads = windowed && !base.ordered && mentions(select.orderby, j.names);
  if (whereReads || orderReads) b.widened.add("join");
  const whole = (link: ShapeJoin): ShapeJoin => {
    b.widened.add("join");
    return { ...link, ids: [], whole: true };
  };
  if (joinedEnd.name === j.primaryKey) {
    const link: ShapeJoin = {
      table: j.table,
      primaryKey: j.primaryKey,
      kind: "parent",
      column: j.primaryKey,
      from: baseEnd.name,
      ids: [],
      columns,
      inner,
    };
    // A NULL-extended row names its (missing) parent only by the base's key column.
    const readable =
      base.columns.includes(baseEnd.name) || (inner && columns.includes(j.primaryKey));
    if (!readable) return whole(link);
    if (!(inner || whereReads || orderReads)) return link;
    b.widened.add("join");
    const reach = split(select.where ? predicate(select.where, j) : TRUE);
    // In a left join a missing parent reads as a row of NULLs: deleting one brings its
    // children in under a condition NULL satisfies, which its old row may not.
    if (!inner && reach.disjuncts.some((filters) => matches({}, filters))) {
      return { ...link, reach: { rowIds: [], disjuncts: [[]] } };
    }
    return { ...link, reach };
  }
  if (baseEnd.name !== b.primaryKey) throw new Fallback("join");
  const link: ShapeJoin = {
    table: j.table,
    primaryKey: j.primaryKey,
    kind: "children",
    column: joinedEnd.name,
    from: b.primaryKey,
    ids: base.rowIds,
    columns,
    inner,
  };
  const lookups = base.disjuncts.length === 0;
  const exact =
    lookups ||
    (!inner &&
      !whereReads &&
      base.offset === 0 &&
      (base.limit === NO_LIMIT || (base.ordered && base.sort.at(-1)?.column === b.primaryKey)));
  const readable =
    lookups || base.columns.includes(b.primaryKey) || (inner && columns.includes(link.column));
  return exact && readable ? link : whole(link);
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

/** Refuses what the planner cannot follow anywhere in these parts: aggregates, windows, subqueries. */
function scan(parts: unknown[]): void {
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    if (!isNode(v)) return;
    if (v.type === "aggr_func") throw new Fallback("aggregate");
    if (v.over) throw new Fallback("window-function");
    if (v.type === "select" || isNode(v.ast)) throw new Fallback("subquery");
    for (const x of Object.values(v)) walk(x);
  };
  walk(parts);
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
    return { sort: [{ column: scope.primaryKey, desc: false }], ordered: false };
  }
  for (const o of orderBy) {
    const column = isNode(o) ? columnOf(o.expr, scope) : undefined;
    if (!column) return { sort, ordered: false };
    const kind = scope.kinds[column.name] ?? "other";
    if (kind === "other") return { sort, ordered: false };
    if (column.collate && kind === "instant") return { sort, ordered: false };
    if ((kind === "text" || column.collate) && !binaryCollation(scope, column.collate)) {
      return { sort, ordered: false, reason: "collation" };
    }
    const node = o as Node;
    const desc = String(node.type ?? "ASC").toUpperCase() === "DESC";
    const key: SortKey = { column: column.name, desc };
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

/** What an entry registers once its result is known. */
export interface Registration {
  /** Table tags (the planner's fallback) and row tags (`table#id`). */
  tags: string[];
  lists: ListDependency[];
  /** Why it is wider than the shape said: the joined table at table level once the rows were read. */
  widened?: "join";
}

/**
 * The registration of a stored result: table tags for every table read; at table level, a
 * list of the whole table for each (`wholeTable`); otherwise the
 * row tags of the looked-up keys and of the result rows that carry the primary key, and
 * one list per disjunct with the window's count and last sort values taken from the rows,
 * and for a join what its other table's rows reach (`joinRegistration`).
 * `rows` are the result's rows, each an array by result column or an object by column
 * name; undefined when unknown (then no window is registered, only predicates).
 */
export function registrationOf(
  shape: SqlShape,
  rows: readonly unknown[] | undefined,
): Registration {
  const tags = shape.tables.map(tableTag);
  const s = shape.lists;
  if (!s || shape.fallback) return { tags, lists: shape.tables.map(wholeTable) };
  const lists: ListDependency[] = [];
  for (const id of s.rowIds) tags.push(rowTag(s.table, id));
  const read = rows ? reader(s.columns, s.names) : undefined;
  // Row tags of the result are a shortcut for the planner (its lists cover the same rows):
  // kept for results of a bounded size only.
  if (rows && read && rows.length <= MAX_ROW_TAGS) {
    for (const row of rows) {
      const id = plain(read(row, s.primaryKey));
      if (typeof id === "number" || typeof id === "string") tags.push(rowTag(s.table, id));
    }
  }
  let last: unknown[] | undefined;
  const lastRow = rows?.[rows.length - 1];
  if (s.ordered && read && lastRow !== undefined && s.disjuncts.length > 0) {
    const values = s.sort.map((k) => {
      const v = plain(read(lastRow, k.column));
      return v !== null && s.instants?.includes(k.column) ? canonicalInstant(v) : v;
    });
    const comparable = (v: unknown) =>
      v === null || (typeof v === "number" && Number.isFinite(v)) || typeof v === "string";
    if (values.every(comparable)) last = values;
  }
  const count = rows?.length ?? 0;
  for (const filters of s.disjuncts) {
    const list: ListDependency = {
      table: s.table,
      filters,
      sort: s.sort,
      offset: s.offset,
      limit: s.limit,
      // Without `last` the planner takes any matching row (the predicate rule).
      count,
    };
    if (last) list.last = last;
    lists.push(list);
  }
  const registration: Registration = { tags, lists };
  if (s.join && !joinRegistration(s, s.join, rows, tags, lists) && !s.join.whole) {
    registration.widened = "join";
  }
  registration.tags = [...new Set(tags)];
  return registration;
}

/**
 * What the joined table's rows reach: a parent's row tag or a list of the children of each
 * key the result (or the query) names, and the `reach` lookups and lists; the whole table
 * when a result row's key cannot be read or there are too many (then it returns false).
 */
function joinRegistration(
  s: ShapeLists,
  j: ShapeJoin,
  rows: readonly unknown[] | undefined,
  tags: string[],
  lists: ListDependency[],
): boolean {
  const keys = new Set<string | number>(j.ids.map(plain) as (string | number)[]);
  // Children of looked-up base rows are all named by `ids`: the result adds nothing.
  const fromIds = j.kind === "children" && s.disjuncts.length === 0;
  let whole = j.whole === true || (!fromIds && rows === undefined);
  if (!whole && !fromIds && rows) {
    const fromBase = reader(s.columns, s.names);
    const fromJoined = reader(j.columns, s.names);
    for (const row of rows) {
      let key = plain(fromBase(row, j.from));
      if (key === undefined && j.inner) key = plain(fromJoined(row, j.column));
      if (key === null) continue; // a NULL key joins nothing
      if (typeof key !== "number" && typeof key !== "string") {
        whole = true;
        break;
      }
      keys.add(key);
    }
  }
  if (whole || keys.size > MAX_ROW_TAGS) {
    lists.push(wholeTable(j.table));
    return false;
  }
  for (const key of keys) {
    if (j.kind === "parent") tags.push(rowTag(j.table, key));
    else for (const value of twins(key)) lists.push(valueList(j.table, j.column, value));
  }
  if (!j.reach) return true;
  for (const id of j.reach.rowIds) tags.push(rowTag(j.table, id));
  for (const filters of j.reach.disjuncts) {
    lists.push({ table: j.table, filters, sort: [], offset: 0, limit: NO_LIMIT, count: 0 });
  }
  return true;
}

/**
 * Every row of `table` whose `column` equals `value`: what the data API's joined arrays
 * register as set tags, as a list here, since a set tag is followed only for the join
 * columns of the planner's schema (a shared engine's is its owner's) and a list on any
 * table is. The planner finds it by its value (`listsFor`), without a scan.
 */
function valueList(table: string, column: string, value: string | number): ListDependency {
  const filters: ListFilter[] = [{ column, op: "eq", value }];
  return { table, filters, sort: [], offset: 0, limit: NO_LIMIT, count: 0 };
}

/**
 * A key and the same key in the other type: a foreign key may be stored, or captured, as
 * text or as a number where the result or the query gave the other ("5" and 5).
 */
function twins(key: string | number): (string | number)[] {
  if (typeof key === "number") return [key, String(key)];
  const n = Number(key);
  return key.trim() !== "" && Number.isFinite(n) ? [key, n] : [key];
}

/**
 * A list every row of the table belongs to: a select registered at table level goes with
 * any write to the table. (The table tag alone is read only for writes the planner cannot
 * analyse; an analysable write looks at rows and lists.)
 */
export function wholeTable(table: string): ListDependency {
  return { table, filters: [], sort: [], offset: 0, limit: NO_LIMIT, count: 0 };
}

/**
 * Reads a table's column of a result row, by position (arrays, libSQL rows) or by the
 * result column's name (undefined when two result columns share it: a row read by name
 * holds only one of them).
 */
function reader(
  columns: readonly (string | undefined)[],
  names: readonly (string | undefined)[],
): (row: unknown, column: string) => unknown {
  return (row, column) => {
    if (typeof row !== "object" || row === null) return undefined;
    const r = row as Record<string | number, unknown>;
    const i = columns.indexOf(column);
    if (i < 0 || columns.indexOf(column, i + 1) >= 0) return undefined;
    if (Array.isArray(row) || typeof r.length === "number") return r[i];
    const name = names[i];
    if (name === undefined || names.indexOf(name) !== i || names.lastIndexOf(name) !== i) {
      return undefined;
    }
    return r[name];
  };
}

/** The rows of a driver's raw result: an array of rows, or an object with `rows`. */
export function resultRows(response: unknown): readonly unknown[] | undefined {
  if (Array.isArray(response)) return response;
  if (isNode(response) && Array.isArray(response.rows)) return response.rows;
  return undefined;
}
