import type postgres from "postgres";
import type { CaptureFeed, CaptureStatus, CapturingSource } from "../core/capture.ts";
import type { WriteEvent } from "../core/deps/planner.ts";
import { badOption, EdgecacheError, type ErrorCode } from "../core/errors.ts";
import type {
  ColumnKind,
  Filter,
  ListQuery,
  Resource,
  Row,
  Schema,
  SortKey,
  ViewInfo,
} from "../core/query.ts";
import {
  API_SETTING,
  forgetPostgresCaptured,
  installPostgresCapture,
  isInstalled,
  postgresCaptureFeed,
  postgresCaptureStatus,
  uninstallPostgresCapture,
} from "./postgres-capture.ts";
import { transaction } from "./postgres-transaction.ts";
import type { DeleteResult, Source, WriteOptions, WriteResult } from "./source.ts";
import {
  attachChildren,
  badBody,
  badQuery,
  COMPARISONS,
  checkViews,
  coerceBody,
  coerceId,
  type ForeignKey,
  filterValue,
  isWindowNumber,
  joinKeyChunks,
  orderBy,
  quote,
  requireValues,
  type SqlColumn,
  type SqlTable,
  tableInfo,
  validateViewsOption,
  withoutKey,
} from "./sql.ts";

const COMPONENT = "postgres";

/** How often the source asks whether change capture is installed, ms. */
const CAPTURE_CHECK_MS = 1000;

/** Small IN lists keep statements cheap to plan (PostgreSQL allows 65,535 parameters). */
const MAX_IN_PARAMS = 500;

/** Connections the source opens by default when it opens its own pool. */
const DEFAULT_MAX_CONNECTIONS = 10;

/** Seconds to wait for a connection before the source reports the database unavailable. */
const CONNECT_TIMEOUT_S = 5;

/**
 * Seconds a connection waits before it reconnects after its n-th failure in a row: 50 ms
 * doubling, at most half a second. postgres.js's own backoff grows to 20 s, and its count
 * is shared by the pool, so a restart of a fraction of a second left requests waiting for
 * a connection 14-17 s after the database was back.
 */
export function reconnectBackoff(failures: number): number {
  return Math.min(0.05 * 2 ** failures, 0.5);
}

export type PostgresSourceOptions = (
  | {
      /** `postgres://user@host:port/db`: the source opens (and closes) its own pool. */
      url: string;
      /** Pool size (DEFAULT_MAX_CONNECTIONS). */
      max?: number;
    }
  | {
      /** A postgres.js client the caller owns; close() leaves it open. */
      sql: Sql;
    }
) & {
  views?: ViewInfo[];
  /** The PostgreSQL schema whose tables are served ("public"). */
  schema?: string;
};

/**
 * How a column's values are read and compared. PostgreSQL types are strict, so each
 * column is read in the form the planner compares correctly:
 * - "number": integers, floats, numeric and booleans (0 and 1, as SQLite stores them),
 *   read as JS numbers. int8 and numeric beyond 2^53 lose precision in the planner's
 *   comparisons (documented).
 * - "date": ISO 8601 text of fixed width per column (UTC with `Z` for timestamptz), so
 *   code point order is time order, and compared as that text in SQL as well.
 * - "text": everything else, as text compared by code point (``).
 */
interface PgColumn extends SqlColumn {
  /** The SQL that reads the column in its data API form; also the comparison operand. */
  read: string;
  /** The same for another reference to the column (`OLD."name"` in a trigger). */
  readOf(ref: string): string;
  /** The stored type is text-like, so comparisons need no cast. */
  textual: boolean;
  /** PostgreSQL assigns the value when absent: a serial, identity or DEFAULT. */
  assigned: boolean;
}

type PgTable = SqlTable<PgColumn> & {
  /** `"schema"."table"` */
  qualified: string;
  /** The select list that reads every column in its data API form. */
  selectList: string;
};

/**
 * A Source over PostgreSQL, through postgres.js (an optional peer dependency: `npm
 * install postgres`). Tables of one schema are discovered, views are declared. Text
 * compares by code point (``) and NULLs sort first in ascending order, as the
 * invalidation planner assumes; dates are read as fixed-width ISO text (see PgColumn).
 *
 * @example
 * ```ts
 * const source = await postgresSource({ url: "postgres://app@127.0.0.1:5432/app" });
 * const schema = await source.schema();
 * ```
 */
