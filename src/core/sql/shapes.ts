import type { ListDependency } from "../deps/planner.ts";
import { rowTag, tableTag } from "../deps/planner.ts";
import { matches } from "../deps/predicate.ts";
import { memoize } from "../memo.ts";
import type { ListFilter, SortKey } from "../query.ts";
import { canonicalInstant } from "./forms.ts";
import { parseSql, type SqlDialect } from "./parse.ts";

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

export type { SqlDialect };

/** How a column's values compare in the planner: only these two are compared in memory. */
/**
 * How the planner compares a column's values:
 * - "text" by code point, "number" as numbers;
 * - "float": PostgreSQL's double precision, as numbers, but NaN and the infinities are not
 *   followed (PostgreSQL sorts NaN above every number; capture records them as text): a
 *   result holding one has no window, a change carrying one changes its table as a whole;
 * - "instant": a PostgreSQL timestamp, ordered by its canonical form (see forms.ts),
 *   never compared with a query's value;
 * - "other": neither compared nor ordered by.
 * "float" and "instant" only where the cache's captured changes are put in the same form
 * (the query caches' own capture, see DrizzleCapture).
 */
export type SqlColumnKind = "text" | "number" | "float" | "instant" | "other";

/** What is known of one table. */
export interface SqlTable {
  /** Its single-column primary key; without one the table is registered at table level. */
  primaryKey?: string;
  /**
   * Its columns' kinds, by column name. A column not listed is "other": conditions on it
   * and orders by it are not evaluated (only equality on the primary key is).
   */
  columns?: Readonly<Record<string, SqlColumnKind>>;
}

/** What is known of a table, by name (`schema.table`, or the bare name). */
export type SqlSchema = (table: string) => SqlTable | undefined;

/** Why a select is registered at table level. */
export type FallbackReason =
  | "parse"
  | "not-select"
  | "statements"
  | "set-operation"
  | "cte"
  | "subquery"
  | "join"
  | "aggregate"
  | "group-by"
  | "distinct"
  | "window-function"
  | "unknown-table"
  | "no-primary-key"
  | "disjuncts";

/** Why a registration is coarser than the query (still exact about what it registers). */
export type WideningReason =
  /** A condition the planner does not evaluate (a function, NOT, BETWEEN, a cast...): taken as TRUE. */
  | "expression"
  /** A condition on a column of a kind it does not compare, or a value of another type. */
  | "type"
  /** A collation other than the binary one (PostgreSQL text ranges and orders need COLLATE "C"). */
  | "collation"
  /** A LIKE pattern read as a wider prefix (SQLite's LIKE ignores ASCII case). */
  | "like"
  /** An order the planner cannot reproduce, or a LIMIT without one: the window is dropped. */
  | "order"
  /**
   * A join whose other table the planner does not evaluate against a row: a condition or
   * an order on it taken as TRUE on this side, the other side's lists without a window,
   * or the other table at table level (see `ShapeJoin`).
   */
  | "join";

/** The lists of an analysed select, before its result is known. */
export interface ShapeLists {
  table: string;
  primaryKey: string;
  /** Each result column's table column, by position (undefined for an expression or another table's). */
  columns: (string | undefined)[];
  /** Each result column's name in a row read by name (its alias or its column's name). */
  names: (string | undefined)[];
  /** Primary-key values looked up: their rows' tags stand for the disjuncts naming them. */
  rowIds: (string | number)[];
  /**
   * Each lookup tests the primary key alone (`id = ?`, `id IN (...)`): no other condition
   * of its disjunct was dropped with it (`id = ? AND deleted = 0` is not alone). The row
   * tags do not need it; a patch of the result does.
   */
  lookupsAlone: boolean;
  /** The other disjuncts, each an AND of filters: one list each, same window. */
  disjuncts: ListFilter[][];
  sort: SortKey[];
  /** Whether the result's order is the planner's: only then does the window count. */
  ordered: boolean;
  offset: number;
  limit: number;
  /** Columns of the table that are instants: their values are compared in canonical form. */
  instants?: string[];
  /** The second table of a join along a key. */
  join?: ShapeJoin;
}

/**
 * The joined table of a select over two tables joined on `joined.column = base.from`, one
 * of them a primary key (see `joinOf`): which of its rows the result reads, named by the
 * base's key values in the result (`from`) and by `ids` (a lookup's keys).
 */
