import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { HttpBindings } from "@hono/node-server";
import { type Context, Hono } from "hono";
import { bearerToken, checkToken, constantTimeEqual, hostName } from "../../../app/access.ts";
import { openAdminRoutes } from "../../../app/edgecache-app.ts";
import { onError } from "../../../app/errors.ts";
import { isAdminPath, validUrl } from "../../../app/request-target.ts";
import { COST_KINDS } from "../../../core/cost.ts";
import type { CacheEntry } from "../../../core/entries/entry.ts";
import { EdgecacheError } from "../../../core/errors.ts";
import { type CacheStats, hitRate, readHitRate } from "../../../core/stats.ts";
import {
  allowed,
  identity,
  keyField,
  type RequestKey,
  requestKey,
  type Tenant,
  type TenantAccess,
  tenantHeaders,
} from "../../tenants/model.ts";
import { type RedisSetting, shortHash } from "../cluster.ts";
import { annotate, type Logger, nodeLogger } from "../logging.ts";
import { mergedMetrics, type NodeMetrics, nodeMetrics } from "../metrics.ts";
import { modeServer } from "../modes/assembly.ts";
import { createNodeEdgecache } from "../modes/data-api.ts";
import { createNodeProxy, hitFinder } from "../modes/proxy.ts";
import type { HitRequest } from "../server/hit-reply.ts";
import { DRAIN_MS, dataApiHits, type RunningServer } from "../server/server.ts";
import { openTenantState } from "./state.ts";
import {
  DEFAULT_REDIS_STATE_PREFIX,
  keyHash,
  type TenantFeed,
  type TenantState,
} from "./state-contract.ts";

export interface TenantNodeOptions {
  /** The state database: a SQLite file (edgecache.tenants.db), or a postgres:// or redis:// URL. */
  state: string;
  port?: number;
  hostname?: string;
  trustedProxies?: string[];
  allowedHosts?: string[];
  logLevel?: string;
  logger?: Logger;
  /**
   * The operator's token (EDGECACHE_ADMIN_TOKEN): with it, `/_edgecache/metrics` shows
   * every tenant's metrics, each labelled with its name.
   */
  adminToken?: string;
  /**
   * Redis shared with the other nodes that serve these tenants: each tenant's cache then
   * has a change log and a shared tier there, under a prefix of its own, so a write through
   * one node invalidates every node's copy. Default: the state's URL when it is Redis.
   */
  redis?: RedisSetting;
  /**
   * Directory of the tenants' cache files (a SQLite tier each, in a folder of its own);
   * false keeps their caches in memory. Default: `<state file>.cache/` beside a SQLite
   * state; none beside a shared one (the tenants' shared tier is Redis, if any).
   */
  cacheDir?: string | false;
}

export interface TenantNode {
  app: Hono;
  state: TenantState;
  /** The Redis the tenants' caches share with other nodes, if any. */
  shared?: RedisSetting;
  listen(): Promise<RunningServer>;
  close(): Promise<void>;
}

/** One tenant's own node: its cache, its database or origin, its admin API. */
interface Served {
  tenant: Tenant;
  /** The whole app of the tenant (data API or proxy, and its admin API). */
  fetch(request: Request, env: unknown): Response | Promise<Response>;
  findHit(req: HitRequest): CacheEntry | undefined;
  /** What the dispatcher sends its admin API in place of the tenant's key. */
  adminToken: string;
  metrics: NodeMetrics;
  stats(): CacheStats;
  close(): Promise<void>;
  /** For a deleted tenant: removes its entries from every tier, closes, removes its file. */
  drop(): Promise<void>;
}

type Access = TenantAccess;

/**
 * Where a tenant's cache lives beyond memory (its folder, its Redis prefix): its name and
 * when it was made, so a tenant deleted and made anew never meets the old one's entries.
 */
function placeOf(t: Tenant): string {
  return `${t.name}-${shortHash(t.createdAt)}`;
}

/** Where the tenants' caches go beyond memory, from the node's options. */
interface Places {
  cacheDir?: string;
  redis?: RedisSetting;
  /** Before each tenant's prefix in Redis: the state's own prefix when the state is there. */
  redisPrefix: string;
}

