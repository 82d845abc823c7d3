import { Hono } from "hono";
import type { Cache, EntryInit } from "../core/cache.ts";
import type { WriteEvent } from "../core/deps/planner.ts";
import {
  type ListDependency,
  planSchemaOf,
  rowTag,
  setTag,
  tableTag,
} from "../core/deps/planner.ts";
import { sortValues } from "../core/deps/predicate.ts";
import { EdgecacheError } from "../core/errors.ts";
import { keyPath, requestKey } from "../core/keys.ts";
import {
  type ListQuery,
  type Resource,
  type Row,
  resolveResource,
  type Schema,
} from "../core/query.ts";
import { parseListQuery } from "../core/query-params.ts";
import type { Source } from "../sources/source.ts";
import { errorBody, limitBody, notFound, onError } from "./errors.ts";
import { entryReply, replyResponse } from "./http.ts";

export interface DataApiOptions {
  source: Source;
  cache: Cache;
  /** Path prefix of the API ("/v1"). */
  basePath?: string;
  /** Per-resource time to live in seconds, overriding the cache's default. */
  routes?: Record<string, { ttl?: number }>;
  now?: () => number;
}

export interface DataApi {
  app: Hono;
  schema: Schema;
  /** Re-runs the read behind a cache key (rehydration, warming). */
  refetch(key: string): Promise<void>;
}

// no-cache: downstream caches may keep a copy but must revalidate it (RFC 9111 5.2.2.4),
// since only edgecache hears of writes.
const JSON_HEADERS = {
  "content-type": "application/json; charset=utf-8",
  "cache-control": "no-cache",
};
const COMPONENT = "data-api";

/**
 * The data API: REST reads served through the cache, and writes that invalidate exactly
 * the cached responses they can change before they are acknowledged.
 *
 * @example
 * const api = await createDataApi({ source: sqliteSource({ path: "app.db" }), cache });
 * serve(api.app);
 */
