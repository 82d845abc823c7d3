import { badOption, checkOptionNames, type OptionNames } from "../../core/errors.ts";
import { postgresDrainFeed } from "../../database/postgres/client-capture.ts";
import type { CaptureEnv, DrainedTable } from "./capture-drain.ts";
import { ChangeLogObject } from "./change-log-object.ts";
import { captureSchemaVariable } from "./variables.ts";

const C = "change-log";

/** The options PostgresChangeLogOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<PostgresChangeLogOptions> = {
  binding: true,
};

/** Connections the drain's client opens: it runs one statement at a time. */
const DRAIN_CONNECTIONS = 1;
/** Seconds the drain waits for a connection before the pass fails (and is tried again). */
const CONNECT_TIMEOUT_S = 5;

/** postgres.js's default export, as far as the drain uses it (no type of its own imported). */
export type PostgresJs = (
  url: string,
  options: Record<string, unknown>,
) => {
  unsafe(text: string, params?: never[]): PromiseLike<Record<string, unknown>[]>;
};

export interface PostgresChangeLogOptions {
  /**
   * The env entry the drain connects with: a Hyperdrive binding (its `connectionString`) or
   * a connection string (a secret). Default `HYPERDRIVE`.
   */
  binding?: string;
}

/** The variables the PostgreSQL drain reads, besides the drain's own (CaptureEnv). */
export interface PostgresCaptureEnv extends CaptureEnv {
  /** The schema whose change table is drained (`npx edgecache capture install` there). Default `public`. */
  EDGECACHE_CAPTURE_SCHEMA?: string;
}

/**
 * The change log's Durable Object class for a Worker whose query caches read PostgreSQL
 * through postgres.js (over Hyperdrive, or a connection string): its log's object drains the
 * PostgreSQL change table of `EDGECACHE_CAPTURE_SCHEMA` (see capture-drain.ts), on its alarm
 * every `EDGECACHE_CAPTURE_MS` and whenever a cache's mutation or `catchUp()` asks, as it
 * drains D1's. An isolate holds no connection between requests to LISTEN on, so nothing is
 * pushed: a write made around the caches is seen within the interval, or at once after
 * `catchUp()`. The object must be the change table's only consumer (no Node process
 * following the same schema). `postgres` is the application's postgres.js, passed in so that
 * the Worker bundles the copy it already has.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import { postgresChangeLogObject } from "edgecache/cloudflare";
 * export const ChangeLogObject = postgresChangeLogObject(postgres);
 * ```
 */
export function postgresChangeLogObject(
  postgres: PostgresJs,
  options: PostgresChangeLogOptions = {},
): typeof ChangeLogObject {
  if (typeof postgres !== "function") badOption(C, "postgres", "postgres.js's postgres", postgres);
  checkOptionNames(C, options, OPTIONS);
  const binding = options.binding ?? "HYPERDRIVE";
  if (typeof binding !== "string" || binding === "") {
    badOption(C, "binding", "the name of a Hyperdrive binding or variable", binding);
  }
  const table: DrainedTable = (env) => {
    const entry = (env as Record<string, unknown>)[binding];
    const url =
      typeof entry === "string"
        ? entry
        : (entry as { connectionString?: unknown } | undefined)?.connectionString;
    if (typeof url !== "string" || url === "") return undefined;
    const schema = captureSchemaVariable(env as PostgresCaptureEnv);
    // Made once per object, connected on first use: a Durable Object's connection serves
    // every request and alarm it runs.
    const sql = postgres(url, {
      max: DRAIN_CONNECTIONS,
      connect_timeout: CONNECT_TIMEOUT_S,
      fetch_types: false,
      onnotice: () => {},
    });
    const query = async (text: string, params: readonly unknown[] = []) =>
      await sql.unsafe(text, params as never[]);
    return { feed: postgresDrainFeed(query, schema), database: "PostgreSQL" };
  };
  return class PostgresChangeLogObject extends ChangeLogObject {
    constructor(...[state, env]: ConstructorParameters<typeof ChangeLogObject>) {
      super(state, env, table);
    }
  };
}
