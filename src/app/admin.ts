import { type Context, Hono } from "hono";
import type { Cache } from "../core/cache/index.ts";
import { rowTag, tableTag } from "../core/deps/planner.ts";
import type { CacheEntry } from "../core/entries/entry.ts";
import {
  checkOptionNames,
  describeValue,
  EdgecacheError,
  type OptionNames,
} from "../core/errors.ts";
import { toPrometheus } from "../core/stats.ts";
import {
  addressSet,
  bearerToken,
  checkToken,
  constantTimeEqual,
  hostName,
  hostSet,
  isLoopbackClient,
  requestHost,
  sameOrigin,
} from "./access.ts";
import { bodyError, fields, readBody, type Schema } from "./body.ts";
import { dashboardPage } from "./dashboard.ts";
import { jsonOnly, limitBody, notFound, onError } from "./errors.ts";
import { cacheChecks, cacheFileCheck, type HealthChecks, healthHandler } from "./health.ts";
import type { CachingProxy } from "./proxy/index.ts";
import { decided, describeRule, learnFamilies, rulesReport } from "./proxy/learn/admin-report.ts";
import { checkRule, type RuleState, ruleId } from "./proxy/learn/rules.ts";
import {
  type ManifestSummary,
  manifestFamily,
  summarize,
  type UrlReport,
} from "./proxy/manifest/keeper.ts";
import { targetProblem } from "./proxy/manifest/parse.ts";
import { TAGS_UNCOUNTED } from "./proxy/purge.ts";
import { type QueryCacheView, queryCachesOption, queryShapesHandler } from "./query-shapes.ts";

export interface AdminOptions {
  cache: Cache;
  /** With a token every request needs `Authorization: Bearer <token>`. */
  token?: string;
  /**
   * The TCP peer's address, which the runtime adapter knows (undefined: unknown). Without
   * a token only loopback clients are answered.
   */
  peerAddress?: (c: Context) => string | undefined;
  /**
   * Addresses of reverse proxies whose X-Forwarded-For names the client (none): see
   * `isLoopbackClient` in access.ts for what is believed.
   */
  trustedProxies?: readonly string[];
  /**
   * Host names the admin API answers to besides localhost, 127.0.0.1 and [::1]; a request
   * naming another gets a 403 (a DNS-rebinding page names its own).
   */
  allowedHosts?: readonly string[];
  /**
   * The Prometheus exposition of `/metrics` and `/stats?format=prometheus` (the Node
   * adapter's prom-client registry, with histograms); without it, `toPrometheus` of the
   * stats.
   */
  metrics?: MetricsExposition;
  /**
   * Checks of `GET /health` besides the cache's own (tiers, log): the data API's `source`.
   */
  health?: HealthChecks;
  /** Proxy mode: `POST /purge` and `POST /warm` (absent without it). */
  proxy?: Pick<CachingProxy, "purge" | "warm"> & Partial<Pick<CachingProxy, "learn" | "serves">>;
  /**
   * Proxy mode with a manifest: its progress in `/stats` and `/metrics`, each URL's state at
   * `/manifest`. Node's keeper answers at once; a Worker's asks the manifest's Durable Object.
   */
  manifest?: ManifestView;
  /**
   * A Node node's cache file: whether it is in use, and why not when it could not be (in
   * `/stats`, and as the `cacheFile` check of `/health`, which passes: the node serves).
   */
  cacheFile?: { state: "on" | "off" | "none"; path?: string; code?: string };
  /**
   * The application's query caches by name (`{ drizzle: cache, kysely: dialect.cache, sql }`):
   * their names in `/stats`, and at `/queries` each one's query shapes with how exactly
   * each is followed and why not finer (the dashboard's "Query shapes").
   */
  queryCaches?: Readonly<Record<string, QueryCacheView>>;
  /**
   * A data API that follows change capture: `capture` in `/stats`, the captured changes this
   * node (or isolate) has applied, whichever node or drain read them from the change table.
   */
  capture?: () => CaptureView;
  now?: () => number;
}