function placesOf(options: TenantNodeOptions, state: TenantState): Places {
  const sqlite = !/^[a-z]+:\/\//i.test(state.where);
  const cacheDir =
    options.cacheDir === false
      ? undefined
      : (options.cacheDir ?? (sqlite ? `${state.where.replace(/\.db$/, "")}.cache` : undefined));
  let redis = options.redis;
  let redisPrefix = "edgecache:";
  if (/^rediss?:\/\//i.test(options.state)) {
    const url = new URL(options.state);
    redisPrefix = url.searchParams.get("prefix") ?? DEFAULT_REDIS_STATE_PREFIX;
    url.searchParams.delete("prefix");
    redis ??= url.href;
  }
  return { ...(cacheDir && { cacheDir }), ...(redis && { redis }), redisPrefix };
}

const C = "tenants";
/** How often the node looks at the state while no request comes. */
const SWEEP_MS = 1000;
/** How long a tenant's first request waits for its node to hold a lease on a shared log. */
const LEASE_WAIT_MS = 1000;

/**
 * A node that serves tenants: every request names its tenant by `Authorization: Bearer
 * <key>` or `X-Edgecache-Key` (requestKey), and goes to that tenant's own node (cache, memory
 * budget, database or origin, admin API) with the key removed. Nothing is shared between tenants
 * but the port, so two tenants' identical URLs are two entries. The raw-socket hit path
 * looks the tenant up the same way before it answers from that tenant's memory.
 *
 * Tenants are read from the state database, again whenever another process (the CLI)
 * committed to it: a rotated key is refused from the next request on, a deleted tenant's
 * node is closed and its entries dropped.
 */
