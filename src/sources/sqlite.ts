import Database from "better-sqlite3";
import type { WriteEvent } from "../core/deps/planner.ts";
import { badOption, EdgecacheError, type ErrorCode } from "../core/errors.ts";
import type {
  ColumnInfo,
  ColumnKind,
  Filter,
  JoinInfo,
  ListQuery,
  Resource,
  Row,
  Schema,
  SortKey,
  TableInfo,
  ViewInfo,
} from "../core/query.ts";
import type { DeleteResult, Source, WriteResult } from "./source.ts";

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
export function sqliteSource(options: SqliteSourceOptions): Source {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  const views = validateViewsOption(options.views);
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

/** A foreign key of `table` (the child) pointing at another table's `to` column. */
interface ForeignKey {
  table: string;
  from: string;
  to: string;
  onDelete: string;
  onUpdate: string;
}

/** SQLite's type affinity, which decides how a bound or stored value is converted. */
type Affinity = "integer" | "real" | "numeric" | "text" | "blob";

interface ColumnMeta extends ColumnInfo {
  affinity: Affinity;
  /** The column's DEFAULT as SQL text from the schema, or null. */
  defaultSql: string | null;
}

interface TableMeta {
  info: TableInfo;
  columns: Map<string, ColumnMeta>;
  pk: ColumnMeta;
  /** INTEGER PRIMARY KEY of a rowid table: SQLite assigns it when absent. */
  rowidAlias: boolean;
}

class SqliteSource implements Source {
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

  constructor(
    db: Database.Database,
    options: { owned: boolean; readonly: boolean; views: ViewInfo[]; busyTimeout: number },
  ) {
    this.#db = db;
    this.#owned = options.owned;
    this.#readonly = options.readonly;
    this.#views = options.views;
    this.#busyTimeout = options.busyTimeout;
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

  async insert(table: string, values: Row): Promise<Row> {
    return guardAsync(() => {
      const meta = this.#writable(table);
      const given = coerceBody(meta, values);
      const pk = meta.pk;
      if (given.get(pk.name) === null) given.delete(pk.name); // null key means "assign one"
      if (!given.has(pk.name)) {
        if (pk.kind === "text") given.set(pk.name, crypto.randomUUID());
        else if (!meta.rowidAlias) {
          throw new EdgecacheError(
            "E_BAD_BODY",
            COMPONENT,
            `column "${pk.name}" (primary key) is required`,
          );
        }
      }
      requireValues(meta, given);
      const names = [...given.keys()];
      const sql =
        names.length === 0
          ? `INSERT INTO ${quote(table)} DEFAULT VALUES RETURNING *`
          : `INSERT INTO ${quote(table)} (${names.map(quote).join(", ")}) VALUES (${names.map(() => "?").join(", ")}) RETURNING *`;
      return this.#locked(() => {
        const row = this.#statement(sql).get([...given.values()]) as Row;
        checkStored(meta, given, row);
        return row;
      });
    });
  }

  async update(table: string, id: string | number, values: Row): Promise<WriteResult | undefined> {
    return guardAsync(() => {
      const meta = this.#writable(table);
      const given = withoutKey(meta, id, coerceBody(meta, values));
      const assignments = [...given.keys()].map((name) => `${quote(name)} = ?`);
      return this.#write(meta, id, assignments, [...given.values()], given);
    });
  }

  async replace(table: string, id: string | number, values: Row): Promise<WriteResult | undefined> {
    return guardAsync(() => {
      const meta = this.#writable(table);
      const given = withoutKey(meta, id, coerceBody(meta, values));
      requireValues(meta, given);
      const assignments: string[] = [];
      const params: unknown[] = [];
      for (const column of meta.columns.values()) {
        if (column === meta.pk) continue;
        if (given.has(column.name)) {
          assignments.push(`${quote(column.name)} = ?`);
          params.push(given.get(column.name));
        } else if (column.defaultSql !== null) {
          // The default is SQL from the database's own schema, never from a client.
          assignments.push(`${quote(column.name)} = (${column.defaultSql})`);
        } else {
          assignments.push(`${quote(column.name)} = NULL`); // nullable: requireValues said so
        }
      }
      return this.#write(meta, id, assignments, params, given);
    });
  }

  async delete(table: string, id: string | number): Promise<DeleteResult | undefined> {
    return guardAsync(() => {
      const meta = this.#writable(table);
      const key = coerceId(meta, id);
      if (key === undefined) return undefined;
      return this.#locked((): DeleteResult | undefined => {
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
      fks = new Map();
      const list = this.#db.prepare(
        'SELECT "table", "from", "to", on_delete, on_update FROM pragma_foreign_key_list(?)',
      );
      for (const child of this.#tables.keys()) {
        for (const r of list.all(child) as {
          table: string;
          from: string;
          to: string | null;
          on_delete: string;
          on_update: string;
        }[]) {
          const parent = this.#tables.get(r.table);
          if (!parent) continue;
          const to = r.to ?? parent.pk.name;
          const entry = {
            table: child,
            from: r.from,
            to,
            onDelete: r.on_delete.toUpperCase(),
            onUpdate: r.on_update.toUpperCase(),
          };
          fks.set(r.table, [...(fks.get(r.table) ?? []), entry]);
        }
      }
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
    const out = new Set<string>();
    const triggers = this.#db
      .prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?")
      .all(table) as { sql: string | null }[];
    for (const { sql } of triggers) {
      for (const name of this.#tables.keys()) {
        const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        if (new RegExp(`(^|[^\\w])${escaped}($|[^\\w])`, "i").test(sql ?? "")) out.add(name);
      }
    }
    if (op === "update") {
      for (const fk of this.#foreignKeysTo(table)) {
        if (!["NO ACTION", "RESTRICT"].includes(fk.onUpdate)) out.add(fk.table);
      }
    }
    const own = this.#db
      .prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?")
      .get(table) as { sql: string | null } | undefined;
    if (op !== "delete" && /ON\s+CONFLICT\s+REPLACE/i.test(own?.sql ?? "")) out.add(table);
    return out;
  }

  async close(): Promise<void> {
    this.#statements.clear();
    if (this.#owned && this.#db.open) this.#db.close();
  }

  #discover(): Schema {
    if (this.#schema) return this.#schema;
    const tableRows = this.#db
      .prepare(
        "SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND type = 'table' ORDER BY name",
      )
      .all() as { name: string; wr: number }[];
    const infoStatement = this.#db.prepare(
      "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?, 'main') ORDER BY cid",
    );
    const tables = new Map<string, TableMeta>();
    const skipped: string[] = [];
    for (const { name, wr } of tableRows) {
      if (name.startsWith("sqlite_")) continue;
      const rows = infoStatement.all(name) as {
        name: string;
        type: string;
        notnull: number;
        dflt_value: string | null;
        pk: number;
      }[];
      const keys = rows.filter((r) => r.pk > 0);
      if (keys.length !== 1) {
        skipped.push(name);
        continue;
      }
      const columns = new Map<string, ColumnMeta>();
      for (const r of rows) {
        columns.set(r.name, {
          name: r.name,
          kind: columnKind(r.type),
          nullable: r.notnull === 0 && r.pk === 0,
          affinity: columnAffinity(r.type),
          defaultSql: r.dflt_value,
        });
      }
      const pk = columns.get(keys[0]!.name)!;
      const info: TableInfo = {
        name,
        primaryKey: pk.name,
        columns: [...columns.values()].map(({ name, kind, nullable }) => ({
          name,
          kind,
          nullable,
        })),
      };
      const rowidAlias = wr === 0 && keys[0]!.type.toUpperCase() === "INTEGER";
      tables.set(name, { info, columns, pk, rowidAlias });
    }
    if (skipped.length > 0) {
      console.warn(
        `[edgecache] [${COMPONENT}] skipping tables without a single-column primary key: ${skipped.join(", ")}`,
      );
    }
    const views = checkViews(this.#views, tables, skipped);
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
    const where: string[] = [];
    const params: unknown[] = [];
    for (const filter of query.filters) {
      const { sql, values } = compileFilter(table, filter);
      where.push(sql);
      params.push(...values);
    }
    if (!isWindowNumber(query.limit)) throw badQuery(`limit must be a non-negative integer`);
    if (!isWindowNumber(query.offset)) throw badQuery(`offset must be a non-negative integer`);
    params.push(query.limit, query.offset);
    const sql =
      `SELECT * FROM ${quote(table.info.name)}` +
      (where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "") +
      ` ORDER BY ${compileSort(table, query.sort)} LIMIT ? OFFSET ?`;
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
  ): Promise<WriteResult | undefined> | undefined {
    const key = coerceId(table, id);
    if (key === undefined) return undefined;
    const match = keyMatch(table, key);
    const select = `SELECT * FROM ${quote(table.info.name)} WHERE ${match}`;
    const update = `UPDATE ${quote(table.info.name)} SET ${assignments.join(", ")} WHERE ${match} RETURNING *`;
    return this.#locked((): WriteResult | undefined => {
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
  async #locked<T>(work: () => T): Promise<T> {
    const run = this.#db.transaction(work);
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
      const keys = [...new Set(rows.map((r) => r[join.references]).filter((v) => v != null))];
      const groups = new Map<string, Row[]>();
      for (let i = 0; i < keys.length; i += MAX_IN_PARAMS) {
        const chunk = keys.slice(i, i + MAX_IN_PARAMS);
        const sql =
          `SELECT * FROM ${quote(child.info.name)} WHERE ${quote(join.foreignKey)}` +
          ` IN (${chunk.map(() => "?").join(", ")}) ORDER BY ${quote(child.pk.name)}`;
        for (const childRow of this.#statement(sql).all(chunk) as Row[]) {
          const k = joinKey(childRow[join.foreignKey]);
          const group = groups.get(k);
          if (group) group.push(childRow);
          else groups.set(k, [childRow]);
        }
      }
      for (const row of rows) {
        const value = row[join.references];
        row[join.as] = value == null ? [] : (groups.get(joinKey(value)) ?? []);
      }
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

/** SQLITE_BUSY and its extended codes: another connection holds the lock. */
function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_BUSY");
}

function toEdgecacheError(cause: unknown): EdgecacheError {
  if (cause instanceof EdgecacheError) return cause;
  const driverCode = (cause as { code?: unknown } | null)?.code;
  const code = typeof driverCode === "string" ? driverCode : undefined;
  const message = cause instanceof Error ? cause.message : "";
  const error = (errorCode: ErrorCode, text: string) =>
    new EdgecacheError(errorCode, COMPONENT, text, { cause });
  // STRICT tables refuse a value of the wrong storage class: the body's fault.
  if (code === "SQLITE_CONSTRAINT_DATATYPE") {
    return error("E_BAD_BODY", "a value has the wrong type for its column");
  }
  if (code?.startsWith("SQLITE_CONSTRAINT")) {
    return error("E_CONFLICT", constraintMessage(code, message));
  }
  if (isBusy(cause)) {
    return error("E_SOURCE_BUSY", "the database is locked by another connection; try again");
  }
  if (code === "SQLITE_READONLY") return error("E_SOURCE_UNAVAILABLE", "the database is read-only");
  return error("E_SOURCE_UNAVAILABLE", `database error${code ? ` (${code})` : ""}`);
}

/**
 * SQLite's messages name columns as `table.column` for UNIQUE and NOT NULL; a CHECK
 * message may carry the constraint's expression, so only a plain name is repeated.
 */
function constraintMessage(code: string, message: string): string {
  const detail = /constraint failed: (.+)$/.exec(message)?.[1];
  const columns = () =>
    (detail ?? "")
      .split(", ")
      .map((c) => c.slice(c.lastIndexOf(".") + 1))
      .filter((c) => c !== "")
      .map((c) => `"${c}"`)
      .join(", ");
  switch (code) {
    case "SQLITE_CONSTRAINT_PRIMARYKEY":
      return `a row with this primary key already exists${detail ? ` (column ${columns()})` : ""}`;
    case "SQLITE_CONSTRAINT_UNIQUE":
      return `unique constraint violated${detail ? ` on column ${columns()}` : ""}`;
    case "SQLITE_CONSTRAINT_NOTNULL":
      return `not null constraint violated${detail ? ` on column ${columns()}` : ""}`;
    case "SQLITE_CONSTRAINT_FOREIGNKEY":
      return "foreign key constraint violated";
    case "SQLITE_CONSTRAINT_CHECK":
      return detail && /^[A-Za-z_][A-Za-z0-9_]*$/.test(detail)
        ? `check constraint "${detail}" violated`
        : "check constraint violated";
    case "SQLITE_CONSTRAINT_TRIGGER":
      return "a trigger refused the write";
    default:
      return "constraint violated";
  }
}

function badQuery(message: string): EdgecacheError {
  return new EdgecacheError("E_BAD_QUERY", COMPONENT, message);
}

function badBody(message: string): EdgecacheError {
  return new EdgecacheError("E_BAD_BODY", COMPONENT, message);
}

/** Identifiers come from the schema, but quoting keeps odd names (spaces, keywords) valid. */
function quote(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}

/** The kind rules are documented in query.ts; numbers win over dates ("INT" before "TIME"). */
export function columnKind(declaredType: string): ColumnKind {
  const t = declaredType.toUpperCase();
  if (["INT", "REAL", "FLOA", "DOUB", "NUM", "DEC", "BOOL"].some((s) => t.includes(s))) {
    return "number";
  }
  if (t.includes("DATE") || t.includes("TIME")) return "date";
  return "text";
}

/** SQLite's affinity rules, in SQLite's order (https://sqlite.org/datatype3.html#affname). */
function columnAffinity(declaredType: string): Affinity {
  const t = declaredType.toUpperCase();
  if (t.includes("INT")) return "integer";
  if (t.includes("CHAR") || t.includes("CLOB") || t.includes("TEXT")) return "text";
  if (t.includes("BLOB") || t === "") return "blob";
  if (t.includes("REAL") || t.includes("FLOA") || t.includes("DOUB")) return "real";
  return "numeric";
}

/**
 * better-sqlite3 writes a lone surrogate (JSON.parse lets "\ud800" through) as invalid
 * UTF-8 that reads back as three U+FFFD and orders differently from what was read:
 * such strings are refused rather than stored changed.
 */
const LONE_SURROGATE = /\p{Cs}/u;

/** A JSON-ish numeric string: what a number column accepts from a body or a URL. */
const NUMERIC_STRING = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/;

/**
 * True when SQLite might read `value` as a number. A superset of the literals numeric
 * affinity converts, so it errs on the side of the slower, exact comparison.
 */
function mayLookNumeric(value: string): boolean {
  // SQLite's text-to-number conversion stops at a NUL: "1\0" converts as "1".
  const nul = value.indexOf("\0");
  return NUMERIC_STRING.test(nul >= 0 ? value.slice(0, nul) : value);
}

/**
 * The column as a comparison operand. For a text or date column with numeric affinity
 * (DATETIME, STRING, ...), SQLite converts a numeric-looking operand such as "2024" to a
 * number and then orders every stored text after it; unary + strips the column's
 * affinity so the comparison stays text against text, as documented. It also bypasses
 * the index, so it is used only when the value needs it.
 */
function operand(column: ColumnMeta, value: unknown): string {
  if (column.kind === "number") return quote(column.name);
  const numericAffinity = column.affinity !== "text" && column.affinity !== "blob";
  const name =
    numericAffinity && typeof value === "string" && mayLookNumeric(value)
      ? `+${quote(column.name)}`
      : quote(column.name);
  return `${name}${BINARY}`;
}

/**
 * Text compares by code point whatever collation the column declares (NOCASE, RTRIM):
 * the documented semantics, which the planner's in-memory predicates mirror. An index of
 * the default BINARY collation still serves these terms.
 */
const BINARY = " COLLATE BINARY";

const COMPARISONS = { eq: "=", gt: ">", gte: ">=", lt: "<", lte: "<=" } as const;

function compileFilter(table: TableMeta, filter: Filter): { sql: string; values: unknown[] } {
  const column = table.columns.get(filter.column);
  if (!column) throw badQuery(`unknown column "${filter.column}"`);
  const value = filterValue(column, filter.value);
  if (filter.op === "prefix") {
    // Dates are ISO 8601 text here, so a prefix (`2025-03*`) is a text prefix too.
    if (column.kind === "number" || typeof value !== "string") {
      throw badQuery(`${column.name}: a prefix (value*) needs a text or date column`);
    }
    if (value.includes("\0")) {
      // GLOB reads its pattern as a C string and would stop at the NUL: compare UTF-8 bytes.
      const bytes = Buffer.from(value, "utf8");
      return {
        sql: `typeof(${quote(column.name)}) = 'text' AND substr(CAST(${quote(column.name)} AS BLOB), 1, ?) = ?`,
        values: [bytes.length, bytes],
      };
    }
    // GLOB would match the text form of a stored number (123 for "12*"); the planner's
    // startsWith only matches text, so only text rows match here too.
    return {
      sql: `typeof(${quote(column.name)}) = 'text' AND ${quote(column.name)} GLOB ?`,
      values: [`${globEscape(value)}*`],
    };
  }
  const op = COMPARISONS[filter.op];
  if (!op) throw badQuery(`unknown filter operator "${String(filter.op)}"`);
  // A NULL column compares to NULL, which WHERE treats as false: NULL never matches.
  return { sql: `${operand(column, value)} ${op} ?`, values: [value] };
}

function filterValue(column: ColumnMeta, value: unknown): string | number {
  if (column.kind === "number") {
    const n = typeof value === "string" && NUMERIC_STRING.test(value) ? Number(value) : value;
    if (typeof n !== "number" || !Number.isFinite(n)) {
      throw badQuery(`column "${column.name}": expected a number, got ${describe(value)}`);
    }
    return n;
  }
  if (typeof value !== "string" && typeof value !== "number") {
    throw badQuery(`column "${column.name}": expected a string, got ${describe(value)}`);
  }
  if (typeof value === "string" && LONE_SURROGATE.test(value)) {
    throw badQuery(`column "${column.name}": the value is not well-formed Unicode`);
  }
  return String(value);
}

/** GLOB's metacharacters, each made literal by a one-character class: `*` becomes `[*]`. */
function globEscape(prefix: string): string {
  return prefix.replace(/[*?[]/g, "[$&]");
}

function compileSort(table: TableMeta, sort: SortKey[]): string {
  const keys = [...sort];
  // The caller's sort is total already; ending on the key keeps any window deterministic.
  if (keys.at(-1)?.column !== table.pk.name) keys.push({ column: table.pk.name, desc: false });
  return keys
    .map((key) => {
      const column = table.columns.get(key.column);
      if (!column) throw badQuery(`unknown sort column "${key.column}"`);
      const collate = column.kind === "number" ? "" : BINARY;
      return `${quote(key.column)}${collate} ${key.desc ? "DESC" : "ASC"}`;
    })
    .join(", ");
}

function isWindowNumber(n: unknown): boolean {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

/** A primary key from a URL or a caller, in the key column's type; undefined when none can match. */
function coerceId(table: TableMeta, id: string | number): string | number | undefined {
  if (table.pk.kind === "number") {
    const n = typeof id === "string" && NUMERIC_STRING.test(id) ? Number(id) : id;
    return typeof n === "number" && Number.isFinite(n) ? n : undefined;
  }
  return String(id);
}

function keyMatch(table: TableMeta, key: string | number): string {
  return `${operand(table.pk, key)} = ?`;
}

/** Validates a body against the table: known columns, values of the column's kind. */
function coerceBody(table: TableMeta, values: Row): Map<string, unknown> {
  if (typeof values !== "object" || values === null || Array.isArray(values)) {
    throw badBody(`expected an object of column values, got ${describe(values)}`);
  }
  const out = new Map<string, unknown>();
  for (const [name, value] of Object.entries(values)) {
    const column = table.columns.get(name);
    if (!column) throw badBody(`unknown column "${name}" in table "${table.info.name}"`);
    if (value === undefined) continue;
    out.set(name, coerceValue(column, value, column === table.pk));
  }
  return out;
}

function coerceValue(column: ColumnMeta, value: unknown, isKey: boolean): unknown {
  if (typeof value === "string" && LONE_SURROGATE.test(value)) {
    throw badBody(`column "${column.name}": the string is not well-formed Unicode`);
  }
  if (value === null) {
    // A null key is resolved by the caller (insert assigns one, update compares).
    if (column.nullable || isKey) return null;
    throw badBody(`column "${column.name}" cannot be null`);
  }
  switch (column.kind) {
    case "number": {
      // JSON booleans into BOOLEAN (number) columns: SQLite stores them as 1 and 0.
      if (typeof value === "boolean") return value ? 1 : 0;
      const n = typeof value === "string" && NUMERIC_STRING.test(value) ? Number(value) : value;
      if (typeof n === "number" && Number.isFinite(n)) return n;
      throw badBody(`column "${column.name}": expected a number, got ${describe(value)}`);
    }
    case "text":
      if (typeof value === "string") return value;
      if (typeof value === "number" && Number.isFinite(value)) return String(value);
      throw badBody(`column "${column.name}": expected a string, got ${describe(value)}`);
    case "date":
      if (typeof value === "string" && !Number.isNaN(Date.parse(value))) return value;
      throw badBody(`column "${column.name}": expected a date string, got ${describe(value)}`);
  }
}

/** update/replace: the key may repeat the id (ignored) but never change it. */
/**
 * A whole row (insert, replace) must give every NOT NULL column without a DEFAULT: the
 * client's omission, a 400 naming each such column, not the database's constraint error.
 */
function requireValues(table: TableMeta, given: Map<string, unknown>): void {
  const missing = [...table.columns.values()]
    .filter((c) => c !== table.pk && !c.nullable && c.defaultSql === null && !given.has(c.name))
    .map((c) => `"${c.name}"`);
  if (missing.length === 1) throw badBody(`column ${missing[0]} is required`);
  if (missing.length > 1) throw badBody(`columns ${missing.join(", ")} are required`);
}

function withoutKey(
  table: TableMeta,
  id: string | number,
  given: Map<string, unknown>,
): Map<string, unknown> {
  const pk = table.pk.name;
  if (!given.has(pk)) return given;
  const value = given.get(pk);
  if (value === null || value !== coerceId(table, id)) {
    throw badBody(`column "${pk}" is the primary key and cannot be changed`);
  }
  given.delete(pk);
  return given;
}

/**
 * Column affinity may convert what we bound ("2024" into a DATETIME column becomes the
 * integer 2024), which would then compare and sort as a number, not as the text the data
 * API documents. Refusing the write (the transaction rolls back) keeps stored values in
 * their column's kind.
 */
function checkStored(table: TableMeta, given: Map<string, unknown>, row: Row): void {
  for (const [name, value] of given) {
    if (value === null) continue;
    const stored = row[name];
    if (typeof value === "string" && typeof stored !== "string") {
      const kind = table.columns.get(name)?.kind ?? "text";
      throw badBody(
        `column "${name}": SQLite would store this ${kind} value as a number; send a non-numeric ${kind === "date" ? "date such as 2024-01-31" : "string"}`,
      );
    }
    if (typeof value === "number" && typeof stored !== "number" && typeof stored !== "bigint") {
      throw badBody(`column "${name}": SQLite would store this number as text (column affinity)`);
    }
  }
}

/** Grouping key for join values: SQLite matched them with affinity, so compare as text. */
function joinKey(value: unknown): string {
  return String(value);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  }
  if (typeof value === "number") return String(value);
  return `a ${typeof value}`;
}

function validateViewsOption(views: unknown): ViewInfo[] {
  if (views === undefined) return [];
  if (!Array.isArray(views)) badOption(COMPONENT, "views", "an array of views", views);
  const isName = (v: unknown): v is string => typeof v === "string" && v !== "";
  views.forEach((view: Partial<ViewInfo> | null, i) => {
    const at = `views[${i}]`;
    if (typeof view !== "object" || view === null) badOption(COMPONENT, at, "an object", view);
    for (const field of ["name", "base"] as const) {
      if (!isName(view[field]))
        badOption(COMPONENT, `${at}.${field}`, "a non-empty string", view[field]);
    }
    if (!Array.isArray(view.joins)) badOption(COMPONENT, `${at}.joins`, "an array", view.joins);
    view.joins.forEach((join: Partial<JoinInfo> | null, j) => {
      const where = `${at}.joins[${j}]`;
      if (typeof join !== "object" || join === null) badOption(COMPONENT, where, "an object", join);
      for (const field of ["as", "table", "foreignKey", "references"] as const) {
        if (!isName(join[field])) {
          badOption(COMPONENT, `${where}.${field}`, "a non-empty string", join[field]);
        }
      }
    });
  });
  return views as ViewInfo[];
}

/** Declared views must name tables and columns the database has. */
function checkViews(
  views: ViewInfo[],
  tables: Map<string, TableMeta>,
  skipped: string[],
): Map<string, ViewInfo> {
  const missing = (name: string) =>
    skipped.includes(name)
      ? `table "${name}" has no single-column primary key`
      : `table "${name}" does not exist`;
  const out = new Map<string, ViewInfo>();
  for (const view of views) {
    if (tables.has(view.name) || out.has(view.name)) {
      fail(view, "the name is already used by a table or view");
    }
    const base = tables.get(view.base);
    if (!base) fail(view, `base ${missing(view.base)}`);
    const names = new Set(base.columns.keys());
    for (const join of view.joins) {
      const child = tables.get(join.table);
      if (!child) fail(view, `join "${join.as}": ${missing(join.table)}`);
      else if (!child.columns.has(join.foreignKey)) {
        fail(view, `join "${join.as}": table "${join.table}" has no column "${join.foreignKey}"`);
      }
      if (!base.columns.has(join.references)) {
        fail(
          view,
          `join "${join.as}": base table "${view.base}" has no column "${join.references}"`,
        );
      }
      if (names.has(join.as)) fail(view, `join "${join.as}": the name is already a column or join`);
      names.add(join.as);
    }
    out.set(view.name, view);
  }
  return out;
}

function fail(view: ViewInfo, message: string): never {
  throw new EdgecacheError("E_BAD_OPTION", COMPONENT, `view "${view.name}": ${message}`);
}