/** Change capture as one node follows it (`capture` in `/stats`). */
export interface CaptureView {
  applied: number;
  /** From the database's record of a change to applied, ms (of the changes it read). */
  lagP50?: number;
  lagP99?: number;
  /** Node: whether capture is installed, and whether this node reads the change table. */
  installed?: boolean;
  leading?: boolean;
}

/** A manifest's state, wherever it is kept. */
export interface ManifestView {
  summary(): ManifestSummary | Promise<ManifestSummary>;
  report(): UrlReport[] | Promise<UrlReport[]>;
  /** Which node keeps it, where nodes share one keeper (Redis): null while none does. */
  keeper?(): Promise<string | null>;
}

/** A metrics client's text exposition. */
export interface MetricsExposition {
  contentType: string;
  text(): Promise<string>;
}

const COMPONENT = "admin";

/** The options AdminOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<AdminOptions> = {
  allowedHosts: true,
  cache: true,
  cacheFile: true,
  capture: true,
  health: true,
  manifest: true,
  metrics: true,
  now: true,
  peerAddress: true,
  proxy: true,
  queryCaches: true,
  token: true,
  trustedProxies: true,
};
const MAX_KEYS = 1000;
/** Keys of the tiers one listing reads at most (each is a read of its entry). */
const MAX_SCANNED = 10 * MAX_KEYS;
/** URLs one warm request may name. */
const MAX_WARM = 1000;
const URL_STATES: readonly string[] = ["cached", "failing", "uncacheable", "pending"];

// Each route's body, declared as data (body.ts checks it; any other body is a 400).
const { string, nonEmptyString, strings, oneOf, object, required } = fields;
const INVALIDATE = {
  key: string,
  keys: strings,
  tag: string,
  tags: strings,
  table: string,
  row: object(
    {
      table: required(string),
      id: required({
        expected: "a string or a number",
        accepts: (v): v is string | number => typeof v === "string" || typeof v === "number",
      }),
    },
    '{"table": string, "id": string | number}',
  ),
  prefix: nonEmptyString,
} satisfies Schema;
const PURGE = { tag: string, tags: strings, url: string, urls: strings, prefix: string };
const RULE_STATES = ["pinned", "rejected", "manual", "learned", "forget"] as const;
const RULE = {
  write: required(string),
  read: required(string),
  state: required(oneOf<RuleState | "forget">(RULE_STATES)),
} satisfies Schema;
const WARM = { url: string, urls: strings } satisfies Schema;

/**
 * The admin API, mounted under `/_edgecache`: stats (JSON or Prometheus), the cached keys
 * with their dependencies, size, age and TTL, one key's details, and manual invalidation;
 * in proxy mode also purge (by origin tag, URL or prefix) and warming.
 */
