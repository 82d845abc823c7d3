import { clientKind } from "../database/client-kind.ts";
import { nodeRequire } from "../database/node-require.ts";

interface TypeParsers {
  getTypeParser(id: number, format?: string): unknown;
}

/**
 * The types drizzle-orm's node-postgres driver keeps as the server's text (its session's
 * `getTypeParser`: timestamptz, timestamp, date, interval, and their arrays, numeric[]):
 * a select the cache runs for Drizzle reads them so too.
 */
const DRIZZLE_TEXT_TYPES = new Set([1184, 1114, 1082, 1186, 1231, 1115, 1185, 1187, 1182]);

/** pg's type parsers (the default ones, and those the application set on them), where pg loads. */
function defaultTypes(): unknown {
  try {
    return (nodeRequire(import.meta.url)("pg") as { types?: unknown }).types;
  } catch {
    return undefined;
  }
}

/**
 * Runs a select on the application's client the way Drizzle runs its query builder's
 * selects (in array mode: the rows it maps to its fields by position), so that rows the
 * statement cache fetches for a group patch are in the form of those Drizzle cached. For
 * the clients whose Drizzle sessions do so; undefined for others (D1: its rows are
 * batched otherwise), whose results are then not kept by group patches.
 */
export function valuesRunner(
  client: unknown,
): ((sql: string, params: readonly unknown[]) => Promise<unknown>) | undefined {
  switch (clientKind(client)) {
    case "libsql": {
      const c = client as {
        execute(s: { sql: string; args: unknown[] }): Promise<{ rows: unknown[] }>;
      };
      return async (sql, params) => (await c.execute({ sql, args: [...params] })).rows;
    }
    case "postgres.js": {
      const c = client as {
        unsafe(sql: string, params: unknown[]): { values(): Promise<unknown[]> };
      };
      return (sql, params) => c.unsafe(sql, [...params]).values();
    }
    case "node-postgres": {
      // A Pool's query takes a connection no transaction holds; a Client's is the one the
      // application's transactions run on, whose uncommitted rows a patch must not read.
      if (!("totalCount" in (client as object))) return undefined;
      const c = client as {
        query(q: {
          text: string;
          values: unknown[];
          rowMode: "array";
          types: { getTypeParser: (id: number, format?: string) => unknown };
        }): Promise<{ rows: unknown[] }>;
      };
      // pg's own parsers, as the Pool has them (its `types` option, else pg's defaults).
      const own = (client as { options?: { types?: TypeParsers } }).options?.types;
      const parsers = own ?? (defaultTypes() as TypeParsers | undefined);
      if (!parsers) return undefined;
      const types = {
        getTypeParser: (id: number, format?: string) =>
          DRIZZLE_TEXT_TYPES.has(id) ? (v: unknown) => v : parsers.getTypeParser(id, format),
      };
      return async (sql, params) =>
        (await c.query({ text: sql, values: [...params], rowMode: "array", types })).rows;
    }
    case "better-sqlite3": {
      const c = client as {
        prepare(sql: string): { raw(on: boolean): { all(...p: unknown[]): unknown[] } };
      };
      return async (sql, params) =>
        c
          .prepare(sql)
          .raw(true)
          .all(...params);
    }
    default:
      return undefined;
  }
}
