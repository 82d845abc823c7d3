import { type SqlDialect, skipText } from "./parse.ts";

/**
 * The statements group patches run (see groups.ts): a result's statement rewritten as
 * text, restricted to the changed base rows without its WHERE and window, carrying the
 * base columns a keyed statement needs, its placeholders renumbered; and what the text
 * tells of it (its rows' source, whether it has a WHERE). Only statements whose
 * top-level clauses and placeholders are read safely are rewritten (see scanTop).
 */

/** The base rows a write changes, as values of base columns (`articles.id in (7, 9)`). */
export type Restriction = Map<string, unknown[]>;

/** What a statement is rewritten by: the base's name there, its key, the result's names. */
interface StatementPlan {
  ref: string;
  primaryKey: string;
  names: readonly (string | undefined)[];
  /** The base columns a keyed statement carries after the result's columns. */
  carried: readonly string[];
}

/**
 * Whether a table has any row whose `column` equals the base row's `from`: carried after
 * the base columns of a keyed statement for new base rows (see group-rows.ts, `probesOf`).
 */
export interface Probe {
  table: string;
  column: string;
  from: string;
}

/**
 * `sql` restricted to the base rows of `restriction`, without its window and its WHERE
 * (a row's values do not depend on them: a plan refuses conditions that pick which joined
 * rows are aggregated), so that results of one select list with other conditions (a tag's
 * list, an author's, the single article) share the statement; with its parameters.
 * Undefined where the text cannot be rewritten safely (a compound select, a comment,
 * named or numbered placeholders, a value written as no literal can be).
 */
export function restrictedStatement(
  plan: StatementPlan,
  sql: string,
  params: readonly unknown[],
  dialect: SqlDialect,
  restriction: Restriction,
  keyed = false,
  probes: readonly Probe[] = [],
): { sql: string; params: unknown[] } | undefined {
  const read = clausesOf(sql, params, dialect);
  if (!read) return undefined;
  const from = read.scan.clause.from;
  if (keyed && (from === undefined || plan.names.some(carriedName))) return undefined;
  const terms: string[] = [];
  for (const [column, values] of restriction) {
    const literals = values.map(literal);
    if (literals.some((l) => l === undefined)) return undefined;
    const text = read.text;
    terms.push(`${name(text, plan.ref)}.${name(text, column)} in (${literals.join(", ")})`);
  }
  if (terms.length === 0) return undefined;
  const condition = `where (${terms.join(" or ")}) `;
  const where = read.cut("where");
  // In the WHERE's place, or where one would go.
  const at = where ? where[0] : read.end(read.scan.clause.from ?? 0);
  const inserts: [number, string][] = [[at, where ? condition : ` ${condition}`]];
  // Keyed: each row names its base row, whether the result shows the key or not.
  if (keyed) {
    const columns = carriedColumns(plan, read.text, probes);
    if (columns === undefined) return undefined;
    inserts.unshift([from!, columns]);
  }
  return read.rewritten(where ? [where] : [], inserts);
}

/**
 * `sql` (a select with no WHERE) keyed as `restrictedStatement` keys it, with its window
 * moved to `window`: the rows it has now from that place on (the rows that slide into a
 * window some of whose rows were deleted, see window-slides.ts); with `after` (the sort
 * values of the last row a window keeps, its key last), the rows sorted after that row,
 * wherever it is by then: a row written before it since (a newer article) does not move
 * them. Undefined where the text cannot be rewritten safely or has a WHERE.
 */
export function slidStatement(
  plan: StatementPlan,
  sql: string,
  params: readonly unknown[],
  dialect: SqlDialect,
  window: { limit: number; offset: number },
  probes: readonly Probe[] = [],
  after?: readonly SortedValue[],
): { sql: string; params: unknown[] } | undefined {
  const read = clausesOf(sql, params, dialect);
  const from = read?.scan.clause.from;
  if (!read || from === undefined || read.cut("where") || plan.names.some(carriedName)) {
    return undefined;
  }
  if (!Number.isSafeInteger(window.limit) || !Number.isSafeInteger(window.offset)) return undefined;
  const columns = carriedColumns(plan, read.text, probes);
  if (columns === undefined) return undefined;
  const inserts: [number, string][] = [[from, columns]];
  if (after) {
    const condition = sortedAfter(plan.ref, read.text, after);
    if (condition === undefined) return undefined;
    inserts.push([read.end(from), ` where ${condition} `]);
  }
  inserts.push([read.text.length, ` limit ${window.limit} offset ${window.offset}`]);
  return read.rewritten([], inserts);
}

