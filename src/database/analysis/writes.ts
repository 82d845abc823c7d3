import type { ResolveTable } from "./names.ts";
import { parseSql, type SqlDialect } from "./parse.ts";

/**
 * The tables a write statement names as its target, from its text: `insert`, `replace`,
 * `update` and `delete`, one statement or several. Undefined when that is not certain (text
 * the parser cannot read and the fallback below does not match, another kind of statement,
 * a `WITH` clause that may itself write): the caller then treats every table as changed.
 * Tables changed beyond the target (foreign-key actions, triggers) are not named here. On
 * PostgreSQL, `resolve` places a target named without its schema (see ResolveTable): one it
 * cannot place makes the answer undefined.
 * Pure: no I/O.
 *
 * @example
 * writtenTables("update users set name = ? where id = ?", "sqlite"); // ["users"]
 * writtenTables("create table t (id integer)", "sqlite"); // undefined
 */
export function writtenTables(
  sql: string,
  dialect: SqlDialect,
  resolve?: ResolveTable,
): string[] | undefined {
  const qualified = (schema: string | null, table: string) => {
    const placed = schema ?? (resolve ? resolve(table) : null);
    return placed === undefined ? undefined : named(placed, table);
  };
  let ast: unknown;
  try {
    ast = parseSql(sql, dialect);
  } catch {
    return leadingTarget(sql, qualified);
  }
  const found = new Set<string>();
  for (const statement of Array.isArray(ast) ? ast : [ast]) {
    const s = statement as Record<string, unknown> | null;
    if (!s || !WRITES.has(s.type as string) || (Array.isArray(s.with) && s.with.length > 0)) {
      return undefined;
    }
    const targets = s.table;
    if (!Array.isArray(targets) || targets.length === 0) return undefined;
    for (const t of targets as Record<string, unknown>[]) {
      if (typeof t?.table !== "string") return undefined;
      const table = qualified(typeof t.db === "string" ? t.db : null, t.table);
      // A table the search path cannot place: which one it is cannot be told.
      if (table === undefined) return undefined;
      found.add(table);
    }
  }
  return found.size > 0 ? [...found] : undefined;
}

const WRITES = new Set(["insert", "replace", "update", "delete"]);

/** `schema.table`, less SQLite's `main` and PostgreSQL's `public` (as `sqlShape` names tables). */
function named(schema: string | null, table: string): string {
  return schema && schema !== "public" && schema !== "main" ? `${schema}.${table}` : table;
}

const NAME = String.raw`(?:"(?:[^"]|"")+"|\x60[^\x60]+\x60|\[[^\]]+\]|[A-Za-z_][A-Za-z0-9_$]*)`;
const TARGET = new RegExp(
  String.raw`^\s*(?:(?:insert|replace)(?:\s+or\s+\w+)?\s+into|update(?:\s+or\s+\w+)?|delete\s+from)\s+(?:only\s+)?(${NAME})(?:\s*\.\s*(${NAME}))?(?=[\s(;]|$)`,
  "i",
);

/**
 * The target of one write statement the grammar does not read (SQLite's upsert, for one),
 * by its leading words; undefined for anything else, or for text with a second statement.
 */
function leadingTarget(
  sql: string,
  qualified: (schema: string | null, table: string) => string | undefined,
): string[] | undefined {
  const text = sql.replace(/;\s*$/, "");
  if (text.includes(";") || /--|\/\*/.test(text)) return undefined;
  const m = TARGET.exec(text);
  if (!m) return undefined;
  const unquote = (n: string) => (/^["`[]/.test(n) ? n.slice(1, -1).replace(/""/g, '"') : n);
  const table =
    m[2] === undefined ? qualified(null, unquote(m[1]!)) : qualified(unquote(m[1]!), unquote(m[2]));
  return table === undefined ? undefined : [table];
}

/** A statement that opens or ends a transaction (not a savepoint's). */
export function transactionControl(sql: string): "begin" | "commit" | "rollback" | undefined {
  if (/^\s*(begin|start\s+transaction)\b/i.test(sql)) return "begin";
  if (/^\s*(commit|end)(\s+(transaction|work))?\s*;?\s*$/i.test(sql)) return "commit";
  if (/^\s*rollback(\s+(transaction|work))?\s*;?\s*$/i.test(sql)) return "rollback";
  return undefined;
}

/** A statement that only reads: a select or a values list, with no write in a CTE. */
export function isRead(sql: string): boolean {
  return (
    /^\s*\(?\s*(select|values)\b/i.test(sql) ||
    (/^\s*with\b/i.test(sql) && !/\b(insert|update|delete|merge)\b/i.test(sql))
  );
}
