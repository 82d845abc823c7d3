import Database from "better-sqlite3";
import type { CaptureFeed, CaptureStatus, CapturingSource } from "../core/capture.ts";
import type { WriteEvent } from "../core/deps/planner.ts";
import { badOption, EdgecacheError } from "../core/errors.ts";
import type { ListQuery, Resource, Row, Schema, ViewInfo } from "../core/query.ts";
import type { DeleteResult, Source, WriteOptions, WriteResult } from "./source.ts";
import {
  attachChildren,
  checkViews,
  coerceId,
  type ForeignKey,
  joinKeyChunks,
  quote,
  validateViewsOption,
} from "./sql.ts";
import {
  CAPTURE_PREFIX,
  installSqliteCapture,
  ownChanges,
  sqliteCaptureFeed,
  sqliteCaptureStatus,
  uninstallSqliteCapture,
} from "./sqlite-capture.ts";
import {
  affectedTables,
  checkStored,
  childrenSql,
  FOREIGN_KEY_LIST_SQL,
  type ForeignKeyRow,
  foreignKeysByParent,
  insertStatement,
  isBusy,
  keyMatch,
  replaceAssignments,
  selectSql,
  TABLE_INFO_SQL,
  TABLE_LIST_SQL,
  TABLE_SQL,
  type TableInfoRow,
  type TableMeta,
  TRIGGERS_SQL,
  tableMeta,
  toEdgecacheError,
  updateAssignments,
} from "./sqlite-dialect.ts";

const COMPONENT = "sqlite";

/** SQLite allows 32,766 bound parameters; small IN lists keep statements cheap to prepare. */
const MAX_IN_PARAMS = 500;

/** Distinct SQL texts kept prepared; the least recently used is dropped first. */
const MAX_CACHED_STATEMENTS = 1000;

/** How long a write waits for another connection's write lock by default, ms. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;
/** The first pause between two tries for the write lock; each next one doubles, up to the last. */
const FIRST_BUSY_PAUSE_MS = 2;
const MAX_BUSY_PAUSE_MS = 50;

interface CommonOptions {
  views?: ViewInfo[];
  /**
   * How long a write waits, in ms, for a write lock another connection or process holds
   * (DEFAULT_BUSY_TIMEOUT_MS); then it fails with E_SOURCE_BUSY (a 503 with Retry-After).
   * It waits between tries, never blocking the event loop as SQLite's own busy_timeout would.
   */
  busyTimeout?: number;
}

export type SqliteSourceOptions =
  | ({ path: string; readonly?: boolean } & CommonOptions)
  | ({ database: Database.Database } & CommonOptions);

/**
 * A Source over a SQLite database (better-sqlite3): tables are discovered from the
 * database, views are declared. Opens the file itself (WAL mode) or uses a given handle,
 * which it then leaves open on close().
 *
 * @example
 * ```ts
 * const source = sqliteSource({ path: "demo.db", views: demoViews });
 * const schema = await source.schema();
 * const users = resolveResource(schema, "users")!;
 * const rows = await source.list(users, {
 *   filters: [{ column: "firstName", op: "eq", value: "Lane" }],
 *   sort: [{ column: "id", desc: false }],
 *   limit: 10,
 *   offset: 0,
 * });
 * ```
 */