export async function createDataApi(options: DataApiOptions): Promise<DataApi> {
  const { source, cache } = options;
  const base = options.basePath ?? "/v1";
  const now = options.now ?? Date.now;
  const schema = await source.schema();
  cache.setSchema(planSchemaOf(schema));
  const app = new Hono();
  app.onError(onError);
  app.use(`${base}/*`, limitBody);

  const resourceOf = (name: string): Resource => {
    const r = resolveResource(schema, name);
    if (!r) throw new EdgecacheError("E_NOT_FOUND", COMPONENT, `unknown resource "${name}"`);
    return r;
  };
  const ttlOf = (r: Resource) => {
    const s = options.routes?.[r.name]?.ttl;
    return s === undefined ? undefined : s * 1000;
  };

  const read = async (url: URL, load: () => Promise<EntryInit>, ifNoneMatch?: string | null) => {
    const key = requestKey(url.pathname, url.search);
    const { entry, status, stored } = await cache.resolve(key, load);
    const outcome =
      status === "miss" ? { kind: "miss" as const, stored: !!stored } : { kind: status };
    return replyResponse(entryReply(entry, outcome, now(), ifNoneMatch));
  };

  app.get(`${base}/:resource`, (c) => {
    const resource = resourceOf(c.req.param("resource"));
    const url = new URL(c.req.url);
    return read(
      url,
      async () => {
        // Parsed only on a miss: a hit needs the key alone, and a bad query (a 400) is
        // never stored, so it is parsed again each time it is asked.
        const query = parseListQuery(resource, url.searchParams);
        const rows = await source.list(resource, query);
        return {
          body: JSON.stringify({ data: rows, limit: query.limit, offset: query.offset }),
          headers: JSON_HEADERS,
          tags: dependencyTags(schema, resource, rows),
          lists: [listDependency(resource, query, rows)],
          ttl: ttlOf(resource),
        };
      },
      c.req.header("if-none-match"),
    );
  });

  app.get(`${base}/:resource/:id`, (c) => {
    const resource = resourceOf(c.req.param("resource"));
    const id = c.req.param("id");
    return read(
      new URL(c.req.url),
      async () => {
        const row = await source.get(resource, id);
        if (!row) {
          // A cached 404 carries the row tag of the id, so an insert of it invalidates it.
          const { body } = errorBody(
            new EdgecacheError("E_NOT_FOUND", COMPONENT, `${resource.name} "${id}" not found`),
          );
          return {
            body,
            status: 404,
            headers: JSON_HEADERS,
            tags: [tableTag(resource.table.name), rowTag(resource.table.name, id)],
            ttl: ttlOf(resource),
          };
        }
        return {
          body: JSON.stringify(row),
          headers: JSON_HEADERS,
          tags: dependencyTags(schema, resource, [row]),
          ttl: ttlOf(resource),
        };
      },
      c.req.header("if-none-match"),
    );
  });

  const refetch = async (key: string): Promise<void> => {
    const path = keyPath(key);
    if (path) await app.request(path);
  };

  const writable = (name: string): string => {
    const r = resourceOf(name);
    if (r.kind === "view") {
      throw new EdgecacheError("E_METHOD_NOT_ALLOWED", COMPONENT, `${name} is a view: read-only`);
    }
    return r.table.name;
  };
  // The row changes, plus whatever the database does beyond them (triggers and the like).
  const apply = async (events: WriteEvent[]) =>
    cache.applyWrite(
      [...events, ...(await source.effects(events[0]!.table, events[0]!.op))],
      refetch,
    );

  app.post(`${base}/:resource`, async (c) => {
    const table = writable(c.req.param("resource"));
    const row = await source.insert(table, await jsonObject(c.req.raw));
    await apply([{ table, op: "insert", new: row }]);
    const pk = schema.tables.get(table)!.primaryKey;
    const location = `${base}/${table}/${encodeURIComponent(String(row[pk]))}`;
    return c.json(row, 201, { location });
  });

  for (const method of ["patch", "put"] as const) {
    app[method](`${base}/:resource/:id`, async (c) => {
      const table = writable(c.req.param("resource"));
      const id = c.req.param("id");
      const values = await jsonObject(c.req.raw);
      const result =
        method === "patch"
          ? await source.update(table, id, values)
          : await source.replace(table, id, values);
      if (!result) throw new EdgecacheError("E_NOT_FOUND", COMPONENT, `${table} "${id}" not found`);
      await apply([{ table, op: "update", old: result.old, new: result.row }]);
      return c.json(result.row);
    });
  }

  app.delete(`${base}/:resource/:id`, async (c) => {
    const table = writable(c.req.param("resource"));
    const id = c.req.param("id");
    const result = await source.delete(table, id);
    if (!result) throw new EdgecacheError("E_NOT_FOUND", COMPONENT, `${table} "${id}" not found`);
    await apply([{ table, op: "delete", old: result.old }, ...result.cascaded]);
    return c.body(null, 204);
  });

  app.notFound(notFound);

  return { app, schema, refetch };
}

async function jsonObject(req: Request): Promise<Row> {
  let value: unknown;
  try {
    value = await req.json();
  } catch {
    throw new EdgecacheError("E_BAD_BODY", COMPONENT, "body: expected a JSON object");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new EdgecacheError("E_BAD_BODY", COMPONENT, "body: expected a JSON object");
  }
  return value as Row;
}

/**
 * What a response holding `rows` of `resource` depends on: the tables it reads (fallback),
 * each row it holds, and for a view each joined array as a set (the orders of user X).
 */
export function dependencyTags(schema: Schema, resource: Resource, rows: Row[]): string[] {
  const table = resource.table;
  const tags = new Set<string>([tableTag(table.name)]);
  for (const row of rows) tags.add(rowTag(table.name, row[table.primaryKey]));
  if (resource.kind === "view") {
    for (const join of resource.view.joins) {
      const childPk = schema.tables.get(join.table)?.primaryKey;
      tags.add(tableTag(join.table));
      for (const row of rows) {
        tags.add(setTag(join.table, join.foreignKey, row[join.references]));
        const children = row[join.as];
        if (!childPk || !Array.isArray(children)) continue;
        for (const child of children as Row[]) tags.add(rowTag(join.table, child[childPk]));
      }
    }
  }
  return [...tags];
}

export function listDependency(resource: Resource, query: ListQuery, rows: Row[]): ListDependency {
  const last = rows[rows.length - 1];
  const dep: ListDependency = {
    table: resource.table.name,
    filters: query.filters,
    sort: query.sort,
    offset: query.offset,
    limit: query.limit,
    count: rows.length,
  };
  if (last) dep.last = sortValues(last, query.sort);
  return dep;
}
