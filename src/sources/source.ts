import type { ListQuery, Resource, Row, Schema } from "../core/data/query.ts";
import type { WriteEvent } from "../core/deps/planner.ts";
import type { WriteOptions } from "../database/driver.ts";

export type { WriteOptions };

/**
 * A database behind the data API. Values are always bound parameters. Errors are
 * EdgecacheErrors: E_CONFLICT for constraint violations, E_BAD_BODY for values the
 * database refuses, E_SOURCE_UNAVAILABLE otherwise; never a raw driver error.
 *
 * Writes return the row before and after, which the invalidation planner needs.
 */
export interface Source {
  readonly name: string;
  /** Tables discovered from the database plus the declared views. */
  schema(): Promise<Schema>;
  /** Rows of a list query; for a view each base row carries its joined arrays. */
  list(resource: Resource, query: ListQuery): Promise<Row[]>;
  /** One row by primary key (with joined arrays for a view), or undefined. */
  get(resource: Resource, id: string | number): Promise<Row | undefined>;
  insert(table: string, values: Row, options?: WriteOptions): Promise<Row>;
  /** Updates the given columns; undefined if no such row. */
  update(
    table: string,
    id: string | number,
    values: Row,
    options?: WriteOptions,
  ): Promise<WriteResult | undefined>;
  /** Replaces every non-key column (missing ones become NULL or their default). */
  replace(
    table: string,
    id: string | number,
    values: Row,
    options?: WriteOptions,
  ): Promise<WriteResult | undefined>;
  /**
   * Deletes; resolves with the deleted row and the changes the database made to other rows
   * because of it (ON DELETE CASCADE / SET NULL), or undefined if no such row.
   */
  delete(
    table: string,
    id: string | number,
    options?: WriteOptions,
  ): Promise<DeleteResult | undefined>;
  /**
   * What a write to `table` may change beyond the rows it reports: tables touched by
   * triggers, by ON UPDATE actions, by REPLACE conflict resolution. Events without rows,
   * which the planner resolves at table level.
   */
  effects(table: string, op: WriteEvent["op"]): Promise<WriteEvent[]>;
  close(): Promise<void>;
}

export interface WriteResult {
  old: Row;
  row: Row;
}

export interface DeleteResult {
  old: Row;
  /** Rows of other tables the delete removed or changed through foreign key actions. */
  cascaded: WriteEvent[];
}