export function createAdminApi(options: AdminOptions): Hono {
  checkOptionNames(COMPONENT, options, OPTIONS);
  const { cache } = options;
  const queryCaches = queryCachesOption(options.queryCaches);
  const now = options.now ?? Date.now;
  const app = new Hono();
  app.onError(onError);

  // The dashboard's page holds no data: what it shows, it asks the routes below for, with
  // the token its user gives when they answer 401.
  app.get("/", dashboardPage);
  // Health, before who may ask is checked: a load balancer probes without a token, by
  // address. It says which part failed and a code at most, nothing a tenant's data leaks.
  const { cacheFile } = options;
  app.get(
    "/health",
    healthHandler({
      ...cacheChecks(cache),
      ...(cacheFile && { cacheFile: () => cacheFileCheck(cacheFile) }),
      ...options.health,
    }),
  );

  const trusted = addressSet(COMPONENT, "trustedProxies", options.trustedProxies);
  const hosts = hostSet(COMPONENT, "allowedHosts", options.allowedHosts);
  const token = options.token;
  checkToken(COMPONENT, 'option "token" (EDGECACHE_ADMIN_TOKEN)', token);
  // Who may ask is decided before anything else is read: the body's size and type after.
  app.use("*", async (c, next) => {
    const host = requestHost(c);
    if (!hosts.has(hostName(host))) {
      throw new EdgecacheError(
        "E_FORBIDDEN",
        COMPONENT,
        `host ${JSON.stringify(host)} is not one the admin API answers to (allowedHosts)`,
      );
    }
    if (!sameOrigin(c.req.header("origin"), host)) {
      throw new EdgecacheError(
        "E_FORBIDDEN",
        COMPONENT,
        "origin: cross-origin requests are refused",
      );
    }
    if (token) {
      const given = bearerToken(c.req.header("authorization"));
      if (given === undefined || !constantTimeEqual(given, token)) {
        throw new EdgecacheError("E_UNAUTHORIZED", COMPONENT, "a valid bearer token is required");
      }
    } else {
      const peer = options.peerAddress?.(c);
      if (!isLoopbackClient(peer, (h) => c.req.header(h), trusted)) {
        throw new EdgecacheError(
          "E_FORBIDDEN",
          COMPONENT,
          "admin API answers loopback clients only unless EDGECACHE_ADMIN_TOKEN is set",
        );
      }
    }
    await next();
  });
  app.use("*", limitBody, jsonOnly);

  app.notFound(notFound);

  const { metrics } = options;
  const { manifest } = options;
  const learn = options.proxy?.learn;
  // A metrics client (Node's) exposes the manifest's gauge and the learning counters itself.
  const prometheus = async (c: Context) =>
    metrics
      ? c.text(await metrics.text(), 200, { "content-type": metrics.contentType })
      : c.text(
          toPrometheus(cache.stats(), [
            ...(await manifestFamilies()),
            ...(learn ? learnFamilies(learn.stats) : []),
          ]),
          200,
          { "content-type": "text/plain; version=0.0.4" },
        );
  // The manifest's progress where it is kept elsewhere (a Worker's Durable Object) may be out
  // of reach: the cache's own stats still answer, with the fault in its place.
  const manifestProgress = async () => {
    try {
      return await manifest!.summary();
    } catch (error) {
      return { error: error instanceof EdgecacheError ? error.message : String(error) };
    }
  };
  async function manifestFamilies() {
    const progress = manifest && (await manifestProgress());
    return progress && !("error" in progress) ? [manifestFamily(progress)] : [];
  }
  app.get("/stats", async (c) =>
    c.req.query("format") === "prometheus"
      ? prometheus(c)
      : c.json({
          ...cache.stats(),
          ...(learn && { learn: { ...learn.stats } }),
          ...(manifest && { manifest: await manifestProgress() }),
          ...(cacheFile && { cacheFile }),
          ...(options.capture && { capture: options.capture() }),
          ...(queryCaches && { queryCaches: Object.keys(queryCaches) }),
        }),
  );
  app.get("/metrics", prometheus);
  app.get("/queries", queryShapesHandler(queryCaches));

  app.get("/changes", (c) => c.json({ changes: cache.recentChanges() }));

  app.get("/keys", async (c) => {
    const prefix = c.req.query("prefix") ?? "";
    const tag = c.req.query("tag");
    const keys = [];
    const listed = new Set<string>();
    for (const key of cache.keys({ prefix, tag })) {
      const reg = cache.registration(key);
      if (!reg || reg.expiresAt <= now()) continue;
      listed.add(key);
      const entry = await firstHeld(cache, key);
      keys.push({
        key,
        hits: reg.hits,
        expiresAt: reg.expiresAt,
        tags: reg.tags,
        lists: reg.lists,
        ...(entry && entrySummary(entry, now())),
      });
      if (keys.length >= MAX_KEYS) break;
    }
    // The index knows what was stored or read since the start; the tiers below memory hold
    // what an earlier run stored (the proxy's cache file after a restart) or another node.
    let scanned = 0;
    if (keys.length < MAX_KEYS) {
      for await (const key of cache.held(prefix)) {
        if (listed.has(key)) continue;
        listed.add(key);
        if (++scanned > MAX_SCANNED) break;
        const entry = await firstHeld(cache, key, true);
        if (!entry || (tag !== undefined && !entry.tags.includes(tag))) continue;
        keys.push({
          key,
          hits: 0,
          expiresAt: entry.staleUntil,
          tags: entry.tags,
          lists: entry.lists ?? [],
          ...entrySummary(entry, now()),
        });
        if (keys.length >= MAX_KEYS) break;
      }
    }
    return c.json({ keys, truncated: keys.length >= MAX_KEYS || scanned > MAX_SCANNED });
  });

  app.get("/keys/:key{.+}", async (c) => {
    const key = c.req.param("key"); // Hono has already percent-decoded it
    const reg = cache.registration(key);
    const held = await cache.inspect(key);
    const tiers = held.map((t) => ({ tier: t.tier, present: t.entry !== undefined }));
    const entry = held.find((t) => t.entry)?.entry;
    if (!entry && !reg) {
      throw new EdgecacheError("E_NOT_FOUND", COMPONENT, `key "${key}" is not cached`);
    }
    return c.json({
      key,
      tiers,
      hits: reg?.hits ?? 0,
      tags: entry?.tags ?? reg?.tags,
      lists: entry?.lists ?? reg?.lists,
      ...(entry && {
        status: entry.status,
        etag: entry.etag,
        ...entrySummary(entry, now()),
        headers: entry.headers,
      }),
    });
  });

  app.post("/invalidate", async (c) => {
    const b = await readBody(c, INVALIDATE, COMPONENT, '{"tag": "users#123-abc"}');
    const keys = both(b.key, b.keys);
    const tags = both(b.tag, b.tags);
    if (b.table !== undefined) tags.push(tableTag(b.table));
    if (b.row !== undefined) tags.push(rowTag(b.row.table, b.row.id));
    const { prefix } = b;
    if (keys.length === 0 && tags.length === 0 && prefix === undefined) {
      throw new EdgecacheError(
        "E_BAD_BODY",
        COMPONENT,
        "body: expected one of key, keys, tag, tags, table, row or prefix",
      );
    }
    const invalidated = await cache.invalidate({ keys, tags, prefix });
    return c.json({ invalidated });
  });

  const { proxy } = options;
  if (proxy) {
    app.post("/purge", async (c) => {
      const b = await readBody(c, PURGE, COMPONENT, '{"tags": ["users"]}');
      const tags = both(b.tag, b.tags);
      const urls = both(b.url, b.urls);
      for (const u of urls) {
        const problem = targetProblem(u);
        if (problem) throw bodyError(COMPONENT, "urls", `each ${problem}`, u);
      }
      const { prefix } = b;
      if (prefix !== undefined && !prefix.startsWith("/")) {
        throw bodyError(COMPONENT, "prefix", 'a path starting with "/"', prefix);
      }
      if (tags.length === 0 && urls.length === 0 && prefix === undefined) {
        throw new EdgecacheError(
          "E_BAD_BODY",
          COMPONENT,
          "body: expected one of tag, tags, url, urls or prefix",
        );
      }
      const purged = await proxy.purge({ tags, urls, prefix });
      return c.json({ purged, ...(tags.length > 0 && { uncounted: TAGS_UNCOUNTED }) });
    });

    if (learn) {
      // Learned invalidation: the rules with their evidence, and an operator's decisions.
      // Where rules are shared, the listing waits for them to be current (a new isolate's).
      app.get("/rules", async (c) => {
        await learn.current?.();
        return c.json(rulesReport(learn));
      });
      app.post("/rules", async (c) => {
        const b = await readBody(
          c,
          RULE,
          COMPONENT,
          '{"write": "PATCH /api/users/:id", "read": "/api/users/$1/profile", "state": "pinned"}',
        );
        const { write, read } = b;
        const problem = checkRule(write, read);
        if (problem) throw new EdgecacheError("E_BAD_BODY", COMPONENT, `body: ${problem}`);
        if (b.state === "forget") {
          const forgotten = learn.learner.remove(ruleId({ write, read }));
          await decided(learn);
          return c.json({ forgotten });
        }
        const rule = learn.learner.decide(write, read, b.state);
        await decided(learn);
        return c.json({ rule: describeRule(learn, rule) });
      });
    }

    app.get("/manifest", async (c) => {
      if (!manifest) {
        throw new EdgecacheError(
          "E_NOT_FOUND",
          COMPONENT,
          "no manifest: the proxy keeps URLs cached with --manifest or the config's manifest (on Workers: the manifest option or EDGECACHE_MANIFEST, and the MANIFEST binding)",
        );
      }
      const state = c.req.query("state");
      if (state !== undefined && !URL_STATES.includes(state)) {
        throw new EdgecacheError(
          "E_BAD_QUERY",
          COMPONENT,
          `state: expected one of ${URL_STATES.join(", ")}, got ${describeValue(state)}`,
        );
      }
      const [urls, keeper] = await Promise.all([manifest.report(), manifest.keeper?.()]);
      let lastRunAt: number | null = null;
      for (const u of urls)
        if (u.fetchedAt !== undefined) lastRunAt = Math.max(lastRunAt ?? 0, u.fetchedAt);
      return c.json({
        ...summarize(urls),
        ...(keeper !== undefined && { keeper, node: cache.log.node ?? null }),
        lastRunAt,
        urls: state === undefined ? urls : urls.filter((u) => u.state === state),
      });
    });

    app.post("/warm", async (c) => {
      const b = await readBody(c, WARM, COMPONENT, '{"urls": ["/v1/users"]}');
      const urls = both(b.url, b.urls);
      if (urls.length === 0 || urls.length > MAX_WARM) {
        throw bodyError(COMPONENT, "urls", `1 to ${MAX_WARM} URLs`, `${urls.length} URLs`);
      }
      // Paths are fetched as this request's host would fetch them.
      const base = new URL(c.req.url).origin;
      for (const u of urls) {
        // Warming goes straight to the proxy's routes, past the checks of a client's request.
        const problem = targetProblem(u) ?? warmHostProblem(u, hosts, proxy);
        if (problem) throw bodyError(COMPONENT, "urls", `each ${problem}`, u);
      }
      return c.json({ warmed: await proxy.warm(urls, base) });
    });
  }

  return app;
}