/** A sort column of the base, a row's value of it, and whether NULLs sort after it. */
export interface SortedValue {
  column: string;
  desc: boolean;
  value: unknown;
  nullsAfter: boolean;
}

/**
 * The condition that a base row sorts after the row of `values` (`a < x or (a = x and
 * ...)`, the last column a key); undefined where a value is not written as a literal.
 */
function sortedAfter(
  ref: string,
  text: string,
  values: readonly SortedValue[],
): string | undefined {
  let condition: string | undefined;
  for (const { column, desc, value, nullsAfter } of [...values].reverse()) {
    const v = literal(value);
    if (v === undefined) return undefined;
    const c = `${name(text, ref)}.${name(text, column)}`;
    const beyond = `${c} ${desc ? "<" : ">"} ${v}${nullsAfter ? ` or ${c} is null` : ""}`;
    condition = condition === undefined ? beyond : `${beyond} or (${c} = ${v} and (${condition}))`;
  }
  return condition && `(${condition})`;
}

/**
 * What a keyed statement puts before its FROM: the base columns it carries (`plan.carried`,
 * its key first), then a probe's `exists (...)` each; undefined where a probe's table is not
 * named one way in `text`.
 */
function carriedColumns(
  plan: StatementPlan,
  text: string,
  probes: readonly Probe[],
): string | undefined {
  const base = (c: string) => `${name(text, plan.ref)}.${name(text, c)}`;
  const columns = plan.carried.map(base);
  for (const p of probes) {
    const table = tableName(text, p.table);
    if (!table) return undefined;
    columns.push(
      `exists (select 1 from ${table} ${PROBE} where ${PROBE}.${name(text, p.column)} = ${base(p.from)})`,
    );
  }
  return `, ${columns.map((c, i) => `${c} as ${CARRIED}${i}`).join(", ")} `;
}

const carriedName = (n: string | undefined) => n?.startsWith(CARRIED) === true;

/**
 * `sql` with the base's `columns` (the base named `ref` there) carried after its own
 * columns, everything else as it is (its window too), with its parameters; undefined where
 * the text cannot be rewritten safely (see clausesOf), or its select list is DISTINCT
 * (carried columns would change which rows are distinct) or not a plain SELECT's.
 */
export function carriedStatement(
  sql: string,
  params: readonly unknown[],
  dialect: SqlDialect,
  ref: string,
  columns: readonly string[],
): { sql: string; params: unknown[] } | undefined {
  const text = sql.replace(/[\s;]+$/, "");
  if (!/^\s*select\s/i.test(text) || /^\s*select\s+distinct\b/i.test(text)) return undefined;
  const scan = scanTop(text, dialect);
  const from = scan?.clause.from;
  if (!scan || scan.compound || from === undefined) return undefined;
  if (scan.placeholders.length !== placeholderCount(scan, params)) return undefined;
  const carried = columns.map((c) => `${name(text, ref)}.${name(text, c)}`).join(", ");
  const before = text.slice(0, from).replace(/\s+$/, "");
  return { sql: `${before}, ${carried} ${text.slice(from)}`, params: [...params] };
}

/**
 * The rows of a presence's table whose link column holds one of `links` (literals), their
 * link column and `columns` alone, at most `most` and one more (to tell there are more);
 * spelled as `sql` spells names. Undefined where a name or a value cannot be written.
 */
export function linkedRowsStatement(
  sql: string,
  probe: Omit<Probe, "from">,
  columns: readonly string[],
  links: readonly unknown[],
  most: number,
): { sql: string; params: unknown[] } | undefined {
  const table = tableName(sql, probe.table);
  const literals = links.map(literal);
  if (!table || literals.length === 0 || literals.some((l) => l === undefined)) return undefined;
  const read = [probe.column, ...columns].map((c) => name(sql, c)).join(", ");
  const where = `${name(sql, probe.column)} in (${literals.join(", ")})`;
  return { sql: `select ${read} from ${table} where ${where} limit ${most + 1}`, params: [] };
}