export async function postgresSource(
  options: PostgresSourceOptions,
): Promise<Source & CapturingSource> {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  const views = validateViewsOption(COMPONENT, options.views);
  const { schema = "public" } = options;
  if (typeof schema !== "string" || schema === "") {
    badOption(COMPONENT, "schema", "a non-empty string", schema);
  }
  if ("sql" in options) {
    if (typeof options.sql !== "function" || typeof options.sql.unsafe !== "function") {
      badOption(COMPONENT, "sql", "a postgres.js client", options.sql);
    }
    const postgres = await loadPostgres();
    return new PostgresSource(options.sql, { owned: false, views, schema, postgres });
  }
  const { url, max = DEFAULT_MAX_CONNECTIONS } = options;
  if (typeof url !== "string" || !/^postgres(ql)?:\/\//.test(url)) {
    badOption(COMPONENT, "url", "a postgres:// URL", url);
  }
  if (!Number.isSafeInteger(max) || max < 1) badOption(COMPONENT, "max", "an integer >= 1", max);
  const sql = await connectPostgres(url, max);
  return new PostgresSource(sql, { owned: true, views, schema, postgres: await loadPostgres() });
}

/**
 * A postgres.js pool as the source wants one: bounded connect time, notices off, no type
 * fetching (rows come back as plain objects; every conversion is in the select list).
 */
export async function connectPostgres(url: string, max = DEFAULT_MAX_CONNECTIONS): Promise<Sql> {
  const postgres = await loadPostgres();
  return postgres(url, {
    max,
    connect_timeout: CONNECT_TIMEOUT_S,
    backoff: reconnectBackoff,
    onnotice: () => {},
    fetch_types: false,
  });
}

/** Loads postgres.js, which is an optional peer dependency. */
export async function loadPostgres(): Promise<typeof postgres> {
  try {
    return (await import("postgres")).default;
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") throw error;
    throw new EdgecacheError(
      "E_BAD_OPTION",
      COMPONENT,
      "install postgres.js to use a PostgreSQL database: npm install postgres",
      { cause: error },
    );
  }
}

type Sql = postgres.Sql;
/** Either the pool or a transaction's connection. */
type Runner = postgres.Sql | postgres.TransactionSql;

class PostgresSource implements Source, CapturingSource {
  readonly name = "postgres";
  readonly #sql: Sql;
  readonly #owned: boolean;
  readonly #views: ViewInfo[];
  readonly #schemaName: string;
  readonly #postgres: typeof postgres;
  #discovered: Promise<{ schema: Schema; tables: Map<string, PgTable> }> | undefined;
  #foreignKeys: Map<string, ForeignKey[]> = new Map();
  #effects = new Map<string, WriteEvent[]>();
  #captureOn = false;
  #captureCheckedAt = 0;

  constructor(
    sql: Sql,
    options: { owned: boolean; views: ViewInfo[]; schema: string; postgres: typeof postgres },
  ) {
    this.#sql = sql;
    this.#postgres = options.postgres;
    this.#owned = options.owned;
    this.#views = options.views;
    this.#schemaName = options.schema;
  }

