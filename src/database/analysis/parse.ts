import postgresql from "node-sql-parser/build/postgresql.js";
import sqlite from "node-sql-parser/build/sqlite.js";

/**
 * node-sql-parser's grammars for the two dialects, one build each (about 120 KB gzipped
 * together: they run in Workers too). Its ASTs are read defensively as plain data
 * (`shapes.ts`): the two builds spell some nodes differently.
 */

export type SqlDialect = "sqlite" | "postgres";

let parsers:
  | { sqlite: InstanceType<typeof sqlite.Parser>; postgres: InstanceType<typeof postgresql.Parser> }
  | undefined;

/** The statement(s) of `sql` as node-sql-parser's AST; throws on text it cannot read. */
export function parseSql(sql: string, dialect: SqlDialect): unknown {
  parsers ??= { sqlite: new sqlite.Parser(), postgres: new postgresql.Parser() };
  if (dialect === "postgres") {
    const { text, names } = unquoteBeforeCollate(sql);
    const ast = parsers.postgres.astify(text, { database: "postgresql" });
    return names.length === 0 ? ast : restoreNames(ast, names);
  }
  // The SQLite grammar reads `?` in WHERE but not in LIMIT/OFFSET, and `:name` everywhere:
  // anonymous placeholders are renamed `:pN` after the parameter they bind (1-based).
  return parsers.sqlite.astify(namePlaceholders(sql), { database: "sqlite" });
}

/** An identifier, bare or quoted in any of SQLite's ways. */
const IDENT = String.raw`(?:\`[^\`]*\`|"[^"]*"|\[[^\]]*\]|[A-Za-z_][\w$]*)`;
/**
 * The `main.` of a column named with its schema, table and name (`main`.`User`.`id`, as
 * Prisma writes every column), which the grammar cannot read: `User`.`id` names the same
 * column, since the table of the FROM clause is `main`'s too (another schema's is left).
 */
const MAIN_COLUMN = new RegExp(
  String.raw`(?:\`main\`|"main"|\[main\]|main)\s*\.\s*(?=${IDENT}\s*\.\s*${IDENT})`,
  "iy",
);

/**
 * Rewrites SQLite's `?` and `?NNN` placeholders as `:pN`, outside string literals, quoted
 * identifiers and comments. `?` takes the number after the largest given so far, as in
 * SQLite (`?2, ?` binds parameters 2 and 3). Drops the schema of a `main.table.column`.
 */
export function namePlaceholders(sql: string): string {
  let out = "";
  let max = 0;
  let i = 0;
  while (i < sql.length) {
    // Only where `main` may start, after no part of another name.
    if (/[mM`"[]/.test(sql[i]!) && (i === 0 || !/[\w$.`"\]]/.test(sql[i - 1]!))) {
      MAIN_COLUMN.lastIndex = i;
      if (MAIN_COLUMN.test(sql)) {
        i = MAIN_COLUMN.lastIndex;
        continue;
      }
    }
    const skip = skipText(sql, i);
    if (skip > i) {
      out += sql.slice(i, skip);
      i = skip;
    } else if (sql[i] === "?") {
      let j = i + 1;
      while (j < sql.length && sql[j]! >= "0" && sql[j]! <= "9") j++;
      const n = j > i + 1 ? Number(sql.slice(i + 1, j)) : max + 1;
      max = Math.max(max, n);
      out += `:p${n}`;
      i = j;
    } else {
      out += sql[i];
      i++;
    }
  }
  return out;
}

/** Stands for the quoted name it replaced (see unquoteBeforeCollate): no SQL spells it so. */
const STAND_IN = "edgecache_name_";

/**
 * PostgreSQL's grammar cannot read a lone quoted name before COLLATE (`"createdAt" collate
 * "C"`, as Kysely writes an order by one column), though it reads a bare one: each such
 * name is replaced by a bare stand-in, put back in the AST by `restoreNames`.
 */
function unquoteBeforeCollate(sql: string): { text: string; names: string[] } {
  const names: string[] = [];
  let text = "";
  let i = 0;
  while (i < sql.length) {
    const end = skipText(sql, i);
    if (end === i) {
      text += sql[i];
      i++;
      continue;
    }
    const piece = sql.slice(i, end);
    // Not the name after a qualifier (`"t"."c"`), which the grammar reads.
    const lone = sql[i] === '"' && !/\.\s*$/.test(text);
    if (lone && /^\s+collate\b/i.test(sql.slice(end))) {
      names.push(piece.slice(1, -1).replaceAll('""', '"'));
      text += `${STAND_IN}${names.length - 1}`;
    } else text += piece;
    i = end;
  }
  return { text, names };
}

/** The AST with each stand-in of `unquoteBeforeCollate` its name again. */
function restoreNames(ast: unknown, names: readonly string[]): unknown {
  const restore = (v: unknown): unknown => {
    if (typeof v === "string" && v.startsWith(STAND_IN)) {
      return names[Number(v.slice(STAND_IN.length))] ?? v;
    }
    if (Array.isArray(v)) return v.map(restore);
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = restore(x);
      return out;
    }
    return v;
  };
  return restore(ast);
}

