import type { Cache as DrizzleCacheContract } from "drizzle-orm/cache/core";
import type { CacheConfig } from "drizzle-orm/cache/core/types";
import type { SqlColumnKind, SqlDialect, SqlTable } from "../database/analysis/shapes.ts";
import { sqlTypeKind } from "../query-cache/columns.ts";
import type { EdgecacheDrizzleCache } from "./cache.ts";
import { tableName } from "./tables.ts";

// Drizzle's symbols are registered globally (`Symbol.for`): read without importing drizzle-orm.
const ENTITY_KIND = Symbol.for("drizzle:entityKind");
const COLUMNS = Symbol.for("drizzle:Columns");
const IS_ALIAS = Symbol.for("drizzle:IsAlias");
const IS_TABLE = Symbol.for("drizzle:IsDrizzleTable");
const EXTRA_CONFIG = Symbol.for("drizzle:ExtraConfigBuilder");
const EXTRA_COLUMNS = Symbol.for("drizzle:ExtraConfigColumns");

/** The SQL dialect of a Drizzle database, from its dialect's class; undefined if neither. */
export function dialectOf(db: object): SqlDialect | undefined {
  let cls = (db as { dialect?: object }).dialect?.constructor as
    | Record<symbol, unknown>
    | undefined;
  while (cls) {
    if (cls[ENTITY_KIND] === "PgDialect") return "postgres";
    if (cls[ENTITY_KIND] === "SQLiteDialect") return "sqlite";
    cls = Object.getPrototypeOf(cls);
  }
  return undefined;
}

/**
 * Hands a prepared select's SQL and run-time parameters to the cache's `put`, so a stored
 * result registers what it depends on (rows, predicate, window) and not only its tables.
 * Drizzle calls `queryWithCache(sql, params, query)` on the prepared query, which reads its
 * cache from `this.cache`: each run gets a cache of its own that carries the query. The
 * tables of the selected columns teach the cache their primary keys and column kinds.
 * Drizzle's callback that runs the statement goes too, for reloads (`followCapture`).
 */
export function shapeSelect(
  prepared: Record<string, unknown>,
  fields: unknown,
  cache: EdgecacheDrizzleCache,
  dialect: SqlDialect,
): void {
  learnTables(fields, cache, dialect);
  // A query builder's select: Drizzle maps its rows by position to `fields`, one column each.
  const columns = Array.isArray(fields) ? fields.length : 0;
  let running = 0;
  const run = prepared.run;
  if (typeof run === "function") {
    prepared.run = function (this: unknown, ...args: unknown[]) {
      running++;
      try {
        return run.apply(this, args);
      } finally {
        running--;
      }
    };
  }
  const queryWithCache = prepared.queryWithCache;
  if (typeof queryWithCache !== "function") return;
  prepared.queryWithCache = function (
    this: Record<string, unknown>,
    sql: string,
    params: unknown[],
    ...rest: unknown[]
  ) {
    // Inside a transaction the prepared query's cache is the transaction's scope: left alone.
    if (this.cache !== cache || typeof sql !== "string" || !Array.isArray(params)) {
      return queryWithCache.call(this, sql, params, ...rest);
    }
    // Drizzle's callback that runs the statement on the driver: a reload runs it again.
    const run = typeof rest[0] === "function" ? (rest[0] as () => Promise<unknown>) : undefined;
    // What Drizzle would hand `put` (see its queryWithCache), known here before `get`.
    const cacheConfig = this.cacheConfig as
      | { config?: CacheConfig; autoInvalidate?: boolean }
      | undefined;
    const query = {
      sql,
      params,
      dialect,
      ...(run && { run }),
      ...(columns > 0 && { columns }),
      ...(cacheConfig?.config && { config: cacheConfig.config }),
      ...(cacheConfig?.autoInvalidate !== undefined && {
        autoInvalidate: cacheConfig.autoInvalidate,
      }),
    };
    const read: DrizzleCacheContract = {
      strategy: () => cache.strategy(),
      get: (key, tables, isTag) => cache.getSelect(key, tables, isTag, query),
      put: (key, response, tables, isTag, config) =>
        cache.putSelect(key, response, tables, isTag, config, query),
      onMutate: (params) => cache.onMutate(params),
    } as DrizzleCacheContract;
    const self = Object.create(this) as Record<string, unknown>;
    // `run()` of a select hands the driver's own result over (a libSQL ResultSet), under the
    // key `all()` has: never cached, or `all()` would be handed it.
    self.cache = running > 0 ? undefined : read;
    return queryWithCache.call(self, sql, params, ...rest);
  };
}