export async function createTenantNode(options: TenantNodeOptions): Promise<TenantNode> {
  checkToken(C, 'option "adminToken" (EDGECACHE_ADMIN_TOKEN)', options.adminToken);
  const logger = options.logger ?? nodeLogger(options.logLevel);
  const state = await openTenantState(options.state);
  const places = placesOf(options, state);
  /** Set once the state is followed; its first reload may call `refresh` before that. */
  let feed: TenantFeed | undefined;
  let byHash = new Map<string, Access>();
  let byHost = new Map<string, Tenant>();
  /** Keys seen, to skip hashing on every request; emptied whenever the tenants change. */
  let byKey = new Map<string, Access>();
  const served = new Map<string, Served>();
  const starting = new Map<string, Promise<Served>>();
  let current = new Map<string, Tenant>();

  const refresh = () => {
    const keyed = feed?.changes();
    if (!keyed) return;
    byHash = new Map(keyed.map(({ hash, scope, tenant }) => [hash, { tenant, scope }]));
    byHost = new Map(
      keyed.flatMap(({ tenant }) => (tenant.publicHost ? [[tenant.publicHost, tenant]] : [])),
    );
    byKey = new Map();
    current = new Map(keyed.map(({ tenant }) => [tenant.name, tenant]));
    for (const [name, node] of served) {
      const now = current.get(name);
      // Deleted (or deleted and created anew), or its source or budget changed: its
      // entries go with its node. A new key or public host keeps them.
      if (!now || identity(now) !== identity(node.tenant)) {
        served.delete(name);
        node.drop().catch((err) => logger.error({ err, tenant: name }, "closing a tenant failed"));
      }
    }
  };
  /**
   * Who is asking: the tenant and scope of the key, or, without a key, read access to the
   * tenant whose public host the request names. A wrong key is no one, whatever the host.
   */
  const accessOf = (
    { key }: RequestKey,
    header: (name: string) => string | undefined,
  ): Access | undefined => {
    refresh();
    // A node that lost a shared state cannot know of a rotated key or a deleted tenant.
    if (!feed!.current()) {
      throw new EdgecacheError(
        "E_STORE_UNAVAILABLE",
        C,
        `the state database (${state.where}) has not been heard for a while; requests are refused until it is`,
      );
    }
    if (key === undefined) {
      const host = header("host");
      const tenant = host === undefined ? undefined : byHost.get(hostName(host));
      return tenant && { tenant, scope: "read", anonymous: true };
    }
    return keyed(key);
  };
  const keyed = (key: string): Access | undefined => {
    let access = byKey.get(key);
    if (!access) {
      access = byHash.get(keyHash(key));
      if (access) byKey.set(key, access);
    }
    return access;
  };
  /** Whether Authorization beside X-Edgecache-Key holds a tenant's key (keyField). */
  const bearerIsKey = ({ bearer }: RequestKey) => bearer !== undefined && !!keyed(bearer);
  const nodeOf = (tenant: Tenant): Promise<Served> => {
    const ready = served.get(tenant.name);
    if (ready) return Promise.resolve(ready);
    let pending = starting.get(tenant.name);
    if (!pending) {
      pending = open(tenant, logger, options, places).finally(() => starting.delete(tenant.name));
      pending
        .then((node) => {
          // Deleted or changed while it opened: this request was let in, later ones are not.
          const now = current.get(tenant.name);
          if (now && identity(now) === identity(tenant)) served.set(tenant.name, node);
          else setTimeout(() => node.drop().catch(() => {}), DRAIN_MS).unref();
        })
        .catch(() => {});
      starting.set(tenant.name, pending);
    }
    return pending;
  };

  try {
    feed = await state.follow(refresh);
  } catch (err) {
    await state.close();
    throw err;
  }
  refresh();
  if (places.cacheDir) removeOthers(places.cacheDir, new Set([...current.values()].map(placeOf)));
  // A deleted tenant's entries go even while no request comes (a shared state also calls
  // `refresh` on each change it hears).
  const sweep = setInterval(refresh, SWEEP_MS);
  sweep.unref();

  const processMetrics = nodeMetrics();
  const app = new Hono();
  app.onError(onError);
  app.use(validUrl);
  const { adminToken } = options;
  // The dashboard's page holds no data; it asks for a key when the API answers 401. The
  // node's health, the same with any key or none, is never a tenant's: whether it hears the
  // state, without which it refuses every request.
  openAdminRoutes(app, { state: () => ({ ok: feed!.current() }) });
  // The operator's token (not a tenant's key): every tenant's metrics, and their stats,
  // summed and one by one (the dashboard's per-tenant chart). Nothing else.
  const isOperator = (c: Context) => {
    const given = bearerToken(c.req.header("authorization"));
    return !!adminToken && given !== undefined && constantTimeEqual(given, adminToken);
  };
  app.get("/_edgecache/metrics", async (c, next) => {
    if (!isOperator(c)) return next(); // a tenant's key: its own metrics, from its admin API
    refresh();
    const nodes = [...served.values()].map((n) => n.metrics);
    return c.text(await mergedMetrics([processMetrics, ...nodes]), 200, {
      "content-type": processMetrics.contentType,
    });
  });
  app.get("/_edgecache/stats", (c, next) => {
    if (!isOperator(c)) return next();
    refresh();
    const tenants = [...served.values()].map((n) => ({ name: n.tenant.name, ...n.stats() }));
    return c.json({ ...sumStats(tenants), tenants });
  });
  // The dashboard polls these too; an operator sees no tenant's keys or changes.
  app.get("/_edgecache/keys", (c, next) =>
    isOperator(c) ? c.json({ keys: [], truncated: false }) : next(),
  );
  app.get("/_edgecache/changes", (c, next) => (isOperator(c) ? c.json({ changes: [] }) : next()));
  app.all("*", async (c) => {
    // Only what the admin API answers gets its token: `/_edgecache_x` is the origin's.
    const admin = isAdminPath(new URL(c.req.url).pathname);
    const header = (name: string) => c.req.header(name);
    const key = requestKey(header);
    const access = allowed(accessOf(key, header), c.req.method, admin);
    annotate((c.env as HttpBindings | undefined)?.outgoing, { tenant: access.tenant.name });
    const node = await nodeOf(access.tenant);
    // The key let it in: its admin API (under /_edgecache) is this tenant's.
    const headers = tenantHeaders(
      c.req.raw.headers,
      key,
      bearerIsKey(key),
      admin ? node.adminToken : undefined,
    );
    return node.fetch(new Request(c.req.raw, { headers }), c.env);
  });

  // Only GET and HEAD come here, which every scope may send.
  const findHit = (req: HitRequest): CacheEntry | undefined => {
    if (!feed!.current()) return undefined; // the app answers it, with the reason
    const key = requestKey((name) => header(req, name));
    const access = accessOf(key, (name) => header(req, name));
    const node = access && served.get(access.tenant.name);
    return node?.findHit(withoutKey(req, key, bearerIsKey(key)));
  };

  const server = modeServer(app, logger, {
    findHit,
    port: options.port,
    hostname: options.hostname,
    // Every request names its tenant by a key a page cannot know, or by a tenant's public
    // host (`publicHost`), which no rebinding page sends: any Host is answered.
    allowedHosts: false,
  });
  return {
    app,
    state,
    ...(places.redis && { shared: places.redis }),
    listen: server.listen,
    async close() {
      clearInterval(sweep);
      await server.close();
      await Promise.allSettled(starting.values());
      for (const node of served.values()) await node.close();
      served.clear();
      await feed!.close();
      await state.close();
    },
  };
}

