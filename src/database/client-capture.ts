/**
 * Change capture behind an application's client, as the SQL room tells it whatever the
 * database: the installations `npx edgecache capture install` left in it (a change table
 * and the tables whose triggers feed it), each table's columns and primary key, the
 * database's foreign keys with their actions, and each installation's change table as a
 * feed. What follows the feeds into a cache (the query caches' `QueryCapture`, the data
 * API's follower) is built on this; `clientCapture` in drivers.ts gives a client's.
 */
import type { CaptureFeed } from "../core/capture-feed.ts";
import type { ForeignKeyAction } from "./schema.ts";

/** A captured table as the planner needs it. */
export interface CapturedShape {
  /** Its primary key when it is one column; otherwise changes fall back to the table. */
  primaryKey?: string;
  /** Its primary key when it is several columns (a link table's): they name one row. */
  keys?: readonly (readonly string[])[];
  columns: readonly string[];
}

/** One capture installation: a change table and the tables whose triggers feed it. */
export interface CaptureInstallation {
  id: string;
  /**
   * Its triggers record REALs with every digit (SQLite, PostgreSQL), or do so for numbers
   * of a bounded size (D1: see EXACT_D1_REALS in the query cache's capture).
   */
  exactReals?: boolean | "bounded";
  /**
   * False when its triggers miss the rows a REPLACE deletes (SQLite and D1, installed by an
   * earlier version): a write through a query cache then empties its tables as well.
   */
  replaces?: boolean;
  /** Its tables by name (`schema.table` outside PostgreSQL's `public`). */
  tables: Map<string, CapturedShape>;
  /**
   * Its change table as a feed consumed in this process, events named as `tables` names
   * them; `shapes` gives a table's columns as last read. Absent where another process
   * drains the change table (D1: the change log's Durable Object).
   */
  feed?(shapes: (table: string) => CapturedShape | undefined): CaptureFeed;
}

/** What a client tells of capture. */
export interface ClientCapture {
  installations(): Promise<CaptureInstallation[]>;
  /**
   * The database's foreign keys with their actions, tables named as in `tables`; those of
   * the PostgreSQL `schemas` given (`public` for a bare name).
   */
  foreignKeys(schemas: readonly string[]): Promise<ForeignKeyAction[]>;
  /**
   * Read the catalog again only when the capture is used, after this many ms, instead of on
   * a timer (D1 on Workers: no timer outlives a request, and D1 bills rows read).
   */
  lazyMs?: number;
  /**
   * The change table is drained elsewhere, into the cache's change log, which orders the
   * records itself (D1: the log's object drains it, and marks what it drains ordered when
   * no data API write intervened).
   */
  drainedByLog?: boolean;
  /**
   * Given when the change table's changes are applied in an order patches may follow
   * (SQLite writes one transaction at a time; see PostgreSQL's) and this process follows
   * it itself: whether one waits there (one of `tables` when given), not counting those
   * `applied` says are applied already (the installation's id, then the change), whose
   * rows only wait to be deleted.
   */
  pendingInOrder?: (
    tables?: readonly string[],
    applied?: (installation: string, change: { seq: number; at: number }) => boolean,
  ) => Promise<boolean>;
  /**
   * Beside pendingInOrder: whether nothing waits, told by capture's next look at the
   * database instead of a statement of its own (see CaptureFeed.settled), so it may take a
   * while; false where it cannot tell. Absent where capture makes no such looks.
   */
  settledInOrder?: () => Promise<boolean>;
  /** Statements run on a connection of capture's own (SQLite: see ownConnection). */
  statements?(): number;
  /** Closes what capture opened itself. */
  close?(): Promise<void>;
}
