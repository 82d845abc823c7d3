/**
 * The sources' room as the command line reaches it: the factories, the checks of what a
 * user names (a SQLite file, a PostgreSQL URL), change capture's SQL for D1 run through
 * wrangler, and a database's catalog with the explanation of a select (`edgecache explain`). The rest of src/sources is the room's own (dependency-cruiser's
 * `cli-through-sources-index`).
 */

export { type Explanation, explainSql } from "../database/analysis/explain.ts";
export { capturableTables, D1_TABLES_SQL } from "../database/d1/change-table.ts";
export {
  CAPTURE_BACKLOG_SQL,
  CAPTURE_TRIGGERS_SQL,
  capturedTablesBatched,
  captureInstallSql,
  captureStatusOf,
  captureUninstallSql,
} from "../database/sqlite/capture-sql.ts";
export { sqliteFileProblem } from "../database/sqlite/file.ts";
export { type Catalog, readCatalog } from "./catalog.ts";
export { isPostgresUrl, postgresSource, redactUrl } from "./postgres.ts";
export type { Source } from "./source.ts";
export { sqliteSource } from "./sqlite.ts";