/**
 * A table as `sql` names it in a FROM or a JOIN (`public.follows`, `"follows"`), where it
 * names it one way only: written so, the statement reads the table the select reads,
 * whatever the search path (the planner's name drops `public.` and `main.`). Undefined
 * otherwise, or where the statement uses the probe's own name.
 */
export function tableName(sql: string, table: string): string | undefined {
  if (sql.toLowerCase().includes(PROBE)) return undefined;
  const found = new Set<string>();
  for (const m of sql.matchAll(FROM_ITEM)) {
    const spelled = m[1]!;
    const parts = [...spelled.matchAll(NAME_PART)].map((p) =>
      p[0].startsWith('"') ? p[0].slice(1, -1).replaceAll('""', '"') : p[0],
    );
    if (parts.length === 2 && /^(public|main)$/i.test(parts[0]!)) parts.shift();
    if (parts.join(".").toLowerCase() === table.toLowerCase()) found.add(spelled);
  }
  return found.size === 1 ? [...found][0] : undefined;
}

const NAME = `(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)`;
const NAME_PART = new RegExp(NAME, "g");
const FROM_ITEM = new RegExp(`\\b(?:from|join)\\s+(${NAME}(?:\\s*\\.\\s*${NAME})?)`, "gi");

/** The names a keyed statement gives the base columns it carries: `edgecache_0` (the key)... */
export const CARRIED = "edgecache_";
/** The name a probe gives its table (see Probe). */
const PROBE = "edgecache_probe";

/**
 * Where a result's rows come from, whatever its WHERE, order and window: its statement
 * without them, with the parameters left. Two results with the same hold the same values
 * for a base row each shows; undefined where the text cannot be read.
 */
export function rowsSource(
  sql: string,
  params: readonly unknown[],
  dialect: SqlDialect,
): { sql: string; params: unknown[] } | undefined {
  const read = clausesOf(sql, params, dialect);
  if (!read) return undefined;
  // Its WHERE and its ORDER BY pick and place rows, and change no row's values.
  const cuts = [read.cut("where"), read.cut("order")].filter((c) => c !== undefined);
  return read.rewritten(cuts, []);
}

/**
 * A select's top-level clauses, to rewrite it without its window (LIMIT and OFFSET, always
 * cut) and other clauses; undefined where its text cannot be read (see scanTop).
 */
function clausesOf(sql: string, params: readonly unknown[], dialect: SqlDialect) {
  const text = sql.replace(/[\s;]+$/, "");
  const scan = scanTop(text, dialect);
  if (!scan || scan.compound || scan.placeholders.length !== placeholderCount(scan, params)) {
    return undefined;
  }
  const { clause } = scan;
  const tailAt = Math.min(clause.limit ?? text.length, clause.offset ?? text.length);
  /** Where the clause after `at` starts (the window when none). */
  const end = (at: number) =>
    Math.min(
      ...["group", "having", "order", "window"]
        .map((c) => clause[c])
        .filter((p): p is number => p !== undefined && p > at && p < tailAt),
      tailAt,
    );
  return {
    text,
    scan,
    end,
    /** Where a clause (its keyword on) starts and ends, if the statement has it. */
    cut(name: string): [number, number] | undefined {
      const at = clause[name];
      return at === undefined || at >= tailAt ? undefined : [at, end(at)];
    },
    rewritten: (cuts: [number, number][], inserts: [number, string][]) =>
      rewritten(text, dialect, scan, params, [[tailAt, text.length], ...cuts], inserts),
  };
}

/**
 * `text` with `cuts` left out and `inserts` put in (at positions of the original text), its
 * placeholders in the cuts dropped with their parameters and, on PostgreSQL, the others
 * numbered again from $1.
 */
function rewritten(
  text: string,
  dialect: SqlDialect,
  scan: TopScan,
  params: readonly unknown[],
  cuts: readonly [number, number][],
  inserts: readonly [number, string][],
): { sql: string; params: unknown[] } {
  const cut = (at: number) => cuts.some(([from, to]) => at >= from && at < to);
  const kept = scan.placeholders.filter((p) => !cut(p.at));
  let numbers = new Map<number, number>();
  let rest: unknown[];
  if (dialect === "postgres") {
    const used = [...new Set(kept.map((p) => p.n))].sort((a, b) => a - b);
    numbers = new Map(used.map((n, i) => [n, i + 1]));
    rest = used.map((n) => params[n - 1]);
  } else {
    rest = scan.placeholders.filter((p) => !cut(p.at)).map((p) => params[p.n - 1]);
  }
  let out = "";
  let i = 0;
  const at = new Map(kept.map((p) => [p.at, p]));
  while (i <= text.length) {
    for (const [pos, s] of inserts) if (pos === i) out += s;
    if (i === text.length) break;
    if (cut(i)) {
      i++;
      continue;
    }
    const p = at.get(i);
    if (p && dialect === "postgres") {
      out += `$${numbers.get(p.n)}`;
      i += p.length;
      continue;
    }
    out += text[i];
    i++;
  }
  return { sql: out.replace(/\s+$/, ""), params: rest };
}

