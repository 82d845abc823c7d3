import type { ListQuery, Resource, Row, Schema, ViewInfo } from "../core/data/query.ts";
import type { WriteEvent } from "../core/deps/planner.ts";
import { EdgecacheError } from "../core/errors.ts";
import { type Dialect, rowsOf, type Statement, type Steps } from "../database/dialect.ts";
import { type BatchDriver, type Driver, isTransactional } from "../database/driver.ts";
import {
  badBody,
  badQuery,
  type ForeignKey,
  quote,
  type ServedTable,
  type SqlColumn,
} from "../database/schema.ts";
import type { DeleteResult, Source, WriteOptions, WriteResult } from "./source.ts";
import {
  attachChildren,
  checkViews,
  coerceBody,
  coerceId,
  isWindowNumber,
  joinKeyChunks,
  requireValues,
  withoutKey,
} from "./sql.ts";
import { actedOnByDelete, affectedTables, cascadedOf, referencing } from "./sql-effects.ts";
import { storageFault, type WriteFaults } from "./storage.ts";

export interface SqlSourceOptions {
  /** The source's name, in errors and warnings (`[edgecache] [postgres] ...`). */
  name: string;
  views: ViewInfo[];
  /** Writes are refused with E_METHOD_NOT_ALLOWED. */
  readonly?: boolean;
}

/**
 * A Source over any SQL database: a dialect (SQL text, the catalog) and a driver (how
 * statements run). Discovery, lists and views, gets, writes with their old rows, the rows
 * foreign key actions change on a delete, and a write's effects are written here once.
 *
 * Writes run in one transaction where the driver has them: the old row is read (locked,
 * where the dialect locks rows) before it is changed. D1 has none, so a write there is one
 * batch of statements that do not depend on each other (see #batchDelete).
 */
