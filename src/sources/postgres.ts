import type { CaptureFeed, CaptureStatus, CapturingSource } from "../core/capture-feed.ts";
import type { ViewInfo } from "../core/data/query.ts";
import { badOption, checkOptionNames, type OptionNames } from "../core/errors.ts";
import { type CatalogColumn, isCollation } from "../database/client.ts";
import { clientKind } from "../database/client-kind.ts";
import {
  CAPTURED_TABLES_SQL,
  forgetPostgresCaptured,
  installPostgresCapture,
  type PgCapturePort,
  postgresCaptureFeed,
  postgresCaptureStatus,
  postgresJsCapturePort,
  uninstallPostgresCapture,
} from "../database/postgres/change-table.ts";
import {
  connectPostgres,
  DEFAULT_MAX_CONNECTIONS,
  loadPostgres,
} from "../database/postgres/connect.ts";
import {
  type PgColumn,
  type PgTable,
  postgresDialect,
  textCollationSql,
  uniqueColumnSql,
} from "../database/postgres/dialect.ts";
import { PostgresDriver, type Sql } from "../database/postgres/driver.ts";
import { nodePostgresCapturePort } from "../database/postgres/node-postgres-capture.ts";
import {
  NodePostgresDriver,
  type NodePostgresLike,
} from "../database/postgres/node-postgres-driver.ts";
import { quote } from "../database/schema.ts";
import type { Source } from "./source.ts";
import { validateViewsOption } from "./sql.ts";
import { SqlSource } from "./sql-source.ts";

const COMPONENT = "postgres";

/** The options PostgresSourceOptions | NodePostgresSourceOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<PostgresSourceOptions | NodePostgresSourceOptions> = {
  client: true,
  max: true,
  schema: true,
  sql: true,
  url: true,
  views: true,
};

interface PostgresSourceCommon {
  views?: ViewInfo[];
  /** The PostgreSQL schema whose tables are served ("public"). */
  schema?: string;
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
) &
  PostgresSourceCommon;

/**
 * A node-postgres (`pg`) `Pool` or `Client` the caller owns; close() leaves it open. Change
 * capture's LISTEN and the consumer's lock take two connections of their own, made by the
 * caller's `pg` with the client's settings.
 */
export type NodePostgresSourceOptions = { client: NodePostgresLike } & PostgresSourceCommon;

/**
 * A Source over PostgreSQL, through postgres.js (an optional peer dependency: `npm
 * install postgres`), or on a node-postgres `Pool` or `Client` the caller gives
 * (`{ client }`). Tables of one schema are discovered, views are declared. Text
 * compares by code point (`COLLATE "C"`) and NULLs sort first in ascending order, as the
 * invalidation planner assumes; dates are read as fixed-width ISO text (see PgColumn).
 *
 * @example
 * ```ts
 * const source = await postgresSource({ url: "postgres://app@127.0.0.1:5432/app" });
 * const schema = await source.schema();
 * ```
 */
export async function postgresSource(
  options: PostgresSourceOptions | NodePostgresSourceOptions,
): Promise<Source & CapturingSource> {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  checkOptionNames(COMPONENT, options, OPTIONS);
  const views = validateViewsOption(COMPONENT, options.views);
  const { schema = "public" } = options;
  if (typeof schema !== "string" || schema === "") {
    badOption(COMPONENT, "schema", "a non-empty string", schema);
  }
  if ("client" in options) {
    if (clientKind(options.client) !== "node-postgres") {
      badOption(COMPONENT, "client", "a node-postgres Pool or Client", options.client);
    }
    const client = options.client;
    const driver = new NodePostgresDriver(client);
    return new PostgresSource(
      { driver, schema, capturePort: () => nodePostgresCapturePort(client) },
      views,
    );
  }
  if ("sql" in options) {
    if (typeof options.sql !== "function" || typeof options.sql.unsafe !== "function") {
      badOption(COMPONENT, "sql", "a postgres.js client", options.sql);
    }
    const postgres = await loadPostgres();
    return new PostgresSource(
      postgresJsDriving(new PostgresDriver(options.sql, { owned: false, schema, postgres })),
      views,
    );
  }
  const { url, max = DEFAULT_MAX_CONNECTIONS } = options;
  if (typeof url !== "string" || !/^postgres(ql)?:\/\//.test(url)) {
    badOption(COMPONENT, "url", "a postgres:// URL", url);
  }
  if (!Number.isSafeInteger(max) || max < 1) badOption(COMPONENT, "max", "an integer >= 1", max);
  const sql = await connectPostgres(url, max);
  const driver = new PostgresDriver(sql, { owned: true, schema, postgres: await loadPostgres() });
  return new PostgresSource(postgresJsDriving(driver), views);
}