  async schema(): Promise<Schema> {
    return guard(async () => (await this.#discover()).schema);
  }

  async list(resource: Resource, query: ListQuery): Promise<Row[]> {
    return guard(async () => {
      const table = await this.#table(resource.table.name);
      const rows = await this.#select(this.#sql, table, query);
      return resource.kind === "view" ? this.#attachJoins(resource.view, rows) : rows;
    });
  }

  async get(resource: Resource, id: string | number): Promise<Row | undefined> {
    return guard(async () => {
      const table = await this.#table(resource.table.name);
      const key = coerceId(table, id);
      if (key === undefined) return undefined;
      const [row] = await run(this.#sql, selectById(table, key), [bindable(key)]);
      if (!row) return undefined;
      return resource.kind === "view" ? (await this.#attachJoins(resource.view, [row]))[0] : row;
    });
  }

  async insert(table: string, values: Row, options?: WriteOptions): Promise<Row> {
    return guard(async () => {
      const meta = await this.#table(table);
      const given = coerceBody(meta, values);
      checkText(meta, given);
      const pk = meta.pk;
      if (given.get(pk.name) === null) given.delete(pk.name); // null key means "assign one"
      if (!given.has(pk.name) && !pk.assigned) {
        if (pk.kind === "text") given.set(pk.name, crypto.randomUUID());
        else throw badBody(COMPONENT, `column "${pk.name}" (primary key) is required`);
      }
      requireValues(meta, given);
      const names = [...given.keys()];
      const sql =
        names.length === 0
          ? `INSERT INTO ${meta.qualified} DEFAULT VALUES RETURNING ${meta.selectList}`
          : `INSERT INTO ${meta.qualified} (${names.map(quote).join(", ")}) VALUES (${names
              .map((name, i) => parameter(meta.columns.get(name)!, i + 1))
              .join(", ")}) RETURNING ${meta.selectList}`;
      const marked = await this.#marked(options);
      return transaction(this.#sql, async (tx) => {
        await setApiWrite(tx, marked);
        const [row] = await run(tx, sql, [...given.values()].map(bindable));
        return row!;
      }) as Promise<Row>;
    });
  }

  async update(
    table: string,
    id: string | number,
    values: Row,
    options?: WriteOptions,
  ): Promise<WriteResult | undefined> {
    return guard(async () => {
      const meta = await this.#table(table);
      const given = withoutKey(meta, id, coerceBody(meta, values));
      checkText(meta, given);
      const params: unknown[] = [];
      const assignments = [...given].map(([name, value]) => {
        params.push(bindable(value));
        return `${quote(name)} = ${parameter(meta.columns.get(name)!, params.length)}`;
      });
      return this.#write(meta, id, assignments, params, options);
    });
  }

  async replace(
    table: string,
    id: string | number,
    values: Row,
    options?: WriteOptions,
  ): Promise<WriteResult | undefined> {
    return guard(async () => {
      const meta = await this.#table(table);
      const given = withoutKey(meta, id, coerceBody(meta, values));
      checkText(meta, given);
      requireValues(meta, given);
      const params: unknown[] = [];
      const assignments: string[] = [];
      for (const column of meta.columns.values()) {
        if (column === meta.pk) continue;
        if (given.has(column.name)) {
          params.push(bindable(given.get(column.name)));
          assignments.push(`${quote(column.name)} = ${parameter(column, params.length)}`);
        } else {
          // DEFAULT is NULL for a column without one; requireValues said it is nullable.
          assignments.push(`${quote(column.name)} = DEFAULT`);
        }
      }
      return this.#write(meta, id, assignments, params, options);
    });
  }

  async delete(
    table: string,
    id: string | number,
    options?: WriteOptions,
  ): Promise<DeleteResult | undefined> {
    return guard(async () => {
      const meta = await this.#table(table);
      const key = coerceId(meta, id);
      if (key === undefined) return undefined;
      const marked = await this.#marked(options);
      return transaction(this.#sql, async (tx) => {
        await setApiWrite(tx, marked);
        // Lock the row, then read the rows foreign key actions will change, before the
        // delete in the same transaction: the cache must hear of them as of the row.
        const [locked] = await run(tx, `${selectById(meta, key)} FOR UPDATE`, [bindable(key)]);
        if (!locked) return undefined;
        const affected = await this.#referencing(tx, table, locked);
        const [old] = await run(
          tx,
          `DELETE FROM ${meta.qualified} WHERE ${keyMatch(meta, key, 1)} RETURNING ${meta.selectList}`,
          [bindable(key)],
        );
        if (!old) return undefined;
        const cascaded: WriteEvent[] = [];
        for (const { table: child, row } of affected) {
          const childMeta = await this.#table(child);
          const childKey = row[childMeta.pk.name];
          const [now] = await run(tx, selectById(childMeta, childKey), [bindable(childKey)]);
          cascaded.push(
            now
              ? { table: child, op: "update", old: row, new: now }
              : { table: child, op: "delete", old: row },
          );
        }
        return { old, cascaded };
      }) as Promise<DeleteResult | undefined>;
    });
  }

  async effects(table: string, op: WriteEvent["op"]): Promise<WriteEvent[]> {
    return guard(async () => {
      await this.#table(table);
      const key = `${table}\u0000${op}`;
      let events = this.#effects.get(key);
      if (!events) {
        const tables = await this.#affectedTables(table, op);
        events = [...tables].map((t) => ({ table: t, op: "update" }));
        this.#effects.set(key, events);
      }
      return events;
    });
  }

  async captureStatus(): Promise<CaptureStatus> {
    return guard(async () => {
      const { tables } = await this.#discover();
      return postgresCaptureStatus(this.#sql, this.#schemaName, [...tables.keys()]);
    });
  }

  async installCapture(): Promise<CaptureStatus> {
    return guard(async () => {
      const { tables } = await this.#discover();
      const list = [...tables.values()].map((t) => ({
        name: t.info.name,
        qualified: t.qualified,
        columns: [...t.columns.values()],
      }));
      await installPostgresCapture(this.#sql, this.#schemaName, list);
      this.#effects.clear();
      return postgresCaptureStatus(this.#sql, this.#schemaName, [...tables.keys()]);
    });
  }

  async uninstallCapture(): Promise<void> {
    await guard(() => uninstallPostgresCapture(this.#sql, this.#schemaName));
  }

  async recorded(mark: string): Promise<void> {
    if (!(await this.#captureInstalled())) return;
    await forgetPostgresCaptured(this.#sql, this.#schemaName, mark).catch(() => {});
  }

  /** Whether capture is installed, asked at most once a second (see WriteOptions.capture). */
  async #captureInstalled(): Promise<boolean> {
    const now = Date.now();
    if (now - this.#captureCheckedAt > CAPTURE_CHECK_MS) {
      this.#captureCheckedAt = now;
      this.#captureOn = await isInstalled(this.#sql, this.#schemaName).catch(() => this.#captureOn);
    }
    return this.#captureOn;
  }

  /** The write's options for its transaction: the capture mark only while capture is on. */
  async #marked(options: WriteOptions | undefined): Promise<WriteOptions | undefined> {
    return options?.capture !== undefined && (await this.#captureInstalled()) ? options : undefined;
  }

  captureFeed(): CaptureFeed {
    let tables: Map<string, PgTable> | undefined;
    void this.#discover().then((d) => {
      tables = d.tables;
    });
    return postgresCaptureFeed(
      this.#sql,
      this.#schemaName,
      (table) => {
        const meta = tables?.get(table);
        return meta ? [...meta.columns.keys()] : undefined;
      },
      () => this.#connectOne(),
    );
  }

  /**
   * A client of one connection to the same database, with the pool's options (postgres.js
   * takes its own parsed options back) and a count of failures of its own.
   */
  #connectOne(): Sql {
    const options = this.#sql.options;
    return this.#postgres({
      ...options,
      max: 1,
      backoff: reconnectBackoff,
      shared: { retries: 0, typeArrayMap: {} },
    } as unknown as postgres.Options<Record<string, never>>);
  }

  async close(): Promise<void> {
    if (this.#owned) await this.#sql.end({ timeout: 5 });
  }

  /** Old row locked, then the UPDATE, in one transaction. */
  async #write(
    table: PgTable,
    id: string | number,
    assignments: string[],
    params: unknown[],
    options: WriteOptions | undefined,
  ): Promise<WriteResult | undefined> {
    const key = coerceId(table, id);
    if (key === undefined) return undefined;
    const marked = await this.#marked(options);
    return transaction(this.#sql, async (tx) => {
      await setApiWrite(tx, marked);
      const [old] = await run(tx, `${selectById(table, key)} FOR UPDATE`, [bindable(key)]);
      if (!old) return undefined;
      if (assignments.length === 0) return { old, row: old };
      const sql =
        `UPDATE ${table.qualified} SET ${assignments.join(", ")}` +
        ` WHERE ${keyMatch(table, key, params.length + 1)} RETURNING ${table.selectList}`;
      const [row] = await run(tx, sql, [...params, bindable(key)]);
      return { old, row: row! };
    }) as Promise<WriteResult | undefined>;
  }

  /**
   * Rows of other tables whose foreign keys point at `parentRow` with an ON DELETE
   * action, followed transitively through cascades. Locked, so they stay as read until
   * the delete commits.
   */
  async #referencing(
    tx: Runner,
    table: string,
    parentRow: Row,
    seen = new Set<string>(),
  ): Promise<{ table: string; row: Row }[]> {
    const out: { table: string; row: Row }[] = [];
    for (const fk of this.#foreignKeys.get(table) ?? []) {
      if (fk.onDelete === "NO ACTION" || fk.onDelete === "RESTRICT") continue;
      const parentValue = parentRow[fk.to];
      if (parentValue === undefined || parentValue === null) continue;
      const child = await this.#table(fk.table);
      const fromColumn = child.columns.get(fk.from)!;
      const rows = await run(
        tx,
        `SELECT ${child.selectList} FROM ${child.qualified} WHERE ${quote(fk.from)} = ${parameter(fromColumn, 1)} FOR UPDATE`,
        [bindable(parentValue)],
      );
      for (const row of rows) {
        const id = `${fk.table}#${String(row[child.pk.name])}`;
        if (seen.has(id)) continue;
        seen.add(id);
        out.push({ table: fk.table, row });
        if (fk.onDelete === "CASCADE") {
          out.push(...(await this.#referencing(tx, fk.table, row, seen)));
        }
      }
    }
    return out;
  }

  /**
   * Tables a write may change without telling us which rows: those named in the
   * functions of the table's own triggers (edgecache's capture triggers aside), and ON
   * UPDATE actions of foreign keys.
   */
  async #affectedTables(table: string, op: WriteEvent["op"]): Promise<Set<string>> {
    const { tables } = await this.#discover();
    const out = new Set<string>();
    const sources = await run(
      this.#sql,
      `SELECT p.prosrc AS src FROM pg_trigger t
         JOIN pg_class c ON c.oid = t.tgrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_proc p ON p.oid = t.tgfoid
       WHERE NOT t.tgisinternal AND n.nspname = $1 AND c.relname = $2
         AND t.tgname NOT LIKE 'edgecache\\_%'`,
      [this.#schemaName, table],
    );
    for (const { src } of sources) {
      for (const name of tables.keys()) {
        const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        if (new RegExp(`(^|[^\\w])${escaped}($|[^\\w])`, "i").test(String(src ?? ""))) {
          out.add(name);
        }
      }
    }
    if (op === "update") {
      for (const fk of this.#foreignKeys.get(table) ?? []) {
        if (!["NO ACTION", "RESTRICT"].includes(fk.onUpdate)) out.add(fk.table);
      }
    }
    return out;
  }

  #discover(): Promise<{ schema: Schema; tables: Map<string, PgTable> }> {
    if (!this.#discovered) {
      this.#discovered = this.#readCatalog();
      // A failed discovery (database down) is tried again by the next request.
      this.#discovered.catch(() => {
        this.#discovered = undefined;
      });
    }
    return this.#discovered;
  }

  async #readCatalog(): Promise<{ schema: Schema; tables: Map<string, PgTable> }> {
    const columnRows = await run(
      this.#sql,
      `SELECT c.relname AS table, a.attname AS name, t.typname AS type, t.typcategory AS category,
              a.atttypmod AS typmod, a.attnotnull AS notnull, a.attidentity AS identity,
              a.attgenerated AS generated, pg_get_expr(d.adbin, d.adrelid) AS default
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
        ORDER BY c.relname, a.attnum`,
      [this.#schemaName],
    );
    const keyRows = await run(
      this.#sql,
      `SELECT c.relname AS table, a.attname AS name
         FROM pg_constraint k
         JOIN pg_class c ON c.oid = k.conrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
        WHERE n.nspname = $1 AND k.contype = 'p' AND cardinality(k.conkey) = 1`,
      [this.#schemaName],
    );
    const keyOf = new Map(keyRows.map((r) => [String(r.table), String(r.name)]));
    const byTable = new Map<string, Row[]>();
    for (const r of columnRows) {
      const name = String(r.table);
      byTable.set(name, [...(byTable.get(name) ?? []), r]);
    }
    const tables = new Map<string, PgTable>();
    const skipped: string[] = [];
    for (const [name, rows] of byTable) {
      const pkName = keyOf.get(name);
      if (pkName === undefined) {
        skipped.push(name);
        continue;
      }
      const columns = new Map<string, PgColumn>();
      for (const r of rows) columns.set(String(r.name), columnOf(r, String(r.name) === pkName));
      const pk = columns.get(pkName)!;
      const info = tableInfo(name, columns.values(), pk);
      const selectList = [...columns.values()]
        .map((c) => (c.read === quote(c.name) ? c.read : `${c.read} AS ${quote(c.name)}`))
        .join(", ");
      const qualified = `${quote(this.#schemaName)}.${quote(name)}`;
      tables.set(name, { source: COMPONENT, info, columns, pk, qualified, selectList });
    }
    if (skipped.length > 0) {
      console.warn(
        `[edgecache] [${COMPONENT}] skipping tables without a single-column primary key: ${skipped.join(", ")}`,
      );
    }
    this.#foreignKeys = await this.#readForeignKeys(tables);
    const views = checkViews(COMPONENT, this.#views, tables, skipped);
    const schema = {
      tables: new Map([...tables].map(([name, t]) => [name, t.info])),
      views,
    };
    return { schema, tables };
  }

  /** Single-column foreign keys between served tables, keyed by the parent table. */
  async #readForeignKeys(tables: Map<string, PgTable>): Promise<Map<string, ForeignKey[]>> {
    const rows = await run(
      this.#sql,
      `SELECT child.relname AS child, ca.attname AS "from", parent.relname AS parent,
              pa.attname AS "to", k.confdeltype AS on_delete, k.confupdtype AS on_update
         FROM pg_constraint k
         JOIN pg_class child ON child.oid = k.conrelid
         JOIN pg_class parent ON parent.oid = k.confrelid
         JOIN pg_namespace n ON n.oid = child.relnamespace
         JOIN pg_namespace pn ON pn.oid = parent.relnamespace
         JOIN pg_attribute ca ON ca.attrelid = child.oid AND ca.attnum = k.conkey[1]
         JOIN pg_attribute pa ON pa.attrelid = parent.oid AND pa.attnum = k.confkey[1]
        WHERE k.contype = 'f' AND cardinality(k.conkey) = 1
          AND n.nspname = $1 AND pn.nspname = $1`,
      [this.#schemaName],
    );
    const out = new Map<string, ForeignKey[]>();
    for (const r of rows) {
      const parent = String(r.parent);
      if (!tables.has(parent) || !tables.has(String(r.child))) continue;
      const fk: ForeignKey = {
        table: String(r.child),
        from: String(r.from),
        to: String(r.to),
        onDelete: ACTIONS[String(r.on_delete)] ?? "NO ACTION",
        onUpdate: ACTIONS[String(r.on_update)] ?? "NO ACTION",
      };
      out.set(parent, [...(out.get(parent) ?? []), fk]);
    }
    return out;
  }

  async #table(name: string): Promise<PgTable> {
    const { tables } = await this.#discover();
    const table = tables.get(name);
    if (!table) throw new EdgecacheError("E_NOT_FOUND", COMPONENT, `unknown table "${name}"`);
    return table;
  }

  async #select(runner: Runner, table: PgTable, query: ListQuery): Promise<Row[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    for (const filter of query.filters) where.push(compileFilter(table, filter, params));
    if (!isWindowNumber(query.limit)) {
      throw badQuery(COMPONENT, "limit must be a non-negative integer");
    }
    if (!isWindowNumber(query.offset)) {
      throw badQuery(COMPONENT, "offset must be a non-negative integer");
    }
    params.push(query.limit, query.offset);
    const sql =
      `SELECT ${table.selectList} FROM ${table.qualified}` +
      (where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "") +
      ` ORDER BY ${compileSort(table, query.sort)}` +
      ` LIMIT $${params.length - 1}::int8 OFFSET $${params.length}::int8`;
    return run(runner, sql, params);
  }

  /** Adds each join's child rows to the base rows, as arrays ordered by the child's key. */
  async #attachJoins(view: ViewInfo, rows: Row[]): Promise<Row[]> {
    for (const join of view.joins) {
      const child = await this.#table(join.table);
      const column = child.columns.get(join.foreignKey)!;
      const children: Row[] = [];
      for (const chunk of joinKeyChunks(rows, join, MAX_IN_PARAMS)) {
        const sql =
          `SELECT ${child.selectList} FROM ${child.qualified} WHERE ${quote(join.foreignKey)}` +
          ` IN (${chunk.map((_, j) => parameter(column, j + 1)).join(", ")})` +
          ` ORDER BY ${comparable(child.pk)} ASC NULLS FIRST`;
        children.push(...(await run(this.#sql, sql, chunk.map(bindable))));
      }
      attachChildren(rows, join, children);
    }
    return rows;
  }
}

/** pg_constraint's one-letter foreign key actions. */
const ACTIONS: Record<string, string> = {
  a: "NO ACTION",
  r: "RESTRICT",
  c: "CASCADE",
  n: "SET NULL",
  d: "SET DEFAULT",
};

/** Type categories (pg_type.typcategory) read as numbers: numeric and boolean. */
const NUMBER_CATEGORIES = new Set(["N", "B"]);

/** Types read as "date": fixed-width ISO 8601 text, see isoText. */
const DATE_TYPES = new Set(["date", "timestamp", "timestamptz", "time"]);

/**
 * Text types read and compared without a cast. char(n) (bpchar) is read as ::text, which
 * drops its padding as its own comparisons do; citext is read as ::text, compared exactly.
 */
const TEXT_TYPES = new Set(["text", "varchar", "name"]);

function columnOf(r: Row, isKey: boolean): PgColumn {
  const name = String(r.name);
  const type = String(r.type);
  const category = String(r.category);
  const defaultSql = r.default == null ? null : String(r.default);
  const assigned = defaultSql !== null || r.identity !== "" || r.generated !== "";
  let kind: ColumnKind = "text";
  let readOf = (ref: string) => ref;
  if (DATE_TYPES.has(type)) {
    kind = "date";
    readOf = (ref) => isoText(ref, type, Number(r.typmod));
  } else if (category === "B") {
    kind = "number";
    readOf = (ref) => `${ref}::int`;
  } else if (NUMBER_CATEGORIES.has(category)) {
    kind = "number";
    // int8 and numeric come back from the driver as strings; the planner needs numbers.
    if (type === "int8" || type === "numeric") readOf = (ref) => `${ref}::float8`;
  } else if (!TEXT_TYPES.has(type)) {
    readOf = (ref) => `${ref}::text`;
  }
  return {
    name,
    kind,
    nullable: r.notnull !== true && !isKey,
    defaultSql,
    read: readOf(quote(name)),
    readOf,
    textual: kind === "text" || kind === "date",
    assigned,
  };
}

/**
 * A date column as ISO 8601 text of one width per column, so that text order is time
 * order: `2024-05-17T09:41:07Z` for timestamptz(0), `...07.123Z` for precision 1-3,
 * `...07.123456Z` otherwise; timestamp without time zone has no `Z`; date is
 * `2024-05-17`, time `09:41:07` (with the same fractions).
 */
function isoText(column: string, type: string, typmod: number): string {
  const precision = typmod < 0 ? 6 : typmod;
  const fraction = precision === 0 ? "" : precision <= 3 ? ".MS" : ".US";
  switch (type) {
    case "date":
      return `to_char(${column}, 'YYYY-MM-DD')`;
    case "time":
      return `to_char(${column}, 'HH24:MI:SS${fraction}')`;
    case "timestamp":
      return `to_char(${column}, 'YYYY-MM-DD"T"HH24:MI:SS${fraction}')`;
    default:
      return `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS${fraction}"Z"')`;
  }
}

/** The column as a comparison operand: text by code point, numbers as stored. */
function comparable(column: PgColumn): string {
  return column.textual ? `(${column.read}) COLLATE "C"` : column.read;
}

/**
 * A bound parameter in a write or a key match, cast to the column's stored type where
 * PostgreSQL cannot infer it from an untyped literal.
 */
function parameter(column: PgColumn, n: number): string {
  return column.kind === "number" && column.read.endsWith("::int") ? `$${n}::int::bool` : `$${n}`;
}

/**
 * The key column equal to parameter n. Equality needs no COLLATE "C": a deterministic
 * collation calls strings equal only when their bytes are, and without it the primary
 * key's index serves the match.
 */
function keyMatch(table: PgTable, key: unknown, n: number): string {
  const pk = table.pk;
  if (pk.kind === "number") return `${pk.read} = $${n}::${numberCast(key)}`;
  return `${pk.read} = $${n}`;
}

function selectById(table: PgTable, key: unknown): string {
  return `SELECT ${table.selectList} FROM ${table.qualified} WHERE ${keyMatch(table, key, 1)}`;
}

/** A whole number as int8 keeps an index on an integer column usable. */
function numberCast(value: unknown): string {
  return Number.isSafeInteger(value) ? "int8" : "float8";
}

/** Values as postgres.js binds them: numbers as text keeps int8 and numeric exact. */
function bindable(value: unknown): unknown {
  return typeof value === "number" ? String(value) : value;
}

/**
 * PostgreSQL text cannot hold NUL, and a filter value may (`?name=a%00`). No stored
 * value contains one, so a comparison with `p + "\0" + rest` is one with `p` (every
 * stored value that extends p is greater): < and <= become <= p, > and >= become > p,
 * = and a prefix match nothing.
 */
function compileFilter(table: PgTable, filter: Filter, params: unknown[]): string {
  const column = table.columns.get(filter.column);
  if (!column) throw badQuery(COMPONENT, `unknown column "${filter.column}"`);
  const value = filterValue(COMPONENT, column, filter.value);
  const next = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  if (filter.op === "prefix") {
    if (column.kind === "number" || typeof value !== "string") {
      throw badQuery(COMPONENT, `${column.name}: a prefix (value*) needs a text or date column`);
    }
    if (value.includes("\0")) return "FALSE";
    return `starts_with(${comparable(column)}, ${next(value)})`;
  }
  const op = COMPARISONS[filter.op];
  if (!op) throw badQuery(COMPONENT, `unknown filter operator "${String(filter.op)}"`);
  if (column.kind === "number") {
    return `${column.read} ${op} ${next(String(value))}::${numberCast(value)}`;
  }
  const text = value as string;
  const nul = text.indexOf("\0");
  if (nul < 0 && filter.op === "eq") return `${column.read} = ${next(text)}`;
  if (nul < 0) return `${comparable(column)} ${op} ${next(text)}`;
  const before = text.slice(0, nul);
  if (filter.op === "eq") return "FALSE";
  const lower = filter.op === "lt" || filter.op === "lte";
  return `${comparable(column)} ${lower ? "<=" : ">"} ${next(before)}`;
}

function compileSort(table: PgTable, sort: SortKey[]): string {
  // NULLs first in ascending order, as SQLite and the planner order them.
  return orderBy(table, sort, (column, desc) =>
    desc ? `${comparable(column)} DESC NULLS LAST` : `${comparable(column)} ASC NULLS FIRST`,
  );
}

/** PostgreSQL text cannot hold NUL: refused as the body's fault, not the database's. */
function checkText(table: PgTable, given: Map<string, unknown>): void {
  for (const [name, value] of given) {
    if (typeof value === "string" && value.includes("\0")) {
      throw badBody(
        table.source,
        `column "${name}": PostgreSQL text cannot contain the NUL character`,
      );
    }
  }
}

/**
 * Gives the rows change capture's triggers record in this transaction the write's mark
 * (see WriteOptions.capture).
 */
async function setApiWrite(tx: Runner, options: WriteOptions | undefined): Promise<void> {
  if (options?.capture === undefined) return;
  await tx.unsafe(`SELECT set_config('${API_SETTING}', $1, true)`, [options.capture]);
}

async function run(runner: Runner, sql: string, params: unknown[] = []): Promise<Row[]> {
  return (await runner.unsafe(sql, params as never[], { prepare: true })) as unknown as Row[];
}

/** Runs driver work and turns anything thrown into an EdgecacheError without SQL text. */
async function guard<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw toEdgecacheError(err);
  }
}

/** SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
function toEdgecacheError(cause: unknown): EdgecacheError {
  if (cause instanceof EdgecacheError) return cause;
  const e = (cause ?? {}) as {
    code?: unknown;
    detail?: unknown;
    column_name?: unknown;
    constraint_name?: unknown;
  };
  const code = typeof e.code === "string" ? e.code : "";
  const error = (errorCode: ErrorCode, text: string) =>
    new EdgecacheError(errorCode, COMPONENT, text, { cause });
  const columns = /^Key \(([^)]*)\)/.exec(typeof e.detail === "string" ? e.detail : "")?.[1];
  const named = columns
    ? ` on column ${columns
        .split(", ")
        .map((c) => `"${c.replaceAll('"', "")}"`)
        .join(", ")}`
    : "";
  switch (code) {
    case "23505":
      return String(e.constraint_name ?? "").endsWith("_pkey")
        ? error("E_CONFLICT", `a row with this primary key already exists${named}`)
        : error("E_CONFLICT", `unique constraint violated${named}`);
    case "23502":
      return error(
        "E_CONFLICT",
        `not null constraint violated${typeof e.column_name === "string" ? ` on column "${e.column_name}"` : ""}`,
      );
    case "23503":
      return error("E_CONFLICT", "foreign key constraint violated");
    case "23514": {
      const name = String(e.constraint_name ?? "");
      return error(
        "E_CONFLICT",
        /^[A-Za-z_][A-Za-z0-9_]*$/.test(name)
          ? `check constraint "${name}" violated`
          : "check constraint violated",
      );
    }
    case "40001":
    case "40P01":
    case "55P03":
      return error("E_SOURCE_BUSY", "the database could not serialize the write; try again");
  }
  // A generated or identity column given a value; a value of the wrong type.
  if (code === "428C9" || code === "42804") {
    return error("E_BAD_BODY", "a value was given for a column that does not take one");
  }
  // The server is down, unreachable, restarting or shutting down: say so, not how.
  if (
    /^(ECONN|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|EPIPE|CONNECT_TIMEOUT|CONNECTION_)/.test(code) ||
    code.startsWith("08") ||
    code.startsWith("57P")
  ) {
    return error("E_SOURCE_UNAVAILABLE", "the database cannot be reached");
  }
  // Class 22: data exceptions (a value the column's type refuses, out of range, too long).
  if (code.startsWith("22")) return error("E_BAD_BODY", "a value is not valid for its column");
  if (code.startsWith("23")) return error("E_CONFLICT", "constraint violated");
  return error("E_SOURCE_UNAVAILABLE", `database error${code ? ` (${code})` : ""}`);
}

/** Whether a `database` setting names a PostgreSQL server rather than a SQLite file. */
export function isPostgresUrl(database: string): boolean {
  return /^postgres(ql)?:\/\//i.test(database);
}

/** The URL without its password, for logs and messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@");
  }
}
