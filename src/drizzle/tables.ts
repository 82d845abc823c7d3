import { badOption } from "../core/errors.ts";
import { plainTableName } from "../query-cache/columns.ts";

// Drizzle's table symbols are registered globally (`Symbol.for`), so a table is read without
// importing drizzle-orm at run time (it is an optional peer dependency).
const SCHEMA = Symbol.for("drizzle:Schema");
const BASE_NAME = Symbol.for("drizzle:BaseName");
const IS_TABLE = Symbol.for("drizzle:IsDrizzleTable");

/** What may name a table: a Drizzle `Table` object or its name. */
export type TableRef = string | object;

/**
 * A table's name as Drizzle's own automatic invalidation writes it: `schema.table` for a
 * table in a schema (`pgSchema("app").table(...)`), the bare name otherwise. A name given as
 * text is taken as written, less a leading `public.` (PostgreSQL's default schema, which
 * Drizzle leaves out), so `users`, `public.users` and the `users` table object all match.
 */
export function tableName(table: TableRef): string {
  if (typeof table === "string") {
    if (table.length === 0) badOption("drizzle", "tables", "a table or a non-empty name", table);
    return plainTableName(table);
  }
  const t = table as Record<symbol, unknown>;
  if (t[IS_TABLE] !== true || typeof t[BASE_NAME] !== "string") {
    badOption("drizzle", "tables", "Drizzle tables or table names", table);
  }
  const schema = t[SCHEMA];
  return typeof schema === "string" && schema !== "" ? `${schema}.${t[BASE_NAME]}` : t[BASE_NAME];
}

/** One or many, as Drizzle's `MutationOption` allows. */
export function listOf<T>(value: T | readonly T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? [...value] : [value as T];
}
