import type { Filter, Row, SortKey } from "../core/data/query.ts";
import type { ForeignKey, ForeignKeyAction, ServedTable, SqlColumn } from "./schema.ts";

/** One SQL statement and its bound values, in the dialect's placeholders. */
export interface Statement {
  sql: string;
  params: unknown[];
}

/**
 * Work on the database written once for every driver: a generator that yields each
 * statement and is handed back its rows. better-sqlite3 runs it synchronously (inside its
 * transaction function), postgres.js and D1 await each statement.
 */
export type Steps<T> = Generator<Statement, T, Row[]>;

/** Runs one statement as steps. */
export function* rowsOf(statement: Statement): Steps<Row[]> {
  return yield statement;
}

/**
 * What the catalog said: the served tables, and the columns of the user tables the data API
 * cannot address (no single-column primary key), which change capture records all the same.
 */
export interface Discovered<T extends ServedTable> {
  tables: Map<string, T>;
  skipped: Map<string, T["columns"]>;
}

/**
 * What an SQL database's text looks like, whatever the driver: placeholders, how a column
 * reads and compares, and how the catalog is read. SQLite's serves better-sqlite3 and D1
 * (`database/sqlite/dialect.ts`), PostgreSQL's serves postgres.js (`database/postgres/dialect.ts`); every
 * statement is assembled from these pieces by `sql-source.ts`.
 */
export interface Dialect<
  C extends SqlColumn = SqlColumn,
  T extends ServedTable<C> = ServedTable<C>,
> {
  /** The n-th bound parameter (from 1), cast for `column` where the dialect must say its type. */
  placeholder(n: number, column?: C): string;
  /** A value as the driver binds it. */
  bind(value: unknown): unknown;
  /** The table in SQL: quoted, and qualified where the dialect has schemas. */
  tableName(table: T): string;
  /** The select list that reads every column in its data API form. */
  selectList(table: T): string;
  /** The key column equal to parameter n, which holds `key`. */
  keyMatch(table: T, key: unknown, n: number): string;
  /** A filter's condition; `param` binds a value and returns its placeholder. */
  filter(table: T, filter: Filter, param: (value: unknown) => string): string;
  /** The ORDER BY terms of a list's sort (ending on the key). */
  orderBy(table: T, sort: SortKey[]): string;
  /** LIMIT and OFFSET, given their placeholders. */
  window(limit: string, offset: string): string;
  /** The ORDER BY of a join's child rows: by the child's key. */
  keyOrder(table: T): string;
  /** Appended to a write's reads of rows it will change: ` FOR UPDATE` where rows are locked. */
  readonly lock: string;
  /** A PUT's value for a column its body leaves out: the default, else NULL. */
  resetValue(column: C): string;
  /** Whether the database assigns the primary key when an insert leaves it out. */
  assignsKey(table: T): boolean;
  /** Refuses values the database cannot hold as given, before any SQL runs. */
  checkValues(table: T, given: Map<string, unknown>): void;
  /** After a write, in its transaction: refuses a row stored otherwise than given (a throw rolls back). */
  checkStored(table: T, given: Map<string, unknown>, row: Row): void;
  /** The same, predicted before a write that has no transaction to roll back (D1). */
  refuseConverted(table: T, given: Map<string, unknown>): void;

  /** Reads the catalog: the tables with a single-column primary key, and the rest's columns. */
  discover(): Steps<Discovered<T>>;
  /** Single-column foreign keys between served tables, by parent table. */
  foreignKeys(tables: Map<string, T>): Steps<Map<string, ForeignKey[]>>;
  /**
   * Every foreign key among the schema's user tables, served or not, of any width, with its
   * actions: a change to a parent row may change child rows (the query caches' cascades).
   */
  foreignKeyActions(): Steps<ForeignKeyAction[]>;
  /** The text of what `table`'s triggers run (edgecache's capture triggers aside). */
  triggerBodies(table: string): Steps<string[]>;
  /** Whether an insert or update of `table` may delete conflicting rows (SQLite's ON CONFLICT REPLACE). */
  replacesOnConflict?(table: string): Steps<boolean>;
}