export function sqliteSource(options: SqliteSourceOptions): Source & CapturingSource {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  const views = validateViewsOption(COMPONENT, options.views);
  const { busyTimeout = DEFAULT_BUSY_TIMEOUT_MS } = options;
  if (typeof busyTimeout !== "number" || !(busyTimeout >= 0) || !Number.isFinite(busyTimeout)) {
    badOption(COMPONENT, "busyTimeout", "milliseconds >= 0", busyTimeout);
  }
  if ("database" in options) {
    const db: unknown = options.database;
    if (
      typeof db !== "object" ||
      db === null ||
      typeof (db as Database.Database).prepare !== "function"
    ) {
      badOption(COMPONENT, "database", "a better-sqlite3 Database", db);
    }
    return new SqliteSource(options.database, {
      owned: false,
      readonly: false,
      views,
      busyTimeout,
    });
  }
  const { path, readonly = false } = options;
  if (typeof path !== "string" || path === "") {
    badOption(COMPONENT, "path", "a non-empty string", path);
  }
  if (typeof readonly !== "boolean") badOption(COMPONENT, "readonly", "a boolean", readonly);
  let db: Database.Database;
  try {
    db = new Database(path, { readonly, fileMustExist: readonly });
    // WAL lets readers proceed while a write is in progress.
    if (!readonly) db.pragma("journal_mode = WAL");
  } catch (cause) {
    const message = `cannot open database ${JSON.stringify(path)}`;
    throw new EdgecacheError("E_SOURCE_UNAVAILABLE", COMPONENT, message, { cause });
  }
  return new SqliteSource(db, { owned: true, readonly, views, busyTimeout });
}

class SqliteSource implements Source, CapturingSource {
  readonly name = "sqlite";
  readonly #db: Database.Database;
  readonly #owned: boolean;
  readonly #readonly: boolean;
  readonly #views: ViewInfo[];
  readonly #busyTimeout: number;
  readonly #statements = new Map<string, Database.Statement>();
  #schema: Schema | undefined;
  #tables = new Map<string, TableMeta>();
  #foreignKeys: Map<string, ForeignKey[]> | undefined;
  #effects = new Map<string, WriteEvent[]>();
  readonly #own: ReturnType<typeof ownChanges>;

  constructor(
    db: Database.Database,
    options: { owned: boolean; readonly: boolean; views: ViewInfo[]; busyTimeout: number },
  ) {
    this.#db = db;
    this.#owned = options.owned;
    this.#readonly = options.readonly;
    this.#views = options.views;
    this.#busyTimeout = options.busyTimeout;
    this.#own = ownChanges(db);
    // Off by default in SQLite; without it REFERENCES clauses are not enforced.
    guard(() => db.pragma("foreign_keys = ON"));
  }

