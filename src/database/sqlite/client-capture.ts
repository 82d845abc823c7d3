import type { CaptureFeed } from "../../core/capture-feed.ts";
import type { SqlClient } from "../client.ts";
import type { CapturedShape, CaptureInstallation, ClientCapture } from "../client-capture.ts";
import { runStepsAsync } from "../driver.ts";
import type { ForeignKeyAction } from "../schema.ts";
import {
  type SqliteExecutor,
  sqliteCapturedTables,
  sqliteCaptureInstalled,
  sqliteChangesPending,
  sqliteExecutorFeed,
} from "./change-table.ts";
import { sqliteDialect, tableColumnsSql } from "./dialect.ts";
import type { OwnConnection } from "./own-connection.ts";

/** Reads on a connection: edgecache's own, or the application's (see sqliteClientCapture). */
type Reads = SqliteExecutor["all"];

/**
 * Capture behind an application's SQLite file (libSQL, better-sqlite3): its change table
 * is followed in this process on a connection of edgecache's own (`own`, see
 * ownConnection). A database in memory has no second connection (nor can anything write
 * it around the application): its foreign keys alone are read, by `appReads` on the
 * application's connection (a read, which no other connection can make fail).
 */
export function sqliteClientCapture(own: OwnConnection, appReads: Reads): ClientCapture {
  // The feed last made: it tells whether a change waits without a statement (settled).
  let feed: CaptureFeed | undefined;
  const catalog = sqliteCatalog(own, /^sqlite_/, (shapes) => {
    feed = sqliteExecutorFeed(own, (t) => shapes(t)?.columns, { unref: true, own: true });
    return feed;
  });
  // The catalog is read again only when the schema changed (one look a second otherwise).
  let schema: unknown;
  let installations: Promise<CaptureInstallation[]> | undefined;
  let foreignKeys: Promise<ForeignKeyAction[]> | undefined;
  const reads = async () => ((await own.available()) ? own.all : appReads);
  return {
    async installations() {
      const read = await reads();
      const [row] = await read("PRAGMA schema_version", []);
      const now = row === undefined ? undefined : Object.values(row)[0];
      if (now === undefined || now !== schema) {
        schema = now;
        // A database in memory has no second connection: nothing else can write it either.
        installations = read === own.all ? catalog.installations() : Promise.resolve([]);
        foreignKeys = undefined;
        // A failed read is tried again by the next look.
        installations.catch(() => {
          schema = undefined;
        });
      }
      return installations!;
    },
    async foreignKeys() {
      foreignKeys ??= sqliteForeignKeys(await reads(), /^sqlite_/);
      foreignKeys.catch(() => {
        foreignKeys = undefined;
      });
      return foreignKeys;
    },
    pendingInOrder: (tables, applied) =>
      sqliteChangesPending(own, tables, applied && ((change) => applied("main", change))),
    settledInOrder: () => feed?.settled?.() ?? Promise.resolve(false),
    statements: () => own.statements,
    close: () => own.close(),
  };
}

/**
 * SQLite's capture catalog (the change table, the triggers, each captured table's columns
 * and primary key) and foreign keys, over any driver; `internal` names the tables of the
 * database's own that are never read. `feed` is the installation's change table as a feed
 * in this process, or absent where another drains it (D1).
 */
export function sqliteCatalog(
  exec: SqliteExecutor,
  internal: RegExp,
  feed?: CaptureInstallation["feed"],
): Pick<ClientCapture, "installations" | "foreignKeys"> {
  return {
    foreignKeys: () => sqliteForeignKeys(exec.all, internal),
    async installations() {
      if (!(await sqliteCaptureInstalled(exec))) return [];
      const tables = new Map<string, CapturedShape>();
      const captured = await sqliteCapturedTables(exec);
      for (const name of captured.tables) {
        const info = await exec.all(tableColumnsSql(name), []);
        const keys = info
          .filter((c) => Number(c.pk) > 0)
          .sort((a, b) => Number(a.pk) - Number(b.pk))
          .map((c) => String(c.name));
        tables.set(name, {
          columns: info.map((c) => String(c.name)),
          ...(keys.length === 1 && { primaryKey: keys[0]! }),
          ...(keys.length > 1 && { keys: [keys] }),
        });
      }
      return [
        {
          id: "main",
          tables,
          exactReals: captured.exactReals,
          replaces: captured.replaces,
          ...(feed && { feed }),
        },
      ];
    },
  };
}

/** A SQLite database's foreign keys, read by `all`; `internal` as in sqliteCatalog. */
function sqliteForeignKeys(all: Reads, internal: RegExp): Promise<ForeignKeyAction[]> {
  const dialect = sqliteDialect("capture", internal);
  return runStepsAsync(dialect.foreignKeyActions(), (s) => all(s.sql, s.params));
}

/** A client (client.ts) as what SQLite's capture catalog reads and writes through. */
export function clientExecutor(client: SqlClient): SqliteExecutor {
  return {
    all: async (sql, params) => (await client.run(sql, params)).rows,
    run: async (sql, params) => (await client.run(sql, params)).rowsAffected,
    async write(sql, params) {
      await client.run(sql, params);
    },
  };
}