export class SqlSource<C extends SqlColumn, T extends ServedTable<C>>
  implements Source, WriteFaults
{
  readonly name: string;
  readonly #dialect: Dialect<C, T>;
  readonly #driver: Driver;
  readonly #views: ViewInfo[];
  readonly #readonly: boolean;
  #discovered:
    | Promise<{ schema: Schema; tables: Map<string, T>; skipped: Map<string, T["columns"]> }>
    | undefined;
  #tables: Map<string, T> | undefined;
  #foreignKeys: Promise<Map<string, ForeignKey[]>> | undefined;
  readonly #effects = new Map<string, WriteEvent[]>();
  #writeFault: string | undefined;

  constructor(dialect: Dialect<C, T>, driver: Driver, options: SqlSourceOptions) {
    this.name = options.name;
    this.#dialect = dialect;
    this.#driver = driver;
    this.#views = options.views;
    this.#readonly = options.readonly ?? false;
  }

  async schema(): Promise<Schema> {
    return this.guard(async () => (await this.#discover()).schema);
  }

  async list(resource: Resource, query: ListQuery): Promise<Row[]> {
    return this.guard(async () => {
      const table = await this.#table(resource.table.name);
      const rows = await this.#driver.read(rowsOf(this.#select(table, query)));
      return resource.kind === "view" ? this.#attachJoins(resource.view, rows) : rows;
    });
  }

  async get(resource: Resource, id: string | number): Promise<Row | undefined> {
    return this.guard(async () => {
      const table = await this.#table(resource.table.name);
      const key = coerceId(table, id);
      if (key === undefined) return undefined;
      const [row] = await this.#driver.read(rowsOf(this.#byId(table, key)));
      if (!row) return undefined;
      return resource.kind === "view" ? (await this.#attachJoins(resource.view, [row]))[0] : row;
    });
  }

  async insert(table: string, values: Row, options?: WriteOptions): Promise<Row> {
    return this.#writeGuard(async () => {
      const meta = await this.#writable(table);
      const dialect = this.#dialect;
      const given = coerceBody(meta, values);
      dialect.checkValues(meta, given);
      const pk = meta.pk;
      if (given.get(pk.name) === null) given.delete(pk.name); // null key means "assign one"
      if (!given.has(pk.name) && !dialect.assignsKey(meta)) {
        if (pk.kind === "text") given.set(pk.name, crypto.randomUUID());
        else throw badBody(meta.source, `column "${pk.name}" (primary key) is required`);
      }
      requireValues(meta, given);
      const names = [...given.keys()];
      const into = dialect.tableName(meta);
      const returning = `RETURNING ${dialect.selectList(meta)}`;
      const insert: Statement = {
        sql:
          names.length === 0
            ? `INSERT INTO ${into} DEFAULT VALUES ${returning}`
            : `INSERT INTO ${into} (${names.map(quote).join(", ")}) VALUES (${names
                .map((name, i) => dialect.placeholder(i + 1, meta.columns.get(name)))
                .join(", ")}) ${returning}`,
        params: [...given.values()].map((v) => dialect.bind(v)),
      };
      const driver = this.#driver;
      if (isTransactional(driver)) {
        return driver.transaction(this.#insertSteps(meta, insert, given), options);
      }
      dialect.refuseConverted(meta, given);
      const [rows] = await driver.batch([insert], options);
      return rows![0]!;
    });
  }

  async update(
    table: string,
    id: string | number,
    values: Row,
    options?: WriteOptions,
  ): Promise<WriteResult | undefined> {
    return this.#writeGuard(() => this.#write(table, id, values, options, false));
  }

  async replace(
    table: string,
    id: string | number,
    values: Row,
    options?: WriteOptions,
  ): Promise<WriteResult | undefined> {
    return this.#writeGuard(() => this.#write(table, id, values, options, true));
  }

  async delete(
    table: string,
    id: string | number,
    options?: WriteOptions,
  ): Promise<DeleteResult | undefined> {
    return this.#writeGuard(async () => {
      const meta = await this.#writable(table);
      const key = coerceId(meta, id);
      if (key === undefined) return undefined;
      const { tables } = await this.#discover();
      const fks = await this.#foreignKeysByParent();
      const dialect = this.#dialect;
      const remove: Statement = {
        sql: `DELETE FROM ${dialect.tableName(meta)} WHERE ${dialect.keyMatch(meta, key, 1)} RETURNING ${dialect.selectList(meta)}`,
        params: [dialect.bind(key)],
      };
      const driver = this.#driver;
      if (isTransactional(driver)) {
        const steps = this.#deleteSteps(meta, key, remove, tables, fks);
        return driver.transaction(steps, options);
      }
      return this.#batchDelete(driver, meta, key, remove, tables, fks, options);
    });
  }

  async effects(table: string, op: WriteEvent["op"]): Promise<WriteEvent[]> {
    return this.guard(async () => {
      await this.#table(table);
      const key = `${table}\u0000${op}`;
      let events = this.#effects.get(key);
      if (!events) {
        const { tables } = await this.#discover();
        const fks = (await this.#foreignKeysByParent()).get(table) ?? [];
        const dialect = this.#dialect;
        const affected = await this.#driver.read(
          (function* () {
            const bodies = yield* dialect.triggerBodies(table);
            const replaces =
              op !== "delete" &&
              dialect.replacesOnConflict !== undefined &&
              (yield* dialect.replacesOnConflict(table));
            return affectedTables(table, op, bodies, tables.keys(), fks, replaces);
          })(),
        );
        events = [...affected].map((t) => ({ table: t, op: "update" }));
        this.#effects.set(key, events);
      }
      return events;
    });
  }

  async close(): Promise<void> {
    await this.#driver.close();
  }

  /** The served tables, discovered on first use; for change capture. */
  protected async tables(): Promise<Map<string, T>> {
    return (await this.#discover()).tables;
  }

  /**
   * Every user table's columns, served or not (composite keys, no primary key): change
   * capture records them all, so writes to any table made around edgecache are seen.
   */
  protected async capturedTables(): Promise<Map<string, T["columns"]>> {
    const { tables, skipped } = await this.#discover();
    return new Map([...[...tables].map(([name, t]) => [name, t.columns] as const), ...skipped]);
  }

  /** The served tables if discovery has run, else undefined; for callers that cannot wait. */
  protected knownTables(): Map<string, T> | undefined {
    return this.#tables;
  }

  /** Effects are read again: triggers changed (change capture installed its own). */
  protected forgetEffects(): void {
    this.#effects.clear();
  }

  /** Runs work and turns anything thrown into an EdgecacheError without SQL text. */
  protected async guard<R>(work: () => Promise<R>): Promise<R> {
    try {
      return await work();
    } catch (err) {
      throw this.#driver.error(err);
    }
  }

  writeFault(): string | undefined {
    return this.#writeFault;
  }

  /**
   * guard for a write, which also keeps why the last one failed when its storage refused it
   * (storageFault: a full disk, a read-only file) until one passes, for health. Any other
   * failure (a constraint, a bad value, a lock) leaves it: it says nothing of the storage.
   */
  async #writeGuard<R>(work: () => Promise<R>): Promise<R> {
    try {
      const result = await this.guard(work);
      // A write to no row (undefined) stored nothing, so proves no room.
      if (result !== undefined) this.#writeFault = undefined;
      return result;
    } catch (err) {
      this.#writeFault = storageFault(err) ?? this.#writeFault;
      throw err;
    }
  }

  #discover(): Promise<{
    schema: Schema;
    tables: Map<string, T>;
    skipped: Map<string, T["columns"]>;
  }> {
    if (!this.#discovered) {
      this.#discovered = (async () => {
        const { tables, skipped } = await this.#driver.read(this.#dialect.discover());
        if (skipped.size > 0) {
          console.warn(
            `[edgecache] [${this.name}] the data API does not serve tables without a single-column primary key (change capture follows them): ${[...skipped.keys()].join(", ")}`,
          );
        }
        const views = checkViews(this.name, this.#views, tables, [...skipped.keys()]);
        this.#tables = tables;
        const schema = { tables: new Map([...tables].map(([name, t]) => [name, t.info])), views };
        return { schema, tables, skipped };
      })();
      // A failed discovery (database down) is tried again by the next call.
      this.#discovered.catch(() => {
        this.#discovered = undefined;
      });
    }
    return this.#discovered;
  }

  #foreignKeysByParent(): Promise<Map<string, ForeignKey[]>> {
    if (!this.#foreignKeys) {
      this.#foreignKeys = (async () => {
        const { tables } = await this.#discover();
        return this.#driver.read(this.#dialect.foreignKeys(tables));
      })();
      this.#foreignKeys.catch(() => {
        this.#foreignKeys = undefined;
      });
    }
    return this.#foreignKeys;
  }

  async #table(name: string): Promise<T> {
    const table = (await this.#discover()).tables.get(name);
    if (!table) throw new EdgecacheError("E_NOT_FOUND", this.name, `unknown table "${name}"`);
    return table;
  }

  async #writable(name: string): Promise<T> {
    if (this.#readonly) {
      throw new EdgecacheError("E_METHOD_NOT_ALLOWED", this.name, "the source is read-only");
    }
    return this.#table(name);
  }

  /** The SELECT of a list query: filters, total order, window. */
  #select(table: T, query: ListQuery): Statement {
    const dialect = this.#dialect;
    const params: unknown[] = [];
    const param = (value: unknown) => {
      params.push(dialect.bind(value));
      return dialect.placeholder(params.length);
    };
    const where = query.filters.map((filter) => dialect.filter(table, filter, param));
    if (!isWindowNumber(query.limit)) {
      throw badQuery(table.source, "limit must be a non-negative integer");
    }
    if (!isWindowNumber(query.offset)) {
      throw badQuery(table.source, "offset must be a non-negative integer");
    }
    const sql =
      `SELECT ${dialect.selectList(table)} FROM ${dialect.tableName(table)}` +
      (where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "") +
      ` ORDER BY ${dialect.orderBy(table, query.sort)}` +
      ` ${dialect.window(param(query.limit), param(query.offset))}`;
    return { sql, params };
  }

  /** The row of `key`; `lock` in a write that will change it. */
  #byId(table: T, key: unknown, lock = false): Statement {
    const d = this.#dialect;
    return {
      sql: `SELECT ${d.selectList(table)} FROM ${d.tableName(table)} WHERE ${d.keyMatch(table, key, 1)}${lock ? d.lock : ""}`,
      params: [d.bind(key)],
    };
  }

  /**
   * Shared by update and replace: the old row, then the UPDATE, in one transaction. A
   * PATCH sets the given columns; a PUT (`whole`) every non-key column, missing ones to
   * their default or NULL.
   */
  async #write(
    name: string,
    id: string | number,
    values: Row,
    options: WriteOptions | undefined,
    whole: boolean,
  ): Promise<WriteResult | undefined> {
    const table = await this.#writable(name);
    const d = this.#dialect;
    const given = withoutKey(table, id, coerceBody(table, values));
    d.checkValues(table, given);
    if (whole) requireValues(table, given);
    const params: unknown[] = [];
    const assignments: string[] = [];
    for (const column of table.columns.values()) {
      if (given.has(column.name)) {
        params.push(d.bind(given.get(column.name)));
        assignments.push(`${quote(column.name)} = ${d.placeholder(params.length, column)}`);
      } else if (whole && column !== table.pk) {
        // requireValues said a column without a default is nullable.
        assignments.push(`${quote(column.name)} = ${d.resetValue(column)}`);
      }
    }
    const key = coerceId(table, id);
    if (key === undefined) return undefined;
    const update: Statement = {
      sql:
        `UPDATE ${d.tableName(table)} SET ${assignments.join(", ")}` +
        ` WHERE ${d.keyMatch(table, key, params.length + 1)} RETURNING ${d.selectList(table)}`,
      params: [...params, d.bind(key)],
    };
    const driver = this.#driver;
    if (isTransactional(driver)) {
      const steps = this.#updateSteps(
        table,
        key,
        assignments.length > 0 ? update : undefined,
        given,
      );
      return driver.transaction(steps, options);
    }
    // Old row and UPDATE in one batch: D1 runs a batch as one transaction.
    d.refuseConverted(table, given);
    if (assignments.length === 0) {
      const [old] = await driver.read(rowsOf(this.#byId(table, key)));
      return old ? { old, row: old } : undefined;
    }
    const [before, after] = await driver.batch([this.#byId(table, key), update], options);
    const old = before?.[0];
    const row = after?.[0];
    return old && row ? { old, row } : undefined;
  }

  /** An insert in a transaction: a row stored otherwise than given rolls it back. */
  *#insertSteps(table: T, insert: Statement, given: Map<string, unknown>): Steps<Row> {
    const [row] = yield insert;
    this.#dialect.checkStored(table, given, row!);
    return row!;
  }

  /** The old row locked, then the UPDATE (none for an empty PATCH). */
  *#updateSteps(
    table: T,
    key: unknown,
    update: Statement | undefined,
    given: Map<string, unknown>,
  ): Steps<WriteResult | undefined> {
    const [old] = yield this.#byId(table, key, true);
    if (!old) return undefined;
    if (!update) return { old, row: old };
    const [row] = yield update;
    this.#dialect.checkStored(table, given, row!);
    return { old, row: row! };
  }

  /**
   * Lock the row, then read the rows foreign key actions will change, before the delete in
   * the same transaction: the cache must hear of them as of the row. Each is read again
   * after the delete: gone (CASCADE) or changed (SET NULL, SET DEFAULT).
   */
  *#deleteSteps(
    meta: T,
    key: unknown,
    remove: Statement,
    tables: Map<string, T>,
    fks: Map<string, ForeignKey[]>,
  ): Steps<DeleteResult | undefined> {
    const [locked] = yield this.#byId(meta, key, true);
    if (!locked) return undefined;
    const affected = yield* referencing(
      this.#dialect,
      tables,
      fks,
      meta.info.name,
      locked,
      new Set(),
    );
    // RETURNING on DELETE yields the row as it was: the old row in one atomic statement.
    const [old] = yield remove;
    if (!old) return undefined;
    const cascaded: WriteEvent[] = [];
    for (const { table: child, row } of affected) {
      const childMeta = tables.get(child)!;
      const [now] = yield this.#byId(childMeta, row[childMeta.pk.name]);
      cascaded.push(
        now
          ? { table: child, op: "update", old: row, new: now }
          : { table: child, op: "delete", old: row },
      );
    }
    return { old, cascaded };
  }

  /**
   * A delete without an interactive transaction: the rows foreign key actions will change,
   * read before the delete in the same batch (one transaction, so nothing commits in
   * between), then the delete, whose RETURNING yields the row as it was.
   */
  async #batchDelete(
    driver: BatchDriver,
    meta: T,
    key: unknown,
    remove: Statement,
    tables: Map<string, T>,
    fks: Map<string, ForeignKey[]>,
    options: WriteOptions | undefined,
  ): Promise<DeleteResult | undefined> {
    const match = this.#dialect.keyMatch(meta, key, 1);
    const acted = actedOnByDelete(this.#dialect, tables, fks, meta, match);
    const bound = (statement: Statement) => ({ ...statement, params: [this.#dialect.bind(key)] });
    const results = await driver.batch([...acted.map((a) => bound(a.statement)), remove], options);
    const old = results.at(-1)?.[0];
    if (!old) return undefined;
    return { old, cascaded: cascadedOf(tables, acted, results) };
  }

  /** Adds each join's child rows to the base rows, as arrays ordered by the child's key. */
  async #attachJoins(view: ViewInfo, rows: Row[]): Promise<Row[]> {
    const d = this.#dialect;
    for (const join of view.joins) {
      const child = await this.#table(join.table);
      const column = child.columns.get(join.foreignKey);
      const children: Row[] = [];
      for (const chunk of joinKeyChunks(rows, join, this.#driver.maxInParams)) {
        const sql =
          `SELECT ${d.selectList(child)} FROM ${d.tableName(child)} WHERE ${quote(join.foreignKey)}` +
          ` IN (${chunk.map((_, j) => d.placeholder(j + 1, column)).join(", ")})` +
          ` ORDER BY ${d.keyOrder(child)}`;
        const params = chunk.map((v) => d.bind(v));
        children.push(...(await this.#driver.read(rowsOf({ sql, params }))));
      }
      attachChildren(rows, join, children);
    }
    return rows;
  }
}

/**
 * The one SQL source: `dialect` says what the SQL looks like, `driver` runs it.
 *
 * @example
 * ```ts
 * // d1.ts: SQLite's dialect over D1's batches
 * const source = sqlSource(sqliteDialect("d1", INTERNAL), new D1Driver(env.DB), {
 *   name: "d1",
 *   views: demoViews,
 * });
 * ```
 */
export function sqlSource<C extends SqlColumn, T extends ServedTable<C>>(
  dialect: Dialect<C, T>,
  driver: Driver,
  options: SqlSourceOptions,
): Source {
  return new SqlSource(dialect, driver, options);
}