  async schema(): Promise<Schema> {
    return guard(() => this.#discover());
  }

  async list(resource: Resource, query: ListQuery): Promise<Row[]> {
    return guard(() => {
      const table = this.#table(resource.table.name);
      const rows = this.#select(table, query);
      return resource.kind === "view" ? this.#attachJoins(resource.view, rows) : rows;
    });
  }

  async get(resource: Resource, id: string | number): Promise<Row | undefined> {
    return guard(() => {
      const table = this.#table(resource.table.name);
      const row = this.#selectById(table, id);
      if (!row) return undefined;
      return resource.kind === "view" ? this.#attachJoins(resource.view, [row])[0] : row;
    });
  }

  async insert(table: string, values: Row, options?: WriteOptions): Promise<Row> {
    return guardAsync(() => {
      const meta = this.#writable(table);
      const { sql, params, given } = insertStatement(meta, values);
      return this.#locked(options, () => {
        const row = this.#statement(sql).get(params) as Row;
        checkStored(meta, given, row);
        return row;
      });
    });
  }

  async update(
    table: string,
    id: string | number,
    values: Row,
    options?: WriteOptions,
  ): Promise<WriteResult | undefined> {
    return guardAsync(() => {
      const meta = this.#writable(table);
      const { assignments, params, given } = updateAssignments(meta, id, values);
      return this.#write(meta, id, assignments, params, given, options);
    });
  }

  async replace(
    table: string,
    id: string | number,
    values: Row,
    options?: WriteOptions,
  ): Promise<WriteResult | undefined> {
    return guardAsync(() => {
      const meta = this.#writable(table);
      const { assignments, params, given } = replaceAssignments(meta, id, values);
      return this.#write(meta, id, assignments, params, given, options);
    });
  }

  async delete(
    table: string,
    id: string | number,
    options?: WriteOptions,
  ): Promise<DeleteResult | undefined> {
    return guardAsync(() => {
      const meta = this.#writable(table);
      const key = coerceId(meta, id);
      if (key === undefined) return undefined;
      return this.#locked(options, (): DeleteResult | undefined => {
        // Rows that foreign key actions will change, read before the delete in the same
        // transaction: the cache must hear of them as it hears of the row itself.
        const affected = this.#referencing(table, key);
        // RETURNING on DELETE yields the row as it was: the old row in one atomic statement.
        const sql = `DELETE FROM ${quote(table)} WHERE ${keyMatch(meta, key)} RETURNING *`;
        const old = this.#statement(sql).get(key) as Row | undefined;
        if (!old) return undefined;
        const cascaded: WriteEvent[] = affected.map(({ table: child, row }) => {
          const childMeta = this.#table(child);
          const now = this.#statement(
            `SELECT * FROM ${quote(child)} WHERE ${keyMatch(childMeta, row[childMeta.pk.name] as string)}`,
          ).get(row[childMeta.pk.name]) as Row | undefined;
          return now
            ? { table: child, op: "update", old: row, new: now }
            : { table: child, op: "delete", old: row };
        });
        return { old, cascaded };
      });
    });
  }

  /**
   * Rows of other tables whose foreign keys point at `table`'s row `key` with an ON DELETE
   * action, followed transitively through cascades.
   */
  #referencing(
    table: string,
    key: unknown,
    seen = new Set<string>(),
  ): { table: string; row: Row }[] {
    const out: { table: string; row: Row }[] = [];
    const parent = this.#table(table);
    for (const fk of this.#foreignKeysTo(table)) {
      if (fk.onDelete === "NO ACTION" || fk.onDelete === "RESTRICT") continue;
      // The parent's referenced column may differ from its primary key.
      const parentValue =
        fk.to === parent.pk.name
          ? key
          : (
              this.#statement(
                `SELECT ${quote(fk.to)} AS v FROM ${quote(table)} WHERE ${keyMatch(parent, key as string)}`,
              ).get(key) as { v: unknown } | undefined
            )?.v;
      if (parentValue === undefined || parentValue === null) continue;
      const rows = this.#statement(
        `SELECT * FROM ${quote(fk.table)} WHERE ${quote(fk.from)} = ?`,
      ).all(parentValue) as Row[];
      const childPk = this.#table(fk.table).pk.name;
      for (const row of rows) {
        const id = `${fk.table}#${String(row[childPk])}`;
        if (seen.has(id)) continue;
        seen.add(id);
        out.push({ table: fk.table, row });
        if (fk.onDelete === "CASCADE") out.push(...this.#referencing(fk.table, row[childPk], seen));
      }
    }
    return out;
  }

  #foreignKeysTo(table: string): ForeignKey[] {
    this.#discover();
    let fks = this.#foreignKeys;
    if (!fks) {
      const list = this.#db.prepare(FOREIGN_KEY_LIST_SQL);
      const rows = new Map<string, ForeignKeyRow[]>();
      for (const child of this.#tables.keys()) rows.set(child, list.all(child) as ForeignKeyRow[]);
      fks = foreignKeysByParent(this.#tables, rows);
      this.#foreignKeys = fks;
    }
    return fks.get(table) ?? [];
  }

  async effects(table: string, op: WriteEvent["op"]): Promise<WriteEvent[]> {
    return guard(() => {
      this.#table(table);
      const key = `${table}\u0000${op}`;
      let events = this.#effects.get(key);
      if (!events) {
        events = [...this.#affectedTables(table, op)].map((t) => ({ table: t, op: "update" }));
        this.#effects.set(key, events);
      }
      return events;
    });
  }

  /**
   * Tables a write may change without telling us which rows: SQLite triggers (which can
   * only name their target tables literally, so a name search finds them all), ON UPDATE
   * actions of foreign keys, and ON CONFLICT REPLACE, which deletes conflicting rows.
   */
  #affectedTables(table: string, op: WriteEvent["op"]): Set<string> {
    const triggers = this.#db.prepare(TRIGGERS_SQL).all(table) as {
      name: string;
      sql: string | null;
    }[];
    const own = this.#db.prepare(TABLE_SQL).get(table) as { sql: string | null } | undefined;
    return affectedTables(
      table,
      op,
      triggers,
      this.#tables.keys(),
      this.#foreignKeysTo(table),
      own?.sql,
    );
  }

  async captureStatus(): Promise<CaptureStatus> {
    return guard(() => sqliteCaptureStatus(this.#db, [...this.#discover().tables.keys()]));
  }

  async installCapture(): Promise<CaptureStatus> {
    return guard(() => {
      this.#discover();
      const tables = [...this.#tables.values()].map((t) => ({
        name: t.info.name,
        columns: [...t.columns.keys()],
      }));
      installSqliteCapture(this.#db, tables);
      this.#effects.clear();
      return sqliteCaptureStatus(this.#db, [...this.#tables.keys()]);
    });
  }

  async uninstallCapture(): Promise<void> {
    guard(() => uninstallSqliteCapture(this.#db));
  }

  async recorded(mark: string): Promise<void> {
    try {
      await this.#locked(undefined, () => this.#own.forget(mark));
    } catch {
      // Busy: the rows stay, and are captured after API_GRACE_MS (harmless).
    }
  }

  captureFeed(): CaptureFeed {
    return sqliteCaptureFeed(
      this.#db,
      (table) => {
        const meta = this.#tables.get(table);
        return meta ? [...meta.columns.keys()] : undefined;
      },
      (work) => this.#locked(undefined, work),
    );
  }

  async close(): Promise<void> {
    this.#statements.clear();
    if (this.#owned && this.#db.open) this.#db.close();
  }

  #discover(): Schema {
    if (this.#schema) return this.#schema;
    const tableRows = this.#db.prepare(TABLE_LIST_SQL).all() as { name: string; wr: number }[];
    const infoStatement = this.#db.prepare(TABLE_INFO_SQL);
    const tables = new Map<string, TableMeta>();
    const skipped: string[] = [];
    for (const { name, wr } of tableRows) {
      if (name.startsWith("sqlite_") || name.startsWith(CAPTURE_PREFIX)) continue;
      const meta = tableMeta(COMPONENT, name, wr, infoStatement.all(name) as TableInfoRow[]);
      if (meta) tables.set(name, meta);
      else skipped.push(name);
    }
    if (skipped.length > 0) {
      console.warn(
        `[edgecache] [${COMPONENT}] skipping tables without a single-column primary key: ${skipped.join(", ")}`,
      );
    }
    const views = checkViews(COMPONENT, this.#views, tables, skipped);
    this.#tables = tables;
    this.#schema = { tables: new Map([...tables].map(([name, t]) => [name, t.info])), views };
    return this.#schema;
  }

  #table(name: string): TableMeta {
    this.#discover();
    const table = this.#tables.get(name);
    if (!table) throw new EdgecacheError("E_NOT_FOUND", COMPONENT, `unknown table "${name}"`);
    return table;
  }

  #writable(name: string): TableMeta {
    if (this.#readonly) {
      throw new EdgecacheError("E_METHOD_NOT_ALLOWED", COMPONENT, "the source is read-only");
    }
    return this.#table(name);
  }

  #statement(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (statement) {
      this.#statements.delete(sql); // re-insert: Map order is our recency order
    } else {
      statement = this.#db.prepare(sql);
      if (this.#statements.size >= MAX_CACHED_STATEMENTS) {
        const oldest = this.#statements.keys().next().value;
        if (oldest !== undefined) this.#statements.delete(oldest);
      }
    }
    this.#statements.set(sql, statement);
    return statement;
  }

  #select(table: TableMeta, query: ListQuery): Row[] {
    const { sql, params } = selectSql(COMPONENT, table, query);
    return this.#statement(sql).all(params) as Row[];
  }

  #selectById(table: TableMeta, id: string | number): Row | undefined {
    const key = coerceId(table, id);
    if (key === undefined) return undefined;
    const sql = `SELECT * FROM ${quote(table.info.name)} WHERE ${keyMatch(table, key)}`;
    return this.#statement(sql).get(key) as Row | undefined;
  }

  /** Shared by update and replace: old row, then the UPDATE, in one transaction. */
  #write(
    table: TableMeta,
    id: string | number,
    assignments: string[],
    params: unknown[],
    given: Map<string, unknown>,
    options: WriteOptions | undefined,
  ): Promise<WriteResult | undefined> | undefined {
    const key = coerceId(table, id);
    if (key === undefined) return undefined;
    const match = keyMatch(table, key);
    const select = `SELECT * FROM ${quote(table.info.name)} WHERE ${match}`;
    const update = `UPDATE ${quote(table.info.name)} SET ${assignments.join(", ")} WHERE ${match} RETURNING *`;
    return this.#locked(options, (): WriteResult | undefined => {
      const old = this.#statement(select).get(key) as Row | undefined;
      if (!old) return undefined;
      if (assignments.length === 0) return { old, row: old };
      const row = this.#statement(update).get([...params, key]) as Row;
      checkStored(table, given, row);
      return { old, row };
    });
  }

  /**
   * Runs `work` in a write transaction. BEGIN IMMEDIATE takes the write lock first: a
   * deferred transaction that reads before it writes would fail at once with SQLITE_BUSY when
   * another connection writes (SQLite calls no busy handler for a read lock's upgrade). Each
   * try gives up at once if the lock is taken (busy_timeout 0: SQLite's own wait would block
   * the event loop, and every request with it); the next comes after a pause, until
   * busyTimeout has passed. A try that failed was rolled back, so trying again is safe.
   */
  async #locked<T>(options: WriteOptions | undefined, work: () => T): Promise<T> {
    const run = this.#db.transaction(() => {
      // Change capture's triggers record this write too: its rows carry the write's mark.
      const before = options?.capture === undefined ? undefined : this.#own.before();
      const result = work();
      if (before !== undefined) this.#own.mark(before, options!.capture!);
      return result;
    });
    const deadline = performance.now() + this.#busyTimeout;
    for (let pause = FIRST_BUSY_PAUSE_MS; ; pause = Math.min(pause * 2, MAX_BUSY_PAUSE_MS)) {
      const saved = this.#db.pragma("busy_timeout", { simple: true }) as number;
      this.#db.pragma("busy_timeout = 0");
      try {
        return run.immediate();
      } catch (err) {
        const left = deadline - performance.now();
        if (!isBusy(err) || left <= 0) throw err;
        await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
      } finally {
        this.#db.pragma(`busy_timeout = ${saved}`);
      }
    }
  }

  /** Adds each join's child rows to the base rows, as arrays ordered by the child's key. */
  #attachJoins(view: ViewInfo, rows: Row[]): Row[] {
    for (const join of view.joins) {
      const child = this.#table(join.table);
      const children: Row[] = [];
      for (const chunk of joinKeyChunks(rows, join, MAX_IN_PARAMS)) {
        children.push(
          ...(this.#statement(childrenSql(child, join, chunk.length)).all(chunk) as Row[]),
        );
      }
      attachChildren(rows, join, children);
    }
    return rows;
  }
}

/** Runs driver work and turns anything thrown into an EdgecacheError without SQL text. */
function guard<T>(work: () => T): T {
  try {
    return work();
  } catch (err) {
    throw toEdgecacheError(err);
  }
}

/** guard for work that may wait (writes): a rejection is turned the same way. */
async function guardAsync<T>(work: () => T | Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw toEdgecacheError(err);
  }
}