/** The live entry of `key` in the first tier that holds one (looking is not a read). */
async function firstHeld(
  cache: Cache,
  key: string,
  scanned = false,
): Promise<CacheEntry | undefined> {
  return (await cache.inspect(key, { scanned })).find((t) => t.entry)?.entry;
}

function entrySummary(entry: CacheEntry, now: number) {
  return {
    bytes: entry.body.byteLength,
    ageSeconds: Math.floor((now - entry.createdAt) / 1000),
    ttlSeconds: Math.floor((entry.freshUntil - now) / 1000),
  };
}

/**
 * Why warming an absolute URL is refused, or undefined: its host is told to the origin
 * (X-Forwarded-Host) and keys what is stored, so it must be a name the node answers to (the
 * admin API's, which the request's own Host is one of) or one the proxy's routes serve.
 */
function warmHostProblem(
  url: string,
  hosts: ReadonlySet<string>,
  proxy: Partial<Pick<CachingProxy, "serves">>,
): string | undefined {
  if (url.startsWith("/")) return undefined;
  const { host } = new URL(url);
  if (hosts.has(hostName(host)) || proxy.serves?.(host)) return undefined;
  return "a path, or a URL of a host the node answers to (allowedHosts) or a route's origin";
}

/** A body's one-value and many-values spellings of a field (`tag` and `tags`) together. */
function both(one: string | undefined, many: string[] | undefined): string[] {
  return [...(one === undefined ? [] : [one]), ...(many ?? [])];
}