function postgresJsDriving(driver: PostgresDriver): PostgresDriving {
  return {
    driver,
    schema: driver.schema,
    capturePort: () => postgresJsCapturePort(driver.sql, () => driver.connectOne()),
  };
}

/** A source's driver, postgres.js's or node-postgres's, and the capture feed's client on it. */
interface PostgresDriving {
  driver: PostgresDriver | NodePostgresDriver;
  schema: string;
  capturePort(): PgCapturePort;
}

class PostgresSource extends SqlSource<PgColumn, PgTable> implements CapturingSource {
  readonly #driver: PostgresDriver | NodePostgresDriver;
  readonly #schema: string;
  readonly #port: () => PgCapturePort;

  constructor({ driver, schema, capturePort }: PostgresDriving, views: ViewInfo[]) {
    super(postgresDialect(schema), driver, { name: COMPONENT, views });
    this.#driver = driver;
    this.#schema = schema;
    this.#port = capturePort;
  }

  async captureStatus(): Promise<CaptureStatus> {
    return this.guard(async () => {
      const tables = await this.capturedTables();
      return postgresCaptureStatus(this.#driver, this.#schema, [...tables.keys()]);
    });
  }

  async installCapture(): Promise<CaptureStatus> {
    return this.guard(async () => {
      // Every user table, served or not: a link table's writes change what queries read.
      const tables = await this.capturedTables();
      const schema = this.#schema;
      const list = [...tables].map(([name, columns]) => ({
        name,
        qualified: `${quote(schema)}.${quote(name)}`,
        columns: [...columns.values()],
      }));
      await installPostgresCapture(this.#driver, schema, list);
      this.forgetEffects();
      return postgresCaptureStatus(this.#driver, schema, [...tables.keys()]);
    });
  }

  async uninstallCapture(): Promise<void> {
    await this.guard(() => uninstallPostgresCapture(this.#driver, this.#schema));
  }

  async recorded(mark: string): Promise<void> {
    await forgetPostgresCaptured(this.#driver, this.#schema, mark).catch(() => {});
  }

  captureFeed(): CaptureFeed {
    // The feed names a table's columns once discovery has run; it starts it here.
    void this.tables().catch(() => {});
    return postgresCaptureFeed(this.#port(), this.#schema, (table) => {
      const meta = this.knownTables()?.get(table);
      return meta ? [...meta.columns.keys()] : undefined;
    });
  }
}

/** Every user table's columns with their declared types, and whether each is a one-column primary key. */
const CATALOG_SQL = `SELECT c.table_schema AS schema, c.table_name AS table, c.column_name AS name,
    c.data_type AS type, ${textCollationSql("c.")} AS collation,
    EXISTS (SELECT 1 FROM pg_index i
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = to_regclass(format('%I.%I', c.table_schema, c.table_name))
               AND i.indisprimary AND array_length(i.indkey::int2[], 1) = 1
               AND a.attname = c.column_name) AS pk, ${uniqueColumnSql("c.")} AS uniq
  FROM information_schema.columns c
  JOIN information_schema.tables t
    ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
 WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema')
   AND c.table_schema NOT LIKE 'edgecache%'
 ORDER BY c.table_schema, c.table_name, c.ordinal_position`;

/**
 * The user tables of the database at `url` (`schema.table` outside `public`), each with its
 * one-column primary key and its columns' declared types (see readCatalog).
 */
export async function postgresCatalog(
  url: string,
): Promise<Map<string, { primaryKey?: string; columns: CatalogColumn[]; captured: boolean }>> {
  const sql = await connectPostgres(url, 1);
  try {
    const captured = new Set(
      (await sql.unsafe(CAPTURED_TABLES_SQL)).map((r) =>
        r.schema === "public" ? String(r.table) : `${r.schema}.${r.table}`,
      ),
    );
    const tables = new Map<
      string,
      { primaryKey?: string; columns: CatalogColumn[]; captured: boolean }
    >();
    for (const r of await sql.unsafe(CATALOG_SQL)) {
      const name = r.schema === "public" ? String(r.table) : `${r.schema}.${r.table}`;
      const table = tables.get(name) ?? { columns: [], captured: captured.has(name) };
      tables.set(name, table);
      table.columns.push({
        name: String(r.name),
        type: String(r.type),
        ...(isCollation(r.collation) && { collation: r.collation }),
        ...(r.uniq === true && { unique: true as const }),
      });
      if (r.pk === true) table.primaryKey = String(r.name);
    }
    return tables;
  } finally {
    await sql.end({ timeout: 1 });
  }
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
