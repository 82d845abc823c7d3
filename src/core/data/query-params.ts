import { EdgecacheError } from "../errors.ts";
import type { ColumnInfo, Filter, FilterOp, ListQuery, Resource, SortKey } from "./query.ts";

export const DEFAULT_LIMIT = 20;
export const MAX_LIMIT = 1000;
export const MAX_OFFSET = 1_000_000;
const OPS = new Set<FilterOp>(["eq", "gt", "gte", "lt", "lte"]);
const RESERVED = new Set(["limit", "offset", "sort"]);

function bad(param: string, message: string): never {
  throw new EdgecacheError("E_BAD_QUERY", "data-api", `${param}: ${message}`);
}

/**
 * Parses a list request's query string.
 *
 * - `col=value` equals; `col=abc*` starts with (text and date columns); `col[eq]=abc*`
 *   is a literal equality;
 * - `col[gt]=`, `[gte]`, `[lt]`, `[lte]` compare numbers numerically and text and
 *   dates (ISO 8601) by code point;
 * - `sort=col,-col` (the primary key is appended as the tie-breaker);
 * - `limit` (default 20, 1 to 1000) and `offset` (0 to 1,000,000).
 *
 * @example
 * parseListQuery(resource, new URLSearchParams("firstName=Lane&total[gte]=10&sort=-createdAt"))
 */
export function parseListQuery(resource: Resource, params: URLSearchParams): ListQuery {
  const columns = new Map(resource.table.columns.map((c) => [c.name, c]));
  const filters: Filter[] = [];
  let limit = DEFAULT_LIMIT;
  let offset = 0;
  let sort: SortKey[] = [];
  for (const [name, raw] of params) {
    if (RESERVED.has(name)) {
      if (name === "limit") limit = integer(name, raw, 1, MAX_LIMIT);
      else if (name === "offset") offset = integer(name, raw, 0, MAX_OFFSET);
      else sort = parseSort(raw, columns);
      continue;
    }
    const m = /^([^[\]]+)(?:\[([a-z]+)\])?$/.exec(name);
    if (!m) bad(name, "expected a column name, optionally followed by [op]");
    const columnName = m[1]!;
    const column = columns.get(columnName);
    if (!column) bad(name, `unknown column "${columnName}" of ${resource.name}`);
    const opName = m[2];
    if (opName !== undefined && !OPS.has(opName as FilterOp)) {
      bad(name, `unknown operator "${opName}" (expected eq, gt, gte, lt or lte)`);
    }
    let op = (opName ?? "eq") as FilterOp;
    let text = raw;
    if (opName === undefined && raw.endsWith("*")) {
      if (column.kind === "number") bad(name, "a prefix (value*) needs a text or date column");
      op = "prefix";
      text = raw.slice(0, -1);
    }
    filters.push({ column: column.name, op, value: coerce(name, column, text, op) });
  }
  const pk = resource.table.primaryKey;
  if (!sort.some((s) => s.column === pk)) sort.push({ column: pk, desc: false });
  return { filters, sort, limit, offset };
}

function integer(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw)) bad(name, `expected an integer from ${min} to ${max}, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) bad(name, `expected an integer from ${min} to ${max}, got ${n}`);
  return n;
}

function parseSort(raw: string, columns: Map<string, ColumnInfo>): SortKey[] {
  const keys: SortKey[] = [];
  for (const part of raw.split(",")) {
    const desc = part.startsWith("-");
    const name = desc ? part.slice(1) : part;
    if (!columns.has(name)) bad("sort", `unknown column "${name}"`);
    if (keys.some((k) => k.column === name)) bad("sort", `column "${name}" appears twice`);
    keys.push({ column: name, desc });
  }
  return keys;
}

function coerce(name: string, column: ColumnInfo, raw: string, op: FilterOp): string | number {
  if (column.kind === "number") {
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n)) bad(name, `expected a number, got "${raw}"`);
    return n;
  }
  if (column.kind === "date" && op !== "prefix" && Number.isNaN(Date.parse(raw))) {
    bad(name, `expected an ISO 8601 date such as 2024-05-01, got "${raw}"`);
  }
  return raw;
}
