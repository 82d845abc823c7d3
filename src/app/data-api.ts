import { Hono } from "hono";
import type { Cache, EntryInit } from "../core/cache/index.ts";
import { type GroupWrite, MAX_GROUP, WriteChain, WriteGroups } from "../core/cache/write-group.ts";
import { isCapturing } from "../core/capture-feed.ts";
import { keyPath, requestKey } from "../core/data/keys.ts";
import {
  type ListQuery,
  type Resource,
  type Row,
  resolveResource,
  type Schema,
  type ViewInfo,
} from "../core/data/query.ts";
import { parseListQuery } from "../core/data/query-params.ts";
import {
  marginOf,
  type Neighbours,
  neighbourRows,
  patchItem,
  patchList,
  reaching,
  widest,
  windowOf,
} from "../core/deps/patch.ts";
import type { WriteEvent } from "../core/deps/planner.ts";
import {
  type ListDependency,
  planSchemaOf,
  rowTag,
  setTag,
  tableTag,
} from "../core/deps/planner.ts";
import { sortValues } from "../core/deps/predicate.ts";
import type { CacheEntry } from "../core/entries/entry.ts";
import { extend } from "../core/entries/extend.ts";
import {
  badOption,
  checkOptionNames,
  describeValue,
  EdgecacheError,
  type OptionNames,
} from "../core/errors.ts";
import { plainJson } from "../core/library/plain-json.ts";
import type { Source, WriteOptions } from "../sources/source.ts";
import { originSet, sameOriginWrites } from "./access.ts";
import { isJsonObject, readJson } from "./body.ts";
import { type DataRoute, downstreamOf, validateDataRoutes } from "./data-routes.ts";
import { errorBody, limitBody, notFound, onError } from "./errors.ts";
import { type CacheOutcome, entryReply, replyResponse } from "./http.ts";
import { bodyOf, parseBody, patchedBody, sameBody } from "./response-bodies.ts";

export interface DataApiOptions {
  source: Source;
  cache: Cache;
  /** Path prefix of the API ("/v1"). */
  basePath?: string;
  /**
   * Origins (`https://app.example.com`) whose writes are accepted besides the one a write
   * was sent to; a browser's write from any other is a 403 (CSRF).
   */
  allowedOrigins?: readonly string[];
  /**
   * Per resource, in seconds: the time to live, and a stale-while-revalidate window after
   * it, both overriding the cache's defaults, and what browsers and CDNs may keep
   * (`browser: { maxAge, shared }`; see DataRoute). A resource with a window or a
   * `browser.maxAge` says so downstream (`Cache-Control: private, max-age=N`), and states
   * the bound in Cache-Status; others answer `no-cache`.
   */
  routes?: Record<string, DataRoute>;
  /**
   * Writes patch cached responses they change in ways the rules can compute (a row updated
   * in place, an order added to a user's orders) instead of invalidating them (true).
   */
  patchInPlace?: boolean;
  /**
   * The most writes one group commit holds (see WriteGroups; 64). 1: each write alone, one
   * after another (WriteChain), as on Workers, where a request must not wait on a promise
   * only another request settles.
   */
  groupWrites?: number;
  now?: () => number;
}

export interface DataApi {
  app: Hono;
  schema: Schema;
  /** Re-runs the read behind a cache key (rehydration, warming). */
  refetch(key: string): Promise<void>;
  /** Takes this API's patches and refetches off its cache: writes only remove entries then. */
  detach(): void;
}

/** Headers of every answer; `cache-control` is its resource's (see downstreamOf). */
const JSON_HEADERS = {
  "content-type": "application/json; charset=utf-8",
  "cache-control": downstreamOf(undefined).cacheControl,
};
const COMPONENT = "data-api";

/** The options DataApiOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<DataApiOptions> = {
  allowedOrigins: true,
  basePath: true,
  cache: true,
  groupWrites: true,
  now: true,
  patchInPlace: true,
  routes: true,
  source: true,
};

/**
 * The data API: REST reads served through the cache, and writes that invalidate exactly
 * the cached responses they can change before they are acknowledged.
 *
 * @example
 * const api = await createDataApi({ source: sqliteSource({ path: "app.db" }), cache });
 * serve(api.app);
 */
