import type { CapturingSource } from "../core/capture-feed.ts";
import type { ViewInfo } from "../core/data/query.ts";
import { badOption, checkOptionNames, type OptionNames } from "../core/errors.ts";
import type {
  D1DatabaseLike,
  D1QueriesLike,
  D1SessionLike,
  D1StatementLike,
} from "../database/d1/binding.ts";
import { D1_INTERNAL, D1OwnChanges, d1Capturing } from "../database/d1/change-table.ts";
import { D1Driver, type D1Sessions } from "../database/d1/driver.ts";
import { sqliteDialect } from "../database/sqlite/dialect.ts";
import type { Source } from "./source.ts";
import { validateViewsOption } from "./sql.ts";
import { sqlSource } from "./sql-source.ts";

export type { D1DatabaseLike, D1QueriesLike, D1SessionLike, D1Sessions, D1StatementLike };

export interface D1SourceOptions {
  /** The D1 binding (`env.DB` in a Worker). */
  database: D1DatabaseLike;
  /** Declared views (joins), as for the SQLite source. */
  views?: ViewInfo[];
  /**
   * Where work that may finish after a write's answer goes (a Worker's `ctx.waitUntil`):
   * deleting the write's rows from change capture's table. Without it the write waits.
   */
  schedule?: (work: Promise<unknown>) => void;
  /** Read D1's replicas through sessions at these bookmarks (see D1Sessions); off by default. */
  sessions?: D1Sessions;
}

export {
  d1CaptureInstalled,
  d1CaptureStatus,
  installD1Capture,
  uninstallD1Capture,
} from "../database/d1/change-table.ts";

const COMPONENT = "d1";

/** The options D1SourceOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<D1SourceOptions> = {
  database: true,
  schedule: true,
  sessions: true,
  views: true,
};

/**
 * A Source over Cloudflare D1: SQLite's dialect (the same compiled filters, sorts and
 * checks as the better-sqlite3 source) over D1's async API.
 *
 * D1 has no interactive transactions, so each write is one statement or one `batch`
 * (which D1 runs as one transaction): an update reads the old row and writes in one
 * batch, a delete reads the rows its foreign key actions change and deletes in one batch
 * (see SqlSource). A value SQLite would convert by column affinity is refused before the
 * write (there is no transaction to roll back after it).
 *
 * @example
 * ```ts
 * const source = d1Source({ database: env.DB, views: demoViews });
 * ```
 */
export function d1Source(options: D1SourceOptions): Source & CapturingSource {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  checkOptionNames(COMPONENT, options, OPTIONS);
  const db = options.database;
  if (typeof db !== "object" || db === null || typeof db.prepare !== "function") {
    badOption(COMPONENT, "database", "a D1 database binding", db);
  }
  const views = validateViewsOption(COMPONENT, options.views);
  const { sessions } = options;
  if (sessions !== undefined) {
    if (typeof sessions?.bookmark !== "function" || typeof sessions.written !== "function") {
      badOption(COMPONENT, "sessions", "{ bookmark(), written(bookmark) }", sessions);
    }
    if (typeof db.withSession !== "function") {
      badOption(COMPONENT, "database", "a D1 binding with withSession (sessions)", db);
    }
  }
  const own = new D1OwnChanges(db);
  const driver = new D1Driver(db, own, sessions);
  const source = sqlSource(sqliteDialect(COMPONENT, D1_INTERNAL), driver, {
    name: COMPONENT,
    views,
  });
  // Change capture (database/d1/change-table.ts): its triggers record the data API's writes too, marked.
  return Object.assign(source, d1Capturing(db, own, options.schedule));
}
