import type { WriteEvent } from "../core/deps/planner.ts";
import { badOption, EdgecacheError } from "../core/errors.ts";
import type { ListQuery, Resource, Row, Schema, ViewInfo } from "../core/query.ts";
import type { DeleteResult, Source, WriteResult } from "./source.ts";
import {
  attachChildren,
  badBody,
  checkViews,
  coerceId,
  type ForeignKey,
  joinKeyChunks,
  quote,
  validateViewsOption,
} from "./sql.ts";
import { CAPTURE_PREFIX } from "./sqlite-capture.ts";
import {
  affectedTables,
  childrenSql,
  FOREIGN_KEY_LIST_SQL,
  type ForeignKeyRow,
  foreignKeysByParent,
  insertStatement,
  keyMatch,
  mayLookNumeric,
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

/** The part of a D1 binding (`D1Database`) this source uses; no Cloudflare type needed. */
export interface D1DatabaseLike {
  prepare(sql: string): D1StatementLike;
  batch(statements: D1StatementLike[]): Promise<{ results: unknown[] }[]>;
}
export interface D1StatementLike {
  bind(...values: unknown[]): D1StatementLike;
  all(): Promise<{ results: unknown[] }>;
  first(): Promise<unknown>;
}

export interface D1SourceOptions {
  /** The D1 binding (`env.DB` in a Worker). */
  database: D1DatabaseLike;
  /** Declared views (joins), as for the SQLite source. */
  views?: ViewInfo[];
}

const COMPONENT = "d1";
/** A foreign key action of a delete: the query of the rows it changes (one parameter). */
interface Acted {
  fk: ForeignKey;
  sql: string;
  /** False when the rows cannot be told apart from another path's (see #actedOnByDelete). */
  images: boolean;
}

/** D1 binds at most 100 parameters per statement. */
const D1_MAX_PARAMS = 100;
/** D1's and wrangler's own tables: never served. */
const INTERNAL = /^(sqlite_|_cf_|d1_migrations$)/;

/**
 * A Source over Cloudflare D1: SQLite's dialect (the same compiled filters, sorts and
 * checks as the better-sqlite3 source) over D1's async API.
 *
 * D1 has no interactive transactions, so each write is one statement or one `batch`
 * (which D1 runs as one transaction): an update reads the old row and writes in one
 * batch, a delete returns its old row from `DELETE ... RETURNING`. The rows foreign key
 * actions change on delete cannot be read in the same transaction without one, so they
 * are reported as table-level events (every cached entry of those tables goes): safe,
 * not exact. A value SQLite would convert by column affinity is refused before the write
 * (there is no transaction to roll back after it).
 *
 * @example
 * ```ts
 * const source = d1Source({ database: env.DB, views: demoViews });
 * ```
 */
export function d1Source(options: D1SourceOptions): Source {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  const db = options.database;
  if (typeof db !== "object" || db === null || typeof db.prepare !== "function") {
    badOption(COMPONENT, "database", "a D1 database binding", db);
  }
  const views = validateViewsOption(COMPONENT, options.views);
  return new D1Source(db, views);
}

class D1Source implements Source {
  readonly name = "d1";
  readonly #db: D1DatabaseLike;
  readonly #views: ViewInfo[];
  #discovered: Promise<{ schema: Schema; tables: Map<string, TableMeta> }> | undefined;
  #foreignKeys: Promise<Map<string, ForeignKey[]>> | undefined;

  constructor(db: D1DatabaseLike, views: ViewInfo[]) {
    this.#db = db;
    this.#views = views;
  }

  async schema(): Promise<Schema> {
    return guard(async () => (await this.#discover()).schema);
  }

  async list(resource: Resource, query: ListQuery): Promise<Row[]> {
    return guard(async () => {
      const table = await this.#table(resource.table.name);
      const { sql, params } = selectSql(COMPONENT, table, query);
      const rows = await this.#all(sql, params);
      return resource.kind === "view" ? this.#attachJoins(resource.view, rows) : rows;
    });
  }

  async get(resource: Resource, id: string | number): Promise<Row | undefined> {
    return guard(async () => {
      const table = await this.#table(resource.table.name);
      const key = coerceId(table, id);
      if (key === undefined) return undefined;
      const sql = `SELECT * FROM ${quote(table.info.name)} WHERE ${keyMatch(table, key)}`;
      const row = (await this.#db.prepare(sql).bind(key).first()) as Row | null;
      if (!row) return undefined;
      return resource.kind === "view" ? (await this.#attachJoins(resource.view, [row]))[0] : row;
    });
  }

  async insert(table: string, values: Row): Promise<Row> {
    return guard(async () => {
      const meta = await this.#table(table);
      const { sql, params, given } = insertStatement(meta, values);
      refuseConverted(meta, given);
      return (await this.#db
        .prepare(sql)
        .bind(...params)
        .first()) as Row;
    });
  }

  async update(table: string, id: string | number, values: Row): Promise<WriteResult | undefined> {
    return guard(async () => {
      const meta = await this.#table(table);
      const { assignments, params, given } = updateAssignments(meta, id, values);
      return this.#write(meta, id, assignments, params, given);
    });
  }

  async replace(table: string, id: string | number, values: Row): Promise<WriteResult | undefined> {
    return guard(async () => {
      const meta = await this.#table(table);
      const { assignments, params, given } = replaceAssignments(meta, id, values);
      return this.#write(meta, id, assignments, params, given);
    });
  }

  async delete(table: string, id: string | number): Promise<DeleteResult | undefined> {
    return guard(async () => {
      const meta = await this.#table(table);
      const key = coerceId(meta, id);
      if (key === undefined) return undefined;
      // The rows foreign key actions will change, read before the delete in the same batch
      // (D1 runs a batch as one transaction, so nothing commits in between), then the
      // delete, whose RETURNING yields the row as it was.
      const match = keyMatch(meta, key);
      const acted = await this.#actedOnByDelete(table, match);
      const sql = `DELETE FROM ${quote(table)} WHERE ${match} RETURNING *`;
      const results = await this.#db.batch([
        ...acted.map((a) => this.#db.prepare(a.sql).bind(key)),
        this.#db.prepare(sql).bind(key),
      ]);
      const old = results.at(-1)?.results[0] as Row | undefined;
      if (!old) return undefined;
      return { old, cascaded: await this.#cascaded(acted, results) };
    });
  }

  async effects(table: string, op: WriteEvent["op"]): Promise<WriteEvent[]> {
    return guard(async () => {
      const { tables } = await this.#discover();
      await this.#table(table);
      const triggers = await this.#all<{ name: string; sql: string | null }>(TRIGGERS_SQL, [table]);
      const own = (await this.#db.prepare(TABLE_SQL).bind(table).first()) as {
        sql: string | null;
      } | null;
      const fks = (await this.#foreignKeysByParent()).get(table) ?? [];
      return [...affectedTables(table, op, triggers, tables.keys(), fks, own?.sql)].map((t) => ({
        table: t,
        op: "update",
      }));
    });
  }

  async close(): Promise<void> {
    // A binding has nothing to close.
  }

  /** Old row, then the UPDATE, in one batch: D1 runs a batch as one transaction. */
  async #write(
    table: TableMeta,
    id: string | number,
    assignments: string[],
    params: unknown[],
    given: Map<string, unknown>,
  ): Promise<WriteResult | undefined> {
    const key = coerceId(table, id);
    if (key === undefined) return undefined;
    refuseConverted(table, given);
    const match = keyMatch(table, key);
    const select = this.#db.prepare(`SELECT * FROM ${quote(table.info.name)} WHERE ${match}`);
    if (assignments.length === 0) {
      const old = (await select.bind(key).first()) as Row | null;
      return old ? { old, row: old } : undefined;
    }
    const update = this.#db
      .prepare(
        `UPDATE ${quote(table.info.name)} SET ${assignments.join(", ")} WHERE ${match} RETURNING *`,
      )
      .bind(...params, key);
    const [before, after] = await this.#db.batch([select.bind(key), update]);
    const old = before?.results[0] as Row | undefined;
    const row = after?.results[0] as Row | undefined;
    return old && row ? { old, row } : undefined;
  }

  /** Tables whose rows a delete from `table` changes through ON DELETE actions, transitively. */
  /**
   * What foreign key actions do when a row of `table` matching `where` (one parameter: the
   * key) is deleted: for each action, a query of the rows it changes, followed through
   * cascades. A table met again on the way (a cycle, a table reached twice) cannot be
   * followed further by queries: its rows are then reported as changed without images.
   */
  async #actedOnByDelete(table: string, where: string, seen = new Set<string>()): Promise<Acted[]> {
    const out: Acted[] = [];
    for (const fk of (await this.#foreignKeysByParent()).get(table) ?? []) {
      if (fk.onDelete === "NO ACTION" || fk.onDelete === "RESTRICT") continue;
      const childWhere = `${quote(fk.from)} IN (SELECT ${quote(fk.to)} FROM ${quote(table)} WHERE ${where})`;
      const again = seen.has(fk.table);
      seen.add(fk.table);
      out.push({ fk, sql: `SELECT * FROM ${quote(fk.table)} WHERE ${childWhere}`, images: !again });
      if (fk.onDelete === "CASCADE" && !again) {
        out.push(...(await this.#actedOnByDelete(fk.table, childWhere, seen)));
      }
    }
    return out;
  }

  /** The write events of foreign key actions, from the rows read before the delete. */
  async #cascaded(acted: Acted[], results: { results: unknown[] }[]): Promise<WriteEvent[]> {
    const { tables } = await this.#discover();
    const events: WriteEvent[] = [];
    const blind = new Set<string>();
    const seen = new Set<string>();
    acted.forEach(({ fk, images }, i) => {
      const child = tables.get(fk.table);
      // SET DEFAULT: the new value is the column's default, which is not read here.
      if (!images || !child || fk.onDelete === "SET DEFAULT") {
        blind.add(fk.table);
        return;
      }
      for (const row of results[i]!.results as Row[]) {
        const id = `${fk.table}#${String(row[child.pk.name])}`;
        if (seen.has(id)) {
          blind.add(fk.table); // two actions on one row: only the source knows the outcome
          continue;
        }
        seen.add(id);
        events.push(
          fk.onDelete === "CASCADE"
            ? { table: fk.table, op: "delete", old: row }
            : { table: fk.table, op: "update", old: row, new: { ...row, [fk.from]: null } },
        );
      }
    });
    // A table with a row not described by images: its events carry none, so they plan
    // by table.
    return [
      ...events.filter((e) => !blind.has(e.table)),
      ...[...blind].map((t): WriteEvent => ({ table: t, op: "update" })),
    ];
  }

  #foreignKeysByParent(): Promise<Map<string, ForeignKey[]>> {
    this.#foreignKeys ??= (async () => {
      const { tables } = await this.#discover();
      const rows = new Map<string, ForeignKeyRow[]>();
      for (const child of tables.keys()) {
        rows.set(child, await this.#all<ForeignKeyRow>(FOREIGN_KEY_LIST_SQL, [child]));
      }
      return foreignKeysByParent(tables, rows);
    })();
    return this.#foreignKeys;
  }

  #discover(): Promise<{ schema: Schema; tables: Map<string, TableMeta> }> {
    this.#discovered ??= (async () => {
      const tableRows = await this.#all<{ name: string; wr: number }>(TABLE_LIST_SQL, []);
      const tables = new Map<string, TableMeta>();
      const skipped: string[] = [];
      for (const { name, wr } of tableRows) {
        if (INTERNAL.test(name) || name.startsWith(CAPTURE_PREFIX)) continue;
        const info = await this.#all<TableInfoRow>(TABLE_INFO_SQL, [name]);
        const meta = tableMeta(COMPONENT, name, wr, info);
        if (meta) tables.set(name, meta);
        else skipped.push(name);
      }
      if (skipped.length > 0) {
        console.warn(
          `[edgecache] [${COMPONENT}] skipping tables without a single-column primary key: ${skipped.join(", ")}`,
        );
      }
      const views = checkViews(COMPONENT, this.#views, tables, skipped);
      const schema = { tables: new Map([...tables].map(([name, t]) => [name, t.info])), views };
      return { schema, tables };
    })();
    // A failed discovery is tried again by the next call.
    this.#discovered.catch(() => {
      this.#discovered = undefined;
    });
    return this.#discovered;
  }

  async #table(name: string): Promise<TableMeta> {
    const table = (await this.#discover()).tables.get(name);
    if (!table) throw new EdgecacheError("E_NOT_FOUND", COMPONENT, `unknown table "${name}"`);
    return table;
  }

  async #all<T = Row>(sql: string, params: unknown[]): Promise<T[]> {
    const statement = this.#db.prepare(sql);
    const { results } = await (params.length > 0 ? statement.bind(...params) : statement).all();
    return results as T[];
  }

  /** Adds each join's child rows to the base rows, as arrays ordered by the child's key. */
  async #attachJoins(view: ViewInfo, rows: Row[]): Promise<Row[]> {
    for (const join of view.joins) {
      const child = await this.#table(join.table);
      const children: Row[] = [];
      for (const chunk of joinKeyChunks(rows, join, D1_MAX_PARAMS)) {
        children.push(...(await this.#all(childrenSql(child, join, chunk.length), chunk)));
      }
      attachChildren(rows, join, children);
    }
    return rows;
  }
}