export interface ShapeJoin {
  table: string;
  primaryKey: string;
  /** "parent": `column` is its primary key (row tags); "children": a foreign key (lists on its value). */
  kind: "parent" | "children";
  column: string;
  /** The base table's column whose values in the result name the joined rows. */
  from: string;
  /** Values of `from` known from the query (a children join of looked-up base rows). */
  ids: (string | number)[];
  /** Each result column's column of this table, by position. */
  columns: (string | undefined)[];
  /** An inner join: `column` in the result holds `from`'s value too. */
  inner: boolean;
  /** Rows that may change the result beyond the linked ones: lookups and lists without a window. */
  reach?: { rowIds: (string | number)[]; disjuncts: ListFilter[][] };
  /** Registered at table level: the links cannot be followed. */
  whole?: boolean;
}

export interface SqlShape {
  /** The tables read (`schema.table` or the bare name). */
  tables: string[];
  /** Set when registered on its tables only. */
  fallback?: FallbackReason;
  /** Why the lists are wider than the query; empty when exact. */
  widened: WideningReason[];
  lists?: ShapeLists;
}

/** A list without LIMIT: its window holds every row past the offset. */
export const NO_LIMIT = Number.MAX_SAFE_INTEGER;
/** Disjuncts past this many (after AND distributes over OR) fall back to the table. */
export const MAX_DISJUNCTS = 32;
/** Results with more rows register no row tags of their own (their lists cover them). */
export const MAX_ROW_TAGS = 256;
/** SQLite LIKE prefixes keep at most this many ASCII letters (2^n case variants). */
const LIKE_LETTERS = 3;

// node-sql-parser's AST, read as plain data.
type Node = Record<string, unknown>;
const isNode = (v: unknown): v is Node => typeof v === "object" && v !== null && !Array.isArray(v);

class Fallback extends Error {
  constructor(readonly reason: FallbackReason) {
    super(reason);
  }
}

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

