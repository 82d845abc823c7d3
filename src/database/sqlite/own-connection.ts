import { nodeRequire } from "../node-require.ts";
import type { SqliteExecutor } from "./change-table.ts";
import { whenNotBusy } from "./dialect.ts";
import { PreparedStatements } from "./prepared.ts";

/**
 * edgecache's own connection to an application's SQLite file, for change capture's
 * statements (its looks at data_version, reads of the change table, the lease, deletes of
 * what it applied). They never run on the application's connection: a statement of ours
 * that fails there with SQLITE_BUSY can leave a libSQL connection inside a transaction that
 * never commits, so that the application's later writes are answered and then lost (found
 * with two processes writing one file). On a connection of its own, a busy statement of
 * ours fails alone, at once (busy_timeout 0: SQLite's own wait would block the event loop),
 * and is tried again after a pause.
 *
 * The connection is opened with the application's own SQLite library (the constructor of
 * its better-sqlite3 `Database`, or the `libsql` package its `@libsql/client` uses): two
 * copies of SQLite in one process do not see each other's POSIX locks, and closing a file
 * in one drops the other's.
 */

/** A synchronous SQLite connection as better-sqlite3 and libSQL's `libsql` package make them. */
export interface SyncSqlite {
  prepare(sql: string): SyncStatement;
  exec(sql: string): unknown;
  close(): unknown;
}

interface SyncStatement {
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number | bigint };
}

/** How long one of our writes waits for the application's write lock, ms. */
const WRITE_WAIT_MS = 5000;

/** A SqliteExecutor on a connection of edgecache's own, counting its statements. */
export interface OwnConnection extends SqliteExecutor {
  /** Statements run on it so far (every try counted). */
  readonly statements: number;
  /** Whether the database could be opened (false: in memory, or no file: nothing to follow). */
  available(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * An executor on the connection `open` gives (opened on first use; undefined when the
 * database cannot have a second connection, like SQLite in memory). Every statement is
 * counted; writes wait for the lock without blocking, reads never wait in WAL mode.
 */
export function ownConnection(open: () => Promise<SyncSqlite | undefined>): OwnConnection {
  let statements = 0;
  let opened = 0;
  let closed = false;
  let prepared: PreparedStatements<SyncStatement> | undefined;
  let opening: Promise<SyncSqlite | undefined> | undefined;
  const connection = () => {
    opening ??= open().then((db) => {
      // Ours alone: its busy statements fail at once and are tried again (whenNotBusy).
      db?.exec("PRAGMA busy_timeout = 0");
      if (db) opened++;
      return db;
    });
    // A failed open (the file moved) is tried again by the next statement.
    opening.catch(() => {
      opening = undefined;
    });
    return opening;
  };
  /**
   * Closes the connection after a failed statement; the next statement opens another.
   * libSQL does not reset a statement that failed (SQLITE_BUSY, say): the connection then
   * stays inside the statement's implicit transaction, its next writes hold the write lock
   * and never commit. Closing it is the one repair that holds for every driver.
   */
  const discard = async () => {
    const db = await opening?.catch(() => undefined);
    opening = undefined;
    prepared = undefined;
    try {
      db?.close();
    } catch {
      // Already closed.
    }
  };
  const run = async <T>(sql: string, work: (s: SyncStatement) => T): Promise<T> => {
    if (closed) throw new Error("[edgecache] [capture] the capture connection is closed");
    const db = await connection();
    if (!db) throw new Error("[edgecache] [capture] the database has no file to follow");
    prepared ??= new PreparedStatements((text) => db.prepare(text));
    const s = prepared.get(sql);
    statements++;
    try {
      return work(s);
    } catch (err) {
      await discard();
      throw err;
    }
  };
  return {
    get statements() {
      return statements;
    },
    get opened() {
      return opened;
    },
    async available() {
      return (await connection()) !== undefined;
    },
    all: (sql, params) => run(sql, (s) => s.all(...params) as Record<string, unknown>[]),
    run: (sql, params) => run(sql, (s) => Number(s.run(...params).changes)),
    async write(sql, params) {
      await whenNotBusy(() => run(sql, (s) => s.run(...params)), WRITE_WAIT_MS);
    },
    async close() {
      closed = true;
      await discard();
    },
  };
}

/** A better-sqlite3 `Database` as far as this looks at it. */
interface BetterSqliteLike {
  name?: unknown;
  memory?: unknown;
  constructor: new (path: string, options?: object) => SyncSqlite;
}

/** A second connection to the file of a better-sqlite3 `Database`, by its own constructor. */
export async function openBetterSqliteCopy(db: unknown): Promise<SyncSqlite | undefined> {
  const d = db as BetterSqliteLike;
  if (d.memory === true || typeof d.name !== "string" || d.name === "") return undefined;
  return new d.constructor(d.name, { fileMustExist: true });
}

/** A libSQL `Client`'s `execute`, as far as this uses it. */
interface LibsqlLike {
  execute(stmt: { sql: string; args: unknown[] }): Promise<{ rows: Record<string, unknown>[] }>;
}

/**
 * A second connection to the file of a libSQL `Client` (`file:` URL), opened with the
 * `libsql` package that `@libsql/client` is built on. Undefined in memory (nothing else can
 * reach it).
 */
export async function openLibsqlCopy(client: unknown): Promise<SyncSqlite | undefined> {
  const file = await libsqlFile(client);
  return file === undefined ? undefined : openLibsqlFile(file);
}

/** The file of a libSQL `Client`, asked of it (`PRAGMA database_list`); undefined in memory. */
export async function libsqlFile(client: unknown): Promise<string | undefined> {
  const { rows } = await (client as LibsqlLike).execute({ sql: "PRAGMA database_list", args: [] });
  const file = rows.find((r) => r.name === "main")?.file;
  return typeof file === "string" && file !== "" ? file : undefined;
}

/** A connection to `file` with the `libsql` package (see libsqlDatabase). */
export function openLibsqlFile(file: string): SyncSqlite {
  const Database = libsqlDatabase();
  return new Database(file, {});
}

/**
 * The `libsql` package's `Database`, required from where `@libsql/client` is (it is that
 * client's dependency, not ours).
 */
function libsqlDatabase(): new (path: string, options?: object) => SyncSqlite {
  const client = nodeRequire(import.meta.url).resolve("@libsql/client");
  return nodeRequire(client)("libsql") as new (
    path: string,
    options?: object,
  ) => SyncSqlite;
}
