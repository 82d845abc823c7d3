/**
 * The one place a database client becomes its driver: `sqlDriver(client)` tells the client
 * by its shape (client-kind.ts) and hands back the driver of that client, the same driver
 * every entry point runs on (raw SQL, the query caches' capture, and the data API's
 * sources, which give it options of their own); `clientCapture(client)` hands back the
 * change capture behind it.
 */

import type Database from "better-sqlite3";
import type { ClientCapture } from "./client-capture.ts";
import { clientKind } from "./client-kind.ts";
import type { D1DatabaseLike } from "./d1/binding.ts";
import { D1OwnChanges } from "./d1/change-table.ts";
import { d1ClientCapture } from "./d1/client-capture.ts";
import { D1Driver } from "./d1/driver.ts";
import { type Driver, isDriver } from "./driver.ts";
import {
  postgresClientCapture,
  postgresDrainedCapture,
  postgresJsClientCapture,
} from "./postgres/client-capture.ts";
import { PostgresDriver, type Sql } from "./postgres/driver.ts";
import { nodePostgresCapturePort } from "./postgres/node-postgres-capture.ts";
import { NodePostgresDriver, type NodePostgresLike } from "./postgres/node-postgres-driver.ts";
import { sqliteClientCapture } from "./sqlite/client-capture.ts";
import { DEFAULT_BUSY_TIMEOUT_MS } from "./sqlite/dialect.ts";
import { type LibsqlClientLike, libsqlDriver } from "./sqlite/libsql-driver.ts";
import {
  libsqlFile,
  openBetterSqliteCopy,
  openLibsqlCopy,
  ownConnection,
} from "./sqlite/own-connection.ts";
import { SyncSqliteDriver } from "./sqlite/sync-driver.ts";

/**
 * The driver of `client`, the application's: a libSQL `Client` (`@libsql/client`), a
 * better-sqlite3 `Database`, a postgres.js `Sql`, a node-postgres `Pool` or `Client`
 * (`pg`), or a D1 binding, or a driver written outside edgecache (see Driver), which is
 * its own; undefined for anything else. Statements run through `run` as
 * the application runs them, on its client; the application's client is never closed, and
 * its settings are left as they are.
 */
export function sqlDriver(client: unknown): Driver | undefined {
  // A driver of your own is its own driver (with no change capture behind it).
  if (isDriver(client)) return client;
  switch (clientKind(client)) {
    case "better-sqlite3":
      return new SyncSqliteDriver(client as Database.Database, {
        owned: false,
        busyTimeout: DEFAULT_BUSY_TIMEOUT_MS,
        guest: true,
      });
    case "libsql":
      return libsqlDriver(client as LibsqlClientLike, {
        busyTimeout: DEFAULT_BUSY_TIMEOUT_MS,
        file: () => libsqlFile(client),
      });
    case "postgres.js":
      return new PostgresDriver(client as Sql, { owned: false, schema: "public" });
    case "node-postgres":
      return new NodePostgresDriver(client as NodePostgresLike);
    case "d1": {
      const db = client as D1DatabaseLike;
      return new D1Driver(db, new D1OwnChanges(db), undefined);
    }
    default:
      return undefined;
  }
}

/**
 * The change capture behind `client`, the application's (see ClientCapture): a SQLite
 * file's (libSQL, better-sqlite3) followed on a connection of edgecache's own, never the
 * application's (see ownConnection); a postgres.js or node-postgres client's, consumed and
 * listened to on connections of its own; a D1 binding's, drained by the change log's
 * Durable Object. Undefined for any other client. `drained`: the cache follows a log whose
 * object drains change tables (a Worker's `durableChangeLog`): a postgres.js client's is
 * then drained there too, not consumed here.
 */
export function clientCapture(
  client: unknown,
  { drained = false }: { drained?: boolean } = {},
): ClientCapture | undefined {
  switch (clientKind(client)) {
    case "libsql":
      return sqliteClientCapture(
        ownConnection(() => openLibsqlCopy(client)),
        appReads(client),
      );
    case "better-sqlite3":
      return sqliteClientCapture(
        ownConnection(() => openBetterSqliteCopy(client)),
        appReads(client),
      );
    case "postgres.js":
      return drained
        ? postgresDrainedCapture(client as Sql)
        : postgresJsClientCapture(client as Sql);
    case "node-postgres":
      return postgresClientCapture(nodePostgresCapturePort(client as NodePostgresLike));
    case "d1":
      return d1ClientCapture(client as D1DatabaseLike);
    default:
      return undefined;
  }
}

/** Reads on the application's client, through its driver. */
function appReads(client: unknown) {
  const driver = sqlDriver(client)!;
  return async (sql: string, params: readonly unknown[]) => (await driver.run(sql, params)).rows;
}
