/** The database clients edgecache tells by their shape, without importing their libraries. */
export type ClientKind = "postgres.js" | "node-postgres" | "libsql" | "better-sqlite3" | "d1";

/**
 * Which client `client` is: a postgres.js `Sql` (a function with `unsafe` and `listen`), a
 * libSQL `Client` (`execute`, `batch`, `executeMultiple`), a better-sqlite3 `Database`
 * (`prepare`, `pragma`; not the `libsql` package's look-alike), a D1 binding (`prepare`, `batch`, `exec`) or a node-postgres
 * `Pool` or `Client` (`query`, `connect`, `end`); undefined otherwise.
 */
export function clientKind(client: unknown): ClientKind | undefined {
  if (typeof client === "function") {
    const f = client as unknown as Record<string, unknown>;
    const isPostgresJs = typeof f.unsafe === "function" && typeof f.listen === "function";
    return isPostgresJs ? "postgres.js" : undefined;
  }
  if (typeof client !== "object" || client === null) return undefined;
  const c = client as Record<string, unknown>;
  const has = (name: string) => typeof c[name] === "function";
  if (has("execute") && has("batch") && has("executeMultiple")) return "libsql";
  // The `libsql` package's synchronous Database has better-sqlite3's shape and `syncUntil`
  // (an embedded replica's), but not its statements' `readonly`: it is not taken for one.
  if (has("prepare") && has("pragma")) return has("syncUntil") ? undefined : "better-sqlite3";
  if (has("prepare") && has("batch") && has("exec")) return "d1";
  // A pg Pool counts its clients, a pg Client keeps its connection parameters: what tells
  // them from other drivers with query, connect and end (mysql, mysql2).
  const pg = "totalCount" in c || "connectionParameters" in c;
  if (pg && has("query") && has("connect") && has("end")) return "node-postgres";
  return undefined;
}
