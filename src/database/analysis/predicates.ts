import type { ListFilter } from "../../core/data/query.ts";
import type { SqlDialect } from "./parse.ts";
import {
  type FallbackReason,
  MAX_DISJUNCTS,
  type NumberText,
  type SqlColumnKind,
  type TextCollation,
  type WideningReason,
} from "./shape-types.ts";

/**
 * Conditions of a select's WHERE as the planner's filters, for one table of its FROM (a
 * `Scope`): node-sql-parser's AST read as plain data, in disjunctive normal form, each
 * condition the planner cannot evaluate as SQL would replaced by TRUE (widened). Pure.
 */

/** SQLite LIKE prefixes keep at most this many ASCII letters (2^n case variants). */
const LIKE_LETTERS = 3;

// node-sql-parser's AST, read as plain data.
export type Node = Record<string, unknown>;
export const isNode = (v: unknown): v is Node =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Calls `visit` on every node of `ast`, at any depth (subqueries and CTEs included). */
export function forEachNode(ast: unknown, visit: (node: Node) => void): void {
  if (Array.isArray(ast)) {
    for (const x of ast) forEachNode(x, visit);
    return;
  }
  if (!isNode(ast)) return;
  visit(ast);
  for (const child of Object.values(ast)) forEachNode(child, visit);
}

export class Fallback extends Error {
  constructor(readonly reason: FallbackReason) {
    super(reason);
  }
}

export function qualified(from: Node): string {
  const db =
    typeof from.db === "string" ? from.db : typeof from.schema === "string" ? from.schema : null;
  const table = from.table as string;
  return db && db !== "public" && db !== "main" ? `${db}.${table}` : table;
}