/** A key's value as an SQL literal: an integer or a string; undefined for anything else. */
function literal(v: unknown): string | undefined {
  if (typeof v === "bigint") return String(v);
  if (typeof v === "number") return Number.isSafeInteger(v) ? String(v) : undefined;
  if (typeof v === "string" && !v.includes("\0")) return `'${v.replaceAll("'", "''")}'`;
  return undefined;
}

/** An identifier as the statement spells it: quoted where it quotes it, or where it must be. */
function name(sql: string, id: string): string {
  const quoted = `"${id.replaceAll('"', '""')}"`;
  if (sql.includes(quoted) || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(id)) return quoted;
  return id;
}

interface TopScan {
  /** Where each top-level clause's keyword starts. */
  clause: Record<string, number | undefined>;
  /** A UNION, INTERSECT or EXCEPT at the top level. */
  compound: boolean;
  /** Each placeholder: where it is, its length, and its number. */
  placeholders: { at: number; length: number; n: number }[];
}

const CLAUSE = /^(from|where|group|having|order|limit|offset|window|union|intersect|except)\b/i;

/**
 * The top-level clauses and the placeholders of a select; undefined where it uses
 * placeholders other than `?` (SQLite) or `$n` (PostgreSQL), or dollar quotes.
 */
function scanTop(sql: string, dialect: SqlDialect): TopScan | undefined {
  const clause: TopScan["clause"] = {};
  const placeholders: TopScan["placeholders"] = [];
  let compound = false;
  let depth = 0;
  let i = 0;
  while (i < sql.length) {
    const skip = skipText(sql, i);
    if (skip > i) {
      // A comment could swallow what a rewrite puts after it.
      if (sql[i] === "-" || sql[i] === "/") return undefined;
      i = skip;
      continue;
    }
    const c = sql[i]!;
    const word = i === 0 || !/[\w$]/.test(sql[i - 1]!);
    if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (dialect === "sqlite" && (c === ":" || c === "@")) {
      if (/[A-Za-z_]/.test(sql[i + 1] ?? "")) return undefined;
    } else if (c === "?") {
      if (dialect === "postgres" || /\d/.test(sql[i + 1] ?? "")) return undefined;
      placeholders.push({ at: i, length: 1, n: placeholders.length + 1 });
    } else if (c === "$" && word) {
      const m = /^\$(\d+)/.exec(sql.slice(i, i + 12));
      if (!m || dialect !== "postgres") return undefined;
      placeholders.push({ at: i, length: m[0].length, n: Number(m[1]) });
      i += m[0].length;
      continue;
    } else if (depth === 0 && word) {
      const m = CLAUSE.exec(sql.slice(i, i + 10));
      if (m) {
        const k = m[1]!.toLowerCase();
        if (k === "union" || k === "intersect" || k === "except") compound = true;
        else clause[k] ??= i;
      }
    }
    i++;
  }
  return { clause, compound, placeholders };
}

/** How many parameters the statement binds: its placeholders (PostgreSQL: its largest `$n`). */
function placeholderCount(scan: TopScan, params: readonly unknown[]): number {
  if (scan.placeholders.length === 0) return params.length === 0 ? 0 : -1;
  const numbers = new Set(scan.placeholders.map((p) => p.n));
  // `$1` used twice binds one parameter: the count is of distinct numbers, 1..params.length.
  if ([...numbers].some((n) => n > params.length)) return -1;
  return numbers.size === params.length ? scan.placeholders.length : -1;
}

/** Whether a select has no WHERE (undefined: its text cannot be read). */
export function whereless(
  sql: string,
  params: readonly unknown[],
  dialect: SqlDialect,
): boolean | undefined {
  const read = clausesOf(sql, params, dialect);
  return read && read.cut("where") === undefined;
}