function qualified(from: Node): string {
  const db =
    typeof from.db === "string" ? from.db : typeof from.schema === "string" ? from.schema : null;
  const table = from.table as string;
  return db && db !== "public" && db !== "main" ? `${db}.${table}` : table;
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

/** A predicate's primary-key lookups, and its other disjuncts (each an AND of filters). */
function split(where: Dnf): {
  rowIds: (string | number)[];
  disjuncts: ListFilter[][];
  lookupsAlone: boolean;
} {
  const rowIds: (string | number)[] = [];
  const disjuncts: ListFilter[][] = [];
  let lookupsAlone = true;
  for (const conj of where) {
    const ids = conj.find((a): a is PkIn => a.op === "pkIn");
    if (!ids) disjuncts.push(conj as ListFilter[]);
    else {
      rowIds.push(...ids.values);
      if (conj.length > 1) lookupsAlone = false;
    }
  }
  return { rowIds, disjuncts, lookupsAlone };
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

/** Whether `expr` may read a column of the table called `names`: named by them, or unqualified. */
function mentions(expr: unknown, names: ReadonlySet<string>): boolean {
  if (Array.isArray(expr)) return expr.some((x) => mentions(x, names));
  if (!isNode(expr)) return false;
  if (expr.type === "column_ref") {
    return expr.table === null || expr.table === undefined || names.has(String(expr.table));
  }
  return Object.values(expr).some((x) => mentions(x, names));
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

interface Scope {
  table: string;
  names: Set<string>;
  /** In a join, the other table's names: its columns are not this table's. */
  others?: Set<string>;
  primaryKey: string;
  kinds: Readonly<Record<string, SqlColumnKind>>;
  params: readonly unknown[];
  dialect: SqlDialect;
  widened: Set<WideningReason>;
}

/** An internal atom: the primary key in a set of values (`=` or `IN`). */
interface PkIn {
  op: "pkIn";
  values: (string | number)[];
}
type Atom = ListFilter | PkIn;
/** A predicate in disjunctive normal form: OR of ANDs. `[]` is FALSE, `[[]]` TRUE. */
type Dnf = Atom[][];
const TRUE: Dnf = [[]];
const FALSE: Dnf = [];

function or(a: Dnf, b: Dnf): Dnf {
  if (a.some((c) => c.length === 0) || b.some((c) => c.length === 0)) return TRUE;
  const out = [...a, ...b];
  if (out.length > MAX_DISJUNCTS) throw new Fallback("disjuncts");
  return out;
}

function and(a: Dnf, b: Dnf): Dnf {
  const out: Dnf = [];
  for (const x of a) {
    for (const y of b) {
      out.push([...x, ...y]);
      if (out.length > MAX_DISJUNCTS) throw new Fallback("disjuncts");
    }
  }
  return out.some((c) => c.length === 0) ? TRUE : out;
}

/** Widens: this condition is taken as TRUE. */
function widen(scope: Scope, reason: WideningReason): Dnf {
  scope.widened.add(reason);
  return TRUE;
}

const FLIP: Record<string, string> = { "<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=" };
const COMPARE: Record<string, "eq" | "lt" | "lte" | "gt" | "gte"> = {
  "=": "eq",
  "<": "lt",
  "<=": "lte",
  ">": "gt",
  ">=": "gte",
};

function predicate(expr: unknown, scope: Scope): Dnf {
  if (!isNode(expr)) return widen(scope, "expression");
  if (expr.type !== "binary_expr") return widen(scope, "expression");
  const op = String(expr.operator).toUpperCase().replace(/\s+/g, "");
  if (op === "AND") return and(predicate(expr.left, scope), predicate(expr.right, scope));
  if (op === "OR") return or(predicate(expr.left, scope), predicate(expr.right, scope));
  let column = columnOf(expr.left, scope);
  let other = expr.right;
  let cmp = op;
  if (column === undefined && op in FLIP) {
    column = columnOf(expr.right, scope);
    other = expr.left;
    cmp = FLIP[op]!;
  }
  if (column === undefined) {
    return widen(scope, scope.others && mentions(expr, scope.others) ? "join" : "expression");
  }
  if (op === "IS" || op === "ISNOT") {
    if (!isNode(other) || other.type !== "null") return widen(scope, "expression");
    return [[{ column: column.name, op: op === "IS" ? "null" : "notNull" }]];
  }
  if (op === "IN") {
    if (!isNode(other) || other.type !== "expr_list" || !Array.isArray(other.value)) {
      return widen(scope, "expression");
    }
    if (column.name === scope.primaryKey) {
      // One atom however long the list (dataloader-style lookups): its rows' tags.
      const values: (string | number)[] = [];
      for (const v of other.value) {
        const value = plain(operand(v, scope));
        if (value === null || value === undefined) continue;
        if (typeof value !== "number" && typeof value !== "string") return widen(scope, "type");
        values.push(value);
      }
      return values.length === 0 ? FALSE : [[{ op: "pkIn", values }]];
    }
    let out: Dnf = FALSE;
    for (const v of other.value) out = or(out, compare(column, "=", v, scope));
    return out;
  }
  if (op === "LIKE") return like(column, other, expr, scope);
  if (cmp in COMPARE) return compare(column, cmp, other, scope);
  return widen(scope, "expression");
}

interface ColumnRef {
  name: string;
  collate: string | undefined;
}

/** A column of the scope's table (`"users"."id"`, `"id"`), or undefined. */
function columnOf(v: unknown, scope: Scope): ColumnRef | undefined {
  if (!isNode(v)) return undefined;
  if (v.type === "column_ref") {
    const qualifier = v.table === null || v.table === undefined ? undefined : String(v.table);
    // In a join, an unqualified column may be either table's: neither claims it.
    if (qualifier === undefined ? scope.others !== undefined : !scope.names.has(qualifier)) {
      return undefined;
    }
    const name = identifier(v.column);
    if (name === undefined || name === "*") return undefined;
    return { name, collate: collationOf(v.collate) };
  }
  return undefined;
}

function identifier(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isNode(v) && isNode(v.expr) && typeof v.expr.value === "string") return v.expr.value;
  return undefined;
}

function collationOf(v: unknown): string | undefined {
  if (!isNode(v)) return undefined;
  const c = isNode(v.collate) ? v.collate : v;
  const name = isNode(c.name) ? c.name.value : c.name;
  return typeof name === "string" ? name : typeof c.value === "string" ? c.value : "?";
}

/** Whether text compares by code point under this collation (what the planner does). */
function binaryCollation(scope: Scope, collate: string | undefined): boolean {
  if (scope.dialect === "sqlite")
    return collate === undefined || collate.toUpperCase() === "BINARY";
  return collate === "C" || collate === "POSIX";
}

const NO_VALUE = Symbol("no value");

/** A literal or a bound parameter's value; NO_VALUE for anything else. */
function operand(v: unknown, scope: Scope): unknown {
  if (!isNode(v)) return NO_VALUE;
  switch (v.type) {
    case "param": {
      const m = /^p(\d+)$/.exec(String(v.value));
      return m ? param(scope, Number(m[1])) : NO_VALUE;
    }
    case "var":
      return v.prefix === "$" && typeof v.name === "number" ? param(scope, v.name) : NO_VALUE;
    case "number":
      return typeof v.value === "number" && Number.isFinite(v.value) ? v.value : NO_VALUE;
    case "single_quote_string":
      // Quotes and backslashes are read differently by the grammars: left alone.
      return typeof v.value === "string" && !/['\\]/.test(v.value) ? v.value : NO_VALUE;
    case "null":
      return null;
    default:
      return NO_VALUE;
  }
}

function param(scope: Scope, n: number): unknown {
  return n >= 1 && n <= scope.params.length ? scope.params[n - 1] : NO_VALUE;
}

/** A number from a bigint that fits, else the value itself. */
function plain(v: unknown): unknown {
  if (typeof v === "bigint") {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : v;
  }
  return v;
}

function compare(column: ColumnRef, cmp: string, other: unknown, scope: Scope): Dnf {
  const raw = operand(other, scope);
  if (raw === NO_VALUE) return widen(scope, "expression");
  // A comparison with NULL is never true.
  if (raw === null || raw === undefined) return FALSE;
  const value = plain(raw);
  if (column.name === scope.primaryKey && cmp === "=") {
    // Looked up by row tag, which reads "5" and 5 alike, as both databases compare them.
    if (typeof value === "number" || typeof value === "string") {
      return [[{ op: "pkIn", values: [value] }]];
    }
    return widen(scope, "type");
  }
  const kind = scope.kinds[column.name] ?? "other";
  const op = COMPARE[cmp]!;
  if (kind === "number" || kind === "float") {
    // SQLite would convert text to a number here (affinity): not followed.
    if (typeof value !== "number" || !Number.isFinite(value)) return widen(scope, "type");
    return [[{ column: column.name, op, value }]];
  }
  if (kind === "text") {
    // SQLite would compare a number as text here (affinity): not followed.
    if (typeof value !== "string") return widen(scope, "type");
    // Equality is by bytes under the default (deterministic) collations; order is not.
    const ok =
      op === "eq"
        ? column.collate === undefined || binaryCollation(scope, column.collate)
        : binaryCollation(scope, column.collate);
    if (!ok) return widen(scope, "collation");
    return [[{ column: column.name, op, value }]];
  }
  return widen(scope, "type");
}

/**
 * `column LIKE pattern` as prefix filters that match at least the same rows: the pattern's
 * literal start up to its first wildcard (`%`, `_`, and PostgreSQL's escape `\`). SQLite's
 * LIKE ignores ASCII case, so there it becomes one prefix per case variant of at most
 * `LIKE_LETTERS` letters (the prefix is cut before the next letter).
 */
function like(column: ColumnRef, other: unknown, expr: Node, scope: Scope): Dnf {
  if (expr.escape) return widen(scope, "expression");
  const pattern = plain(operand(other, scope));
  if (pattern === null || pattern === undefined) return FALSE;
  if (typeof pattern !== "string" || scope.kinds[column.name] !== "text") {
    return widen(scope, pattern === NO_VALUE ? "expression" : "type");
  }
  let prefix = "";
  for (const ch of pattern) {
    if (ch === "%" || ch === "_" || (scope.dialect === "postgres" && ch === "\\")) break;
    prefix += ch;
  }
  // Exact only for `prefix%`; anything else matches fewer rows than the prefix does.
  const exact = pattern === `${prefix}%`;
  if (scope.dialect === "postgres") {
    if (prefix === "") return widen(scope, "like");
    if (!exact) scope.widened.add("like");
    return [[{ column: column.name, op: "prefix", value: prefix }]];
  }
  let letters = 0;
  let cut = prefix.length;
  for (let i = 0; i < prefix.length; i++) {
    if (/[A-Za-z]/.test(prefix[i]!) && ++letters > LIKE_LETTERS) {
      cut = i;
      break;
    }
  }
  if (!exact || cut < prefix.length) scope.widened.add("like");
  prefix = prefix.slice(0, cut);
  if (prefix === "") return widen(scope, "like");
  let variants = [""];
  for (const ch of prefix) {
    const lower = ch.toLowerCase();
    const upper = ch.toUpperCase();
    variants =
      /[A-Za-z]/.test(ch) && lower !== upper
        ? variants.flatMap((v) => [v + lower, v + upper])
        : variants.map((v) => v + ch);
  }
  return variants.map((v) => [{ column: column.name, op: "prefix", value: v }]);
}

function resultColumns(columns: unknown, scope: Scope): (string | undefined)[] {
  if (!Array.isArray(columns)) return [];
  return columns.map((c) => {
    const expr = isNode(c) ? c.expr : undefined;
    if (isNode(expr) && expr.type === "double_quote_string" && typeof expr.value === "string") {
      // SQLite's grammar reads a lone "id" as a string that may be a column (not in a join)
      return scope.others ? undefined : expr.value;
    }
    return columnOf(expr, scope)?.name;
  });
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
