import { EdgecacheError } from "../core/errors.ts";
import type { SqlDialect } from "../database/analysis/parse.ts";
import { type CatalogColumn, withSqliteCollations, withSqliteUniques } from "../database/client.ts";
import {
  CAPTURE_PREFIX,
  CAPTURE_TRIGGERS_SQL,
  recordsChanges,
} from "../database/sqlite/capture-sql.ts";
import { TABLE_LIST_SQL, tableColumnsSql } from "../database/sqlite/dialect.ts";
import { openSqliteFile, sqliteFileProblem } from "../database/sqlite/file.ts";
import { isPostgresUrl, postgresCatalog } from "./postgres.ts";

/**
 * A table as the catalog declares it: its one-column primary key, its columns' declared
 * types (on PostgreSQL, and whether their text orders by code point).
 */
export interface CatalogTable {
  primaryKey?: string;
  columns: CatalogColumn[];
  /** Whether change capture's triggers record its writes. */
  captured: boolean;
}

/** A database's tables by name (`schema.table` outside PostgreSQL's `public`), and its dialect. */
export interface Catalog {
  dialect: SqlDialect;
  tables: Map<string, CatalogTable>;
}

/**
 * Reads the catalog of the database a user names (a SQLite file, opened read-only, or a
 * PostgreSQL URL): what `edgecache explain` needs to tell a select's keys and columns.
 */
export async function readCatalog(database: string): Promise<Catalog> {
  if (isPostgresUrl(database))
    return { dialect: "postgres", tables: await postgresCatalog(database) };
  const problem = sqliteFileProblem(database);
  if (problem) throw new EdgecacheError("E_BAD_OPTION", "catalog", problem);
  const db = openSqliteFile(database, { component: "explain", what: "database", readonly: true });
  try {
    const tables = new Map<string, CatalogTable>();
    const captured = new Set(
      (db.prepare(CAPTURE_TRIGGERS_SQL).all() as { name: string; table: string }[])
        .filter(recordsChanges)
        .map((r) => r.table),
    );
    for (const { name } of db.prepare(TABLE_LIST_SQL).all() as { name: string }[]) {
      if (name.startsWith("sqlite_") || name.startsWith(CAPTURE_PREFIX)) continue;
      const info = db.prepare(tableColumnsSql(name)).all() as Record<string, unknown>[];
      const keys = info.filter((c) => Number(c.pk) > 0);
      const all = async (sql: string) => db.prepare(sql).all() as Record<string, unknown>[];
      const columns = await withSqliteUniques(name, info, all);
      tables.set(name, {
        ...(keys.length === 1 && { primaryKey: String(keys[0]!.name) }),
        captured: captured.has(name),
        columns: await withSqliteCollations(
          name,
          columns,
          async (sql) => db.prepare(sql).get() as Record<string, unknown> | undefined,
        ),
      });
    }
    return { dialect: "sqlite", tables };
  } finally {
    db.close();
  }
}