/**
 * Refuses, before the write, a value SQLite would convert by column affinity: a numeric
 * string into a column of numeric affinity becomes a number, a number into a text column
 * becomes text. The better-sqlite3 source checks the stored row and rolls back; D1 has no
 * transaction open after the statement to roll back.
 */
function refuseConverted(table: TableMeta, given: Map<string, unknown>): void {
  for (const [name, value] of given) {
    const column = table.columns.get(name);
    if (!column || value === null) continue;
    const numericAffinity = column.affinity !== "text" && column.affinity !== "blob";
    if (typeof value === "string" && numericAffinity && mayLookNumeric(value)) {
      throw badBody(
        COMPONENT,
        `column "${name}": SQLite would store this ${column.kind} value as a number; send a non-numeric ${column.kind === "date" ? "date such as 2024-01-31" : "string"}`,
      );
    }
    if (typeof value === "number" && column.affinity === "text") {
      throw badBody(
        COMPONENT,
        `column "${name}": SQLite would store this number as text (column affinity)`,
      );
    }
  }
}

/** Turns anything D1 throws into an EdgecacheError without SQL text. */
async function guard<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw toEdgecacheError(withSqliteCode(err));
  }
}

/**
 * D1 errors carry SQLite's message but no code property ("D1_ERROR: UNIQUE constraint
 * failed: users.email: SQLITE_CONSTRAINT"): the code is read from the message, so the
 * dialect's mapping (409 for constraints, 400 for types) applies as for better-sqlite3.
 */
function withSqliteCode(err: unknown): unknown {
  if (err instanceof EdgecacheError || !(err instanceof Error)) return err;
  // workerd adds the extended code too: "...: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)".
  const message = err.message
    .replace(/^D1_\w+:\s*/, "")
    .replace(/:\s*SQLITE_\w+(\s*\(extended: SQLITE_\w+\))?$/, "");
  const kind = /^(UNIQUE|NOT NULL|FOREIGN KEY|CHECK|PRIMARY KEY) constraint failed/.exec(message);
  const code = kind
    ? `SQLITE_CONSTRAINT_${kind[1]!.replace(" ", "")}`
    : /cannot store .* value in .* column/.test(message)
      ? "SQLITE_CONSTRAINT_DATATYPE"
      : /SQLITE_BUSY/.test(err.message)
        ? "SQLITE_BUSY"
        : undefined;
  return Object.assign(new Error(message, { cause: err }), code ? { code } : {});
}