export async function createDataApi(options: DataApiOptions): Promise<DataApi> {
  checkOptionNames(COMPONENT, options, OPTIONS);
  const { source, cache } = options;
  const most = options.groupWrites ?? MAX_GROUP;
  if (!Number.isInteger(most) || most < 1) {
    badOption(COMPONENT, "groupWrites", "a whole number of writes, 1 or more", most);
  }
  validateDataRoutes(options.routes, COMPONENT);
  const base = options.basePath ?? "/v1";
  const now = options.now ?? Date.now;
  // Rows kept beside each cached page, for patches only.
  const marginRows = options.patchInPlace !== false ? MARGIN : 0;
  const schema = await source.schema();
  const routes = routesOf(schema, options.routes);
  const keys = planSchemaOf(schema);
  cache.setSchema(keys);
  const app = new Hono();
  app.onError(onError);
  const origins = originSet(COMPONENT, "allowedOrigins", options.allowedOrigins);
  app.use(`${base}/*`, limitBody, sameOriginWrites(origins));

  const resourceOf = (name: string): Resource => {
    const r = resolveResource(schema, name);
    if (!r) throw new EdgecacheError("E_NOT_FOUND", COMPONENT, `unknown resource "${name}"`);
    return r;
  };
  const ms = (s: number | undefined) => (s === undefined ? undefined : s * 1000);
  const timesOf = (r: Resource) => {
    const route = routes.get(r.name);
    return { ttl: ms(route?.ttl), staleWhileRevalidate: ms(route?.staleWhileRevalidate) };
  };
  // What a found row or list tells browsers and CDNs; a 404 is always `no-cache` (the row
  // may be created next, and the client that creates it would keep seeing the 404).
  const replies = new Map<string, Pick<EntryInit, "headers" | "browserBound">>();
  const replyOf = (r: Resource): Pick<EntryInit, "headers" | "browserBound"> => {
    let reply = replies.get(r.name);
    if (!reply) {
      const { cacheControl, bound } = downstreamOf(routes.get(r.name));
      reply = {
        headers: { ...JSON_HEADERS, "cache-control": cacheControl },
        ...(bound !== undefined && { browserBound: bound }),
      };
      replies.set(r.name, reply);
    }
    return reply;
  };

  const read = async (url: URL, load: () => Promise<EntryInit>, ifNoneMatch?: string | null) => {
    const key = requestKey(url.pathname, url.search);
    const { entry, status, stored, bypass, unstored } = await cache.resolve(key, load);
    const outcome: CacheOutcome =
      status !== "miss"
        ? { kind: status }
        : // Bypassed: caching is off, or this node cannot vouch for its cache (its lease lapsed).
          { kind: "miss", stored: !!stored, ...(bypass && { fwd: "bypass" }), detail: unstored };
    return replyResponse(entryReply(entry, outcome, now(), ifNoneMatch));
  };

  // What a response is made of, the same whether it was loaded or patched by a write.
  // A page with a margin depends on its margin's rows too, which the write patches with it.
  // `was`: the entry patched, whose bytes and ETag are kept when its window is unchanged;
  // else its bytes are made when first read (patchedBody).
  const listInit = (
    resource: Resource,
    rows: Row[],
    list: ListDependency,
    margin?: Neighbours,
    was?: { entry: CacheEntry; rows: readonly Row[] },
  ): EntryInit => {
    const meta: EntryMeta = { resource: resource.name };
    let held = rows;
    if (margin) {
      // As a tier past memory keeps it: the rows a patch compares are the body's, parsed.
      // Rows that are plain JSON already (parsed from a body, or the source's) are that.
      meta.margin = plainJson(margin) ? margin : (JSON.parse(JSON.stringify(margin)) as Neighbours);
      held = [...margin.before, ...rows, ...(margin.after?.rows ?? [])];
    }
    // A write to the rows around the window only (a patch keeps each row it leaves as it
    // was): the same body, not encoded and hashed again.
    const kept = was && rows.length === was.rows.length && rows.every((r, i) => r === was.rows[i]);
    const value = { data: rows, limit: list.limit, offset: list.offset };
    const { body, etag } = kept
      ? sameBody(was.entry)
      : { body: was ? patchedBody(value) : bodyOf(value), etag: undefined };
    // Begun with a property, not a spread: see extend.
    return {
      body,
      ...(etag !== undefined && { etag }),
      ...replyOf(resource),
      tags: dependencyTags(schema, resource, held),
      lists: [margin ? reaching(list, margin) : list],
      meta,
    };
  };
  const itemInit = (
    resource: Resource,
    id: string,
    row: Row | undefined,
    patched = false,
  ): EntryInit => {
    const meta: EntryMeta = { resource: resource.name, id };
    if (row) {
      return {
        body: patched ? patchedBody(row) : bodyOf(row),
        ...replyOf(resource),
        tags: dependencyTags(schema, resource, [row]),
        meta,
      };
    }
    // A cached 404 carries the row tag of the id, so an insert of it invalidates it.
    const { body } = errorBody(
      new EdgecacheError("E_NOT_FOUND", COMPONENT, `${resource.name} "${id}" not found`),
    );
    const table = resource.table.name;
    return {
      body,
      status: 404,
      headers: JSON_HEADERS,
      tags: [tableTag(table), rowTag(table, id)],
      meta,
    };
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
        const from = Math.max(0, query.offset - marginRows);
        const limit = query.offset - from + query.limit + marginRows;
        const held = await source.list(resource, { ...query, offset: from, limit });
        // Fewer rows than asked for: the list ends within them.
        const toEnd = held.length < limit;
        const { rows, around } = windowOf(held, query.offset - from, query.limit, toEnd);
        const list = listDependency(resource, query, rows);
        const init = listInit(resource, rows, list, marginRows > 0 ? around : undefined);
        return extend(init, timesOf(resource));
      },
      c.req.header("if-none-match"),
    );
  });

  app.get(`${base}/:resource/:id`, (c) => {
    const resource = resourceOf(c.req.param("resource"));
    const id = c.req.param("id");
    const url = new URL(c.req.url);
    // Refused like a list's unknown parameter: the query is part of the key, so a junk one
    // would make every request a new entry holding the same row.
    for (const name of url.searchParams.keys()) {
      throw new EdgecacheError(
        "E_BAD_QUERY",
        COMPONENT,
        `${name}: unknown parameter (an item takes no query parameters)`,
      );
    }
    return read(
      url,
      async () => extend(itemInit(resource, id, await source.get(resource, id)), timesOf(resource)),
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
  /** A cached response after a write, computed without a query where the rules allow. */
  const patch = (
    key: string,
    entry: CacheEntry,
    events: readonly WriteEvent[],
    peek: ((key: string) => CacheEntry | undefined) | undefined,
  ): EntryInit | undefined => {
    const meta = entry.meta as EntryMeta | undefined;
    const resource = meta && resolveResource(schema, meta.resource);
    if (!meta || !resource) return undefined;
    if (meta.id !== undefined) {
      if (entry.status !== 200 && entry.status !== 404) return undefined;
      const row = entry.status === 200 ? (parseBody(entry) as Row) : undefined;
      const patched = patchItem(resource, meta.id, row, events, keys);
      return patched && itemInit(resource, meta.id, patched.row, true);
    }
    const list = entry.lists?.[0];
    if (!list || entry.status !== 200) return undefined;
    const { data } = parseBody(entry) as { data: Row[] };
    // Without peek (a shared log) the response may already show later writes, and its
    // margin with it: see patchList. The patched page then keeps no margin.
    if (!peek) {
      const patched = patchList(resource, list, data, events, keys, undefined, false);
      return (
        patched && listInit(resource, patched.rows, patched.list, undefined, { entry, rows: data })
      );
    }
    const own = meta.margin;
    const patched =
      patchList(resource, list, data, events, keys, own) ??
      patchList(
        resource,
        list,
        data,
        events,
        keys,
        widest(own, neighbours(key, resource, list, peek)),
      );
    if (!patched) return undefined;
    const around =
      patched.around && marginRows > 0 ? marginOf(patched.around, marginRows) : undefined;
    return listInit(resource, patched.rows, patched.list, around, { entry, rows: data });
  };

  /**
   * A new row of `table` as each view over it shows it (WriteEvent.views), read before the
   * write hands its turn on: a view's cached pages then take it without a query, where
   * they would otherwise go at each insert into its base table. Undefined when no view
   * joins rows to the table, or a read fails (the write stands; its pages go, as before).
   */
  const viewsOver = new Map<string, ViewInfo[]>();
  for (const view of schema.views.values()) {
    if (view.joins.length > 0)
      viewsOver.set(view.base, [...(viewsOver.get(view.base) ?? []), view]);
  }
  const viewRows = async (table: string, row: Row): Promise<WriteEvent["views"]> => {
    const over = viewsOver.get(table);
    if (!over) return undefined;
    const id = row[schema.tables.get(table)!.primaryKey] as string | number;
    const rows: Record<string, Row> = {};
    try {
      for (const view of over) {
        const found = await source.get(resourceOf(view.name), id);
        if (!found) return undefined;
        rows[view.name] = found;
      }
    } catch {
      return undefined;
    }
    return { rows, tables: [...new Set(over.flatMap((v) => v.joins.map((j) => j.table)))] };
  };

  /** Rows of other cached pages of the same list just before and after a window. */
  const neighbours = (
    key: string,
    resource: Resource,
    list: ListDependency,
    peek: (key: string) => CacheEntry | undefined,
  ): Neighbours | undefined =>
    neighbourRows(key, list, cache.pagesOf(list), (other) => {
      const entry = peek(other);
      if (entry?.status !== 200) return undefined;
      if ((entry.meta as EntryMeta | undefined)?.resource !== resource.name) return undefined;
      return (parseBody(entry) as { data: Row[] }).data;
    });

  // Writes take turns from their statement to their record's place in the log, here and
  // (through the log's write turns, see Cache.write) across nodes, so the log holds them in
  // the order the database applied them: a patch must never apply an older row after a
  // newer one. Writes that arrive meanwhile go together next, under one turn and one record
  // (group commit, see WriteGroups). Only a write the change log can take is made at all.
  const write: GroupWrite = (make, o) => cache.write(make, o);
  const groups =
    most === 1 ? new WriteChain(write) : new WriteGroups(write, most, () => cache.writeTurn());
  // With change capture, the database records this write too, under its mark; once the
  // write's own record is applied, those rows go (one write path: a write whose node dies
  // before its record is captured instead).
  const capturing = isCapturing(source) ? source : undefined;
  const inTurn = <T>(
    write: (apply: (events: WriteEvent[]) => Promise<unknown>, options: WriteOptions) => Promise<T>,
  ) =>
    groups.run((record) => {
      const options: WriteOptions = capturing ? { capture: crypto.randomUUID() } : {};
      // The row changes, plus whatever the database does beyond them (triggers and the like).
      return write(async (events) => {
        const applied = await record([
          ...events,
          ...(await source.effects(events[0]!.table, events[0]!.op)),
        ]);
        if (options.capture) await capturing?.recorded(options.capture);
        return applied;
      }, options);
    });
  // Every write that reaches this node's cache, made here or on another node.
  const detach = cache.addWriteHooks({
    refetch,
    ...(options.patchInPlace !== false && { patch }),
  });

  app.post(`${base}/:resource`, async (c) => {
    const table = writable(c.req.param("resource"));
    const values = await jsonObject(c.req.raw);
    const pk = schema.tables.get(table)!.primaryKey;
    const id = values[pk];
    if (UNADDRESSABLE_IDS.has(id as string)) {
      throw new EdgecacheError(
        "E_BAD_BODY",
        COMPONENT,
        `${pk}: id ${JSON.stringify(id)} cannot be addressed in a URL (${id === "" ? "empty segment" : "dot segment"})`,
      );
    }
    const row = await inTurn(async (apply, options) => {
      const inserted = await source.insert(table, values, options);
      const views = await viewRows(table, inserted);
      await apply([{ table, op: "insert", new: inserted, ...(views && { views }) }]);
      return inserted;
    });
    const location = `${base}/${table}/${encodeURIComponent(String(row[pk]))}`;
    return c.json(row, 201, { location });
  });

  for (const method of ["patch", "put"] as const) {
    app[method](`${base}/:resource/:id`, async (c) => {
      const table = writable(c.req.param("resource"));
      const id = c.req.param("id");
      const values = await jsonObject(c.req.raw);
      const result = await inTurn(async (apply, options) => {
        const r =
          method === "patch"
            ? await source.update(table, id, values, options)
            : await source.replace(table, id, values, options);
        if (r) await apply([{ table, op: "update", old: r.old, new: r.row }]);
        return r;
      });
      if (!result) throw new EdgecacheError("E_NOT_FOUND", COMPONENT, `${table} "${id}" not found`);
      return c.json(result.row);
    });
  }

  app.delete(`${base}/:resource/:id`, async (c) => {
    const table = writable(c.req.param("resource"));
    const id = c.req.param("id");
    const result = await inTurn(async (apply, options) => {
      const r = await source.delete(table, id, options);
      if (r) await apply([{ table, op: "delete", old: r.old }, ...r.cascaded]);
      return r;
    });
    if (!result) throw new EdgecacheError("E_NOT_FOUND", COMPONENT, `${table} "${id}" not found`);
    return c.body(null, 204);
  });

  app.notFound(notFound);

  return { app, schema, refetch, detach };
}

/**
 * The routes by resource name, each naming a resource of `schema`: a misspelt one would
 * otherwise do nothing.
 */
function routesOf(schema: Schema, routes: Record<string, DataRoute> = {}): Map<string, DataRoute> {
  const names = [...schema.tables.keys(), ...schema.views.keys()];
  for (const name of Object.keys(routes)) {
    if (!resolveResource(schema, name)) {
      badOption(
        COMPONENT,
        `routes.${name}`,
        `a resource of the database (${names.join(", ")})`,
        name,
      );
    }
  }
  return new Map(Object.entries(routes));
}

/**
 * Ids no item URL can name, refused when a row is created (the only way a write gives an
 * id: PUT and PATCH never change it): a URL's dot segments are removed (RFC 3986 5.2.4),
 * and an empty one leaves `/v1/<table>/`, which names no item. Every source is behind
 * this check (SQLite, PostgreSQL and D1 share the handler).
 */
const UNADDRESSABLE_IDS = new Set(["", ".", ".."]);

/** What the data API keeps with an entry: the resource, and the id of an item. */
interface EntryMeta {
  resource: string;
  id?: string;
  /** A list page's margin: rows of the list next to its window (see MARGIN). */
  margin?: Neighbours;
}

/**
 * Rows a cached list page keeps on each side of its window, loaded with it and patched
 * with it, so that a write shifting the window by up to this many rows is patched from the
 * page alone: an insert before it brings in the row before it, a row leaving it the row
 * after it. Neither is served: the body and its ETag are the window's.
 */
const MARGIN = 2;

async function jsonObject(req: Request): Promise<Row> {
  const value = await readJson(req, COMPONENT);
  if (!isJsonObject(value)) {
    throw new EdgecacheError(
      "E_BAD_BODY",
      COMPONENT,
      `body: expected a JSON object, got ${describeValue(value)}`,
    );
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
  const pk = resource.table.primaryKey;
  // What decides whether a row is in the list and where: an update that leaves these as they
  // were moves no row into, out of or within a page. A page that shows the row (in its window
  // or its margin) carries the row's tag, which plans the update against it (dependencyTags).
  const columns = new Set([
    ...query.filters.map((f) => f.column),
    ...query.sort.map((s) => s.column),
  ]);
  columns.delete(pk);
  const dep: ListDependency = {
    table: resource.table.name,
    filters: query.filters,
    sort: query.sort,
    offset: query.offset,
    limit: query.limit,
    count: rows.length,
    columns: [...columns],
  };
  if (last) dep.last = sortValues(last, query.sort);
  return dep;
}
