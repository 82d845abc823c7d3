import type { Row } from "../../core/data/query.ts";
import type { EdgecacheError } from "../../core/errors.ts";
import { Turns } from "../../core/turns.ts";
import {
  type CatalogColumn,
  catalogColumns,
  changedRows,
  type SqlResult,
  type SqlRow,
} from "../client.ts";
import type { Steps } from "../dialect.ts";
import { runStepsAsync, type TransactionDriver, type WriteOptions } from "../driver.ts";
import { API_SETTING } from "./change-table.ts";
import { toEdgecacheError } from "./driver.ts";

/** Small IN lists keep statements cheap to plan, as for postgres.js. */
const MAX_IN_PARAMS = 500;

interface PgResult {
  rows: SqlRow[];
  rowCount: number | null;
  command: string;
}

/** What runs a statement: a pool, a client, or a client the pool lent. */
interface PgQueryable {
  query(sql: string, params?: unknown[]): Promise<PgResult | PgResult[]>;
}

/** A node-postgres (`pg`) `Pool` or `Client` as far as edgecache uses it; no import needed. */
export interface NodePostgresLike extends PgQueryable {
  connect(): Promise<unknown>;
}

interface PgPoolClient extends PgQueryable {
  release(): void;
}

/**
 * node-postgres (`pg`) as a driver: statements on the application's `Pool` or `Client`
 * (nothing to open or close), writes in a transaction on one connection (a `Pool` lends
 * one; a `Client` is one, so reads and writes through the driver take turns on it), with
 * change capture's mark set inside it, and the server's errors mapped as for postgres.js.
 */
export class NodePostgresDriver implements TransactionDriver {
  readonly maxInParams = MAX_IN_PARAMS;
  readonly dialect = "postgres";
  readonly kind = "node-postgres";
  readonly #pg: NodePostgresLike;
  /** A `Pool` counts its clients; a `Client` is one connection. */
  readonly #pool: boolean;
  /** Statements on one connection take turns. */
  readonly #turns = new Turns();

  constructor(pg: NodePostgresLike) {
    this.#pg = pg;
    this.#pool = "totalCount" in pg;
  }

  async run(sql: string, params: readonly unknown[]): Promise<SqlResult> {
    // Without parameters pg sends the text as is: several statements answer a result each.
    const all = [await this.#pg.query(sql, [...params])].flat();
    const rowsAffected = all.reduce((n, r) => n + changedRows(r.command, r.rowCount), 0);
    return { rows: all.at(-1)!.rows, rowsAffected };
  }

  columns(table: string): Promise<CatalogColumn[]> {
    return catalogColumns(this, table);
  }

  read<T>(steps: Steps<T>): Promise<T> {
    const read = () => runStepsAsync(steps, (s) => rowsOf(this.#pg, s.sql, s.params));
    return this.#pool ? read() : this.#turns.run(read);
  }

  async transaction<T>(steps: Steps<T>, options?: WriteOptions): Promise<T> {
    const write = async (on: PgQueryable) => {
      await on.query("BEGIN");
      try {
        if (options?.capture !== undefined) {
          await on.query(`SELECT set_config('${API_SETTING}', $1, true)`, [options.capture]);
        }
        const result = await runStepsAsync(steps, (s) => rowsOf(on, s.sql, s.params));
        await on.query("COMMIT");
        return result;
      } catch (err) {
        await on.query("ROLLBACK").catch(() => {});
        throw err;
      }
    };
    if (!this.#pool) return this.#turns.run(() => write(this.#pg));
    const lent = (await this.#pg.connect()) as PgPoolClient;
    try {
      return await write(lent);
    } finally {
      lent.release();
    }
  }

  error(cause: unknown): EdgecacheError {
    return toEdgecacheError(cause);
  }

  async close(): Promise<void> {
    // The pool or client is the application's: it stays open.
  }
}

async function rowsOf(on: PgQueryable, sql: string, params: unknown[]): Promise<Row[]> {
  const all = [await on.query(sql, params)].flat();
  return all.at(-1)!.rows as Row[];
}