/** A predicate's primary-key lookups, and its other disjuncts (each an AND of filters). */
export function split(where: Dnf): {
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

/** Whether `v` holds a subquery anywhere (node-sql-parser wraps one as `{ ast }`). */
export function hasSubquery(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(hasSubquery);
  if (!isNode(v)) return false;
  if (v.type === "select" || isNode(v.ast)) return true;
  return Object.values(v).some(hasSubquery);
}

/** Whether `expr` may read a column of the table called `names`: named by them, or unqualified. */
export function mentions(expr: unknown, names: ReadonlySet<string>): boolean {
  if (Array.isArray(expr)) return expr.some((x) => mentions(x, names));
  if (!isNode(expr)) return false;
  if (expr.type === "column_ref") {
    return expr.table === null || expr.table === undefined || names.has(String(expr.table));
  }
  return Object.values(expr).some((x) => mentions(x, names));
}

export interface Scope {
  table: string;
  names: Set<string>;
  /** In a join, the other table's names: its columns are not this table's. */
  others?: Set<string>;
  /** Its single-column primary key (lookups by it are row tags); a subquery's table may have none. */
  primaryKey: string | undefined;
  kinds: Readonly<Record<string, SqlColumnKind>>;
  /** How text columns compare with no `collate` (SqlTable's `collations`). */
  collations?: Readonly<Record<string, TextCollation>> | undefined;
  /** Its instant columns a `Date` holds exactly (SqlTable's `dates`). */
  dates?: readonly string[] | undefined;
  /** Its "ordered" columns whose numbers come as text (SqlTable's `numberTexts`). */
  numberTexts?: Readonly<Record<string, NumberText>> | undefined;
  /** Its instant columns read in Prisma's pg form (SqlTable's `isoInstants`). */
  isoInstants?: Readonly<Record<string, boolean>> | undefined;
  /** Its columns that name a row as its key does (SqlTable's `unique`). */
  unique?: readonly string[] | undefined;
  params: readonly unknown[];
  dialect: SqlDialect;
  widened: Set<WideningReason>;
  /** A table of a subquery: a comparison with another table's column is a correlation. */
  inSubquery?: boolean;
}

/** An internal atom: the primary key in a set of values (`=` or `IN`). */
export interface PkIn {
  op: "pkIn";
  values: (string | number)[];
}
export type Atom = ListFilter | PkIn;
/** A predicate in disjunctive normal form: OR of ANDs. `[]` is FALSE, `[[]]` TRUE. */
export type Dnf = Atom[][];
export const TRUE: Dnf = [[]];
export const FALSE: Dnf = [];

export function or(a: Dnf, b: Dnf): Dnf {
  if (a.some((c) => c.length === 0) || b.some((c) => c.length === 0)) return TRUE;
  const out = [...a, ...b];
  if (out.length > MAX_DISJUNCTS) throw new Fallback("disjuncts");
  return out;
}

export function and(a: Dnf, b: Dnf): Dnf {
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
export function widen(scope: Scope, reason: WideningReason): Dnf {
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

export function predicate(expr: unknown, scope: Scope): Dnf {
  if (!isNode(expr)) return widen(scope, "expression");
  const op = String(expr.operator).toUpperCase().replace(/\s+/g, "");
  if (expr.type === "binary_expr" && op === "AND") {
    return and(predicate(expr.left, scope), predicate(expr.right, scope));
  }
  if (expr.type === "binary_expr" && op === "OR") {
    return or(predicate(expr.left, scope), predicate(expr.right, scope));
  }
  // `IN (select ...)`, `EXISTS (...)`: its tables are registered by the subquery's analysis.
  if (hasSubquery(expr)) return widen(scope, "subquery");
  if (expr.type !== "binary_expr") return widen(scope, "expression");
  let column = columnOf(expr.left, scope);
  let other = expr.right;
  let cmp = op;
  if (column === undefined && op in FLIP) {
    column = columnOf(expr.right, scope);
    other = expr.left;
    cmp = FLIP[op]!;
  }
  if (column === undefined) {
    const constant = literalComparison(expr.left, expr.right, op);
    if (constant) return constant;
    return widen(scope, scope.others && mentions(expr, scope.others) ? "join" : "expression");
  }
  // `c.article_id = articles.id` in a subquery: a correlation, followed by its link if any.
  if (scope.inSubquery && isNode(other) && other.type === "column_ref") {
    return widen(scope, "subquery");
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

/**
 * `1=1` (ORMs open their WHERE clauses so) and any equality of two number literals: TRUE
 * or FALSE, exactly. Undefined for anything else.
 */
function literalComparison(left: unknown, right: unknown, op: string): Dnf | undefined {
  if (op !== "=" && op !== "<>" && op !== "!=") return undefined;
  if (!isNode(left) || !isNode(right) || left.type !== "number" || right.type !== "number") {
    return undefined;
  }
  if (typeof left.value !== "number" || typeof right.value !== "number") return undefined;
  return (left.value === right.value) === (op === "=") ? TRUE : FALSE;
}

export interface ColumnRef {
  name: string;
  collate: string | undefined;
}

/** A column of the scope's table (`"users"."id"`, `"id"`), or undefined. */
export function columnOf(v: unknown, scope: Scope): ColumnRef | undefined {
  if (!isNode(v)) return undefined;
  // SQLite's grammar reads a lone "x" as a string; SQLite reads it as a column of the
  // innermost FROM that has one (a string only when none has): over one table known to
  // have it (Kysely writes `where "id" = ?`), that one.
  if (v.type === "double_quote_string" && !scope.others) {
    const name = v.value;
    return typeof name === "string" && Object.hasOwn(scope.kinds, name)
      ? { name, collate: undefined }
      : undefined;
  }
  if (v.type === "cast") return textCast(v, scope);
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

/**
 * A PostgreSQL text column cast to `text` (`"name"::text`, `CAST(name AS TEXT)`: how
 * Prisma writes `startsWith`) is that column: text and varchar values are the same text
 * as `text`, and the cast keeps the column's collation. Any other cast, or of any other
 * column, is not (`::varchar(3)` cuts, a number's text orders otherwise).
 */
function textCast(v: Node, scope: Scope): ColumnRef | undefined {
  if (scope.dialect !== "postgres" || !Array.isArray(v.target) || v.target.length !== 1) {
    return undefined;
  }
  const [target] = v.target as unknown[];
  if (!isNode(target) || String(target.dataType).toUpperCase() !== "TEXT") return undefined;
  const plainTarget = Object.entries(target).every(
    ([k, x]) => k === "dataType" || x == null || (Array.isArray(x) && x.length === 0),
  );
  const plainCast = Object.entries(v).every(
    ([k, x]) => CAST_KEYS.has(k) || x == null || (Array.isArray(x) && x.length === 0),
  );
  if (!plainTarget || !plainCast || !isNode(v.expr) || v.expr.type !== "column_ref") {
    return undefined;
  }
  const column = columnOf(v.expr, scope);
  return column && scope.kinds[column.name] === "text" ? column : undefined;
}

const CAST_KEYS = new Set(["type", "keyword", "symbol", "expr", "target", "parentheses"]);

export function identifier(v: unknown): string | undefined {
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

/**
 * Whether `column`'s text compares by code point under its `collate` (what the planner
 * does); with none, by the column's own collation where the catalog told it.
 */
export function binaryCollation(scope: Scope, column: ColumnRef): boolean {
  const { collate } = column;
  if (collate === undefined) {
    const declared = scope.collations?.[column.name];
    return declared === undefined ? scope.dialect === "sqlite" : declared === "binary";
  }
  if (scope.dialect === "sqlite") return collate.toUpperCase() === "BINARY";
  return collate === "C" || collate === "POSIX";
}

/** Whether `column`'s text is equal by its bytes under its `collate` (or its own collation). */
function bytesEqual(scope: Scope, column: ColumnRef): boolean {
  if (column.collate !== undefined) return binaryCollation(scope, column);
  return scope.collations?.[column.name] !== "other";
}

export const NO_VALUE = Symbol("no value");

/** A literal or a bound parameter's value; NO_VALUE for anything else. */
export function operand(v: unknown, scope: Scope): unknown {
  if (!isNode(v)) return NO_VALUE;
  // A `collate` on the value (`kind = 'X' collate nocase`) sets the comparison's collation
  // as one on the column does: not the planner's byte comparison.
  if (v.collate || (isNode(v.suffix) && v.suffix.collate)) return NO_VALUE;
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
    case "binary_expr": {
      // `? || '%'` (Prisma's startsWith): text joined to text is that text.
      if (v.operator !== "||") return NO_VALUE;
      const left = operand(v.left, scope);
      const right = operand(v.right, scope);
      return typeof left === "string" && typeof right === "string" ? left + right : NO_VALUE;
    }
    default:
      return NO_VALUE;
  }
}

function param(scope: Scope, n: number): unknown {
  return n >= 1 && n <= scope.params.length ? scope.params[n - 1] : NO_VALUE;
}

/** A number from a bigint that fits, else the value itself. */
export function plain(v: unknown): unknown {
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
    const ok = op === "eq" ? bytesEqual(scope, column) : binaryCollation(scope, column);
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

export function resultColumns(columns: unknown, scope: Scope): (string | undefined)[] {
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