/** Past a string literal, quoted identifier or comment starting at `i`; `i` if none does. */
export function skipText(sql: string, i: number): number {
  const c = sql[i]!;
  if (c === "'" || c === '"' || c === "`" || c === "[") {
    const close = c === "[" ? "]" : c;
    let j = i + 1;
    while (j < sql.length) {
      if (sql[j] === close) {
        if (close !== "]" && sql[j + 1] === close) j += 2;
        else break;
      } else j++;
    }
    return j + 1;
  }
  if (c === "-" && sql[i + 1] === "-") {
    const j = sql.indexOf("\n", i);
    return j < 0 ? sql.length : j;
  }
  if (c === "/" && sql[i + 1] === "*") {
    const j = sql.indexOf("*/", i + 2);
    return j < 0 ? sql.length : j + 2;
  }
  return i;
}

/**
 * `sql` without the FILTER (WHERE ...) clauses of its aggregates, which neither grammar
 * reads after every aggregate; undefined when there is none, or one holds a subquery.
 * For what a select depends on only: a filter narrows the rows an aggregate reads among
 * those its FROM and WHERE already chose. `counts`: one of them filtered a `count(...)`
 * (or an aggregate not told), whose value read without it would be another.
 */
export function withoutAggregateFilters(sql: string): { sql: string; counts: boolean } | undefined {
  let out = "";
  let found = false;
  let counts = false;
  let i = 0;
  while (i < sql.length) {
    const skip = skipText(sql, i);
    if (skip > i) {
      out += sql.slice(i, skip);
      i = skip;
      continue;
    }
    const m = /^filter\s*\(\s*where\b/i.exec(sql.slice(i, i + 40));
    if (m && !/[\w$]/.test(sql[i - 1] ?? "")) {
      let depth = 0;
      let j = i + m[0].indexOf("(");
      for (; j < sql.length; j = Math.max(j + 1, skipText(sql, j))) {
        if (sql[j] === "(") depth++;
        else if (sql[j] === ")" && --depth === 0) break;
      }
      if (depth !== 0 || /\bselect\b/i.test(sql.slice(i, j))) return undefined;
      found = true;
      const name = filteredAggregate(out);
      counts ||= name === undefined || name === "count";
      i = j + 1;
      continue;
    }
    out += sql[i];
    i++;
  }
  return found ? { sql: out, counts } : undefined;
}

/**
 * The name of the aggregate call `text` ends with (`count(*)` gives "count"), lower case;
 * undefined where it cannot be told.
 */
function filteredAggregate(text: string): string | undefined {
  let i = text.trimEnd().length - 1;
  if (text[i] !== ")") return undefined;
  for (let depth = 0; i >= 0; i--) {
    if (text[i] === ")") depth++;
    else if (text[i] === "(" && --depth === 0) break;
  }
  const name = /([A-Za-z_][A-Za-z0-9_$]*)\s*$/.exec(text.slice(0, Math.max(0, i)));
  return name?.[1]?.toLowerCase();
}