/** Teaches the cache the tables of a select's columns (Drizzle `Column`s carry their table). */
function learnTables(fields: unknown, cache: EdgecacheDrizzleCache, dialect: SqlDialect): void {
  if (!Array.isArray(fields)) return;
  const seen = new Set<object>();
  for (const f of fields) {
    const table = (f as { field?: { table?: unknown } } | undefined)?.field?.table;
    if (typeof table !== "object" || table === null || seen.has(table)) continue;
    seen.add(table);
    if (learnTable(table, cache, dialect)) cache.learnForeignKeys(table);
  }
}

/** Teaches the cache a Drizzle table's primary key and column kinds; false if it is none (an alias). */
export function learnTable(
  table: object,
  cache: EdgecacheDrizzleCache,
  dialect: SqlDialect,
): boolean {
  const t = table as Record<symbol, unknown>;
  if (t[IS_TABLE] !== true || t[IS_ALIAS] === true) return false;
  const described = describeTable(t, dialect);
  if (described) cache.learnTable(tableName(table), described);
  return true;
}

interface ColumnLike {
  name?: unknown;
  primary?: unknown;
  isUnique?: unknown;
  notNull?: unknown;
  getSQLType?: () => string;
}

/** A table's single-column primary key, its columns' kinds (by SQL type), its unique columns. */
function describeTable(table: Record<symbol, unknown>, dialect: SqlDialect): SqlTable | undefined {
  const columns = table[COLUMNS];
  if (typeof columns !== "object" || columns === null) return undefined;
  const kinds: Record<string, SqlColumnKind> = {};
  const primary: string[] = [];
  const unique: string[] = [];
  for (const column of Object.values(columns) as ColumnLike[]) {
    if (typeof column?.name !== "string") continue;
    kinds[column.name] = kindOf(column, dialect);
    if (column.primary === true) primary.push(column.name);
    else if (column.isUnique === true && column.notNull === true) unique.push(column.name);
  }
  const keys = compositeKeys(table);
  return {
    ...(primary.length === 1 && { primaryKey: primary[0]! }),
    columns: kinds,
    ...(unique.length > 0 && { unique }),
    ...(keys.length > 0 && { keys }),
  };
}

/**
 * A table's keys of several columns, from its extra config (`primaryKey({ columns })`,
 * `unique().on(...)`, `uniqueIndex().on(...)`), as drizzle-orm's `getTableConfig` reads it;
 * a key on an expression, and a partial unique index, are left out. None where the config
 * cannot be read.
 */
function compositeKeys(table: Record<symbol, unknown>): string[][] {
  const build = table[EXTRA_CONFIG];
  if (typeof build !== "function") return [];
  let config: unknown;
  try {
    config = build(table[EXTRA_COLUMNS] ?? table[COLUMNS]);
  } catch {
    return [];
  }
  const builders = Array.isArray(config) ? config.flat(1) : Object.values(config ?? {});
  const keys: string[][] = [];
  for (const b of builders as Record<string, unknown>[]) {
    const kind = String(
      (b?.constructor as unknown as Record<symbol, unknown> | undefined)?.[ENTITY_KIND],
    );
    const index = b?.config as { unique?: unknown; columns?: unknown; where?: unknown } | undefined;
    // A partial index (`.where(...)`) is unique only among the rows it indexes.
    const columns = /(PrimaryKey|UniqueConstraint)Builder$/.test(kind)
      ? b.columns
      : /IndexBuilder$/.test(kind) && index?.unique === true && index.where == null
        ? index.columns
        : undefined;
    if (!Array.isArray(columns) || columns.length < 2) continue;
    const names = columns.map((c) => (c as { name?: unknown } | null)?.name);
    if (names.every((n): n is string => typeof n === "string")) keys.push(names);
  }
  return keys;
}

/** A Drizzle column's kind, by its declared SQL type (see sqlTypeKind). */
function kindOf(column: ColumnLike, dialect: SqlDialect): SqlColumnKind {
  try {
    return sqlTypeKind(String(column.getSQLType?.() ?? ""), dialect);
  } catch {
    return "other";
  }
}