function header(req: HitRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The request as the tenant's node sees it, as tenantHeaders makes it for the app. */
function withoutKey(req: HitRequest, key: RequestKey, bearerIsKey: boolean): HitRequest {
  const kept = Object.entries(req.headers).filter(([name]) => !keyField(name, key, bearerIsKey));
  if (kept.length === Object.keys(req.headers).length) return req;
  return { ...req, headers: Object.fromEntries(kept) };
}

/**
 * Opens a tenant's node: its own memory budget, then its own cache file and its own place
 * in the shared Redis when the node has them.
 */
async function open(
  tenant: Tenant,
  logger: Logger,
  access: Pick<TenantNodeOptions, "hostname" | "allowedHosts">,
  places: Places,
): Promise<Served> {
  const adminToken = randomBytes(32).toString("base64url");
  const place = placeOf(tenant);
  const dir = places.cacheDir && join(places.cacheDir, place);
  const common = {
    adminToken,
    logger: logger.child({ tenant: tenant.name }),
    hostname: access.hostname,
    allowedHosts: access.allowedHosts,
    tenant: tenant.name,
    cacheFile: dir ? join(dir, "cache.db") : (false as const),
    ...(places.redis && {
      redis: tenantRedis(places.redis, `${places.redisPrefix}tenant:${place}:`),
    }),
    ...(tenant.memoryBytes && { memory: { maxBytes: tenant.memoryBytes } }),
  };
  if (dir) mkdirSync(dir, { recursive: true });
  const node =
    "database" in tenant.source
      ? await createNodeEdgecache({
          ...common,
          database: tenant.source.database,
          ...(tenant.ttl !== undefined && { ttl: tenant.ttl }),
        })
      : await createNodeProxy({
          ...common,
          origins: [
            { origin: tenant.source.origin, ...(tenant.ttl !== undefined && { ttl: tenant.ttl }) },
          ],
        });
  // A node joining a shared log bypasses its cache until it holds a lease: its first
  // request waits for that instead (a round trip or two), or goes on without it.
  for (let waited = 0; places.redis && !node.cache.log.trusted() && waited < LEASE_WAIT_MS; ) {
    await new Promise((done) => setTimeout(done, 10));
    waited += 10;
  }
  const close = () => node.close();
  return {
    tenant,
    fetch: (request, env) => node.app.fetch(request, env),
    findHit: "proxy" in node ? hitFinder(node.proxy) : dataApiHits(node.cache),
    adminToken,
    metrics: node.metrics,
    stats: () => node.cache.stats(),
    close,
    async drop() {
      // Through its change log: every node serving it (and the shared tier) lets go too.
      await node.cache.invalidate({ prefix: "" }).catch(() => {});
      await close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A tenant's place in the node's Redis: its own prefix, so its own log and entries. */
function tenantRedis(setting: RedisSetting, prefix: string): RedisSetting {
  return typeof setting === "string" ? { url: setting, prefix } : { ...setting, prefix };
}

/** Removes the cache folders of tenants that are gone (deleted while no node ran). */
function removeOthers(cacheDir: string, keep: Set<string>): void {
  let names: string[];
  try {
    names = readdirSync(cacheDir);
  } catch {
    return; // none yet
  }
  for (const name of names) {
    if (!keep.has(name)) rmSync(join(cacheDir, name), { recursive: true, force: true });
  }
}

/** Records of counts summed key by key, every key present (0 with no record). */
function sumByKind<K extends string>(
  keys: readonly K[],
  records: Record<K, number>[],
): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of keys) out[k] = records.reduce<number>((n, r) => n + r[k], 0);
  return out;
}

/**
 * Several tenants' stats as one: counters and tiers summed by name; latency quantiles
 * cannot be summed, so the node's are the worst tenant's (the mean is weighted).
 */
export function sumStats(all: CacheStats[]): CacheStats {
  const sum = (pick: (s: CacheStats) => number) => all.reduce((n, s) => n + pick(s), 0);
  const tiers = new Map<string, CacheStats["tiers"][number]>();
  for (const t of all.flatMap((s) => s.tiers)) {
    const into = tiers.get(t.name);
    if (!into) tiers.set(t.name, { ...t });
    else {
      into.hits += t.hits;
      into.misses += t.misses;
      into.hitRate = hitRate(into.hits, into.misses);
      into.errors += t.errors;
      for (const k of ["entries", "bytes", "evictions"] as const) {
        if (t[k] !== undefined) into[k] = (into[k] ?? 0) + t[k];
      }
    }
  }
  const count = sum((s) => s.sourceLatencyMs.count);
  const worst = (q: "p50" | "p95" | "p99") => Math.max(0, ...all.map((s) => s.sourceLatencyMs[q]));
  const reads = {
    hits: sum((s) => s.hits),
    staleHits: sum((s) => s.staleHits),
    misses: sum((s) => s.misses),
    bypasses: sum((s) => s.bypasses),
  };
  return {
    ...reads,
    hitRate: readHitRate(reads),
    // On while any tenant caches (tenants cannot turn caching off today).
    enabled: all.length === 0 || all.some((s) => s.enabled),
    loads: sum((s) => s.loads),
    loadErrors: sum((s) => s.loadErrors),
    fenced: sum((s) => s.fenced),
    capturedApplied: sum((s) => s.capturedApplied),
    refused: sum((s) => s.refused),
    replayed: sum((s) => s.replayed),
    awaited: sum((s) => s.awaited),
    writes: sum((s) => s.writes),
    invalidations: sum((s) => s.invalidations),
    rehydrations: sum((s) => s.rehydrations),
    patches: sum((s) => s.patches),
    patchesShared: sum((s) => s.patchesShared),
    resets: sum((s) => s.resets),
    indexedKeys: sum((s) => s.indexedKeys),
    index: {
      keys: sum((s) => s.index.keys),
      bytes: sum((s) => s.index.bytes),
      maxBytes: sum((s) => s.index.maxBytes),
      evictions: sum((s) => s.index.evictions),
    },
    notFound: {
      entries: sum((s) => s.notFound.entries),
      maxEntries: sum((s) => s.notFound.maxEntries),
      evictions: sum((s) => s.notFound.evictions),
    },
    log: { name: "per tenant", seq: 0, lease: all.every((s) => s.log.lease), failures: 0 },
    redis: {
      commands: sumByKind(
        COST_KINDS,
        all.map((s) => s.redis.commands),
      ),
      trips: sumByKind(
        COST_KINDS,
        all.map((s) => s.redis.trips),
      ),
      requests: sumByKind(
        ["hit", "miss", "write"],
        all.map((s) => s.redis.requests),
      ),
    },
    sourceLatencyMs: {
      count,
      mean: count ? sum((s) => s.sourceLatencyMs.mean * s.sourceLatencyMs.count) / count : 0,
      p50: worst("p50"),
      p95: worst("p95"),
      p99: worst("p99"),
    },
    tiers: [...tiers.values()],
  };
}
