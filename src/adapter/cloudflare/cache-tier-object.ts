import { Cache } from "../../core/cache/index.ts";
import { badOption, checkOptionNames, type OptionNames } from "../../core/errors.ts";
import type { DurableObjectNamespaceLike } from "../../durable/rpc.ts";
import { DurableChangeLog } from "../../log/durable-object.ts";
import {
  durableObjectStore,
  PRECOMPUTE_OBJECT,
  type TierNamespaceLike,
} from "../../stores/durable-object.ts";
import { type SqlStorageLike, TierHost } from "../../stores/durable-object-host.ts";
import { objectLogger } from "./logger.ts";
import { tierShards } from "./variables.ts";

/** The bindings the tier's objects read: themselves, and the change log for the precompute. */
export interface TierEnv {
  /** The namespace of this class: the precompute writes to the shards through it. */
  CACHE_TIER: TierNamespaceLike;
  /** The change log (`ChangeLogObject`): each precomputed value is set through it. */
  CHANGE_LOG: DurableObjectNamespaceLike;
  /** The shard count, as the Worker reads it (over the `shards` option). */
  EDGECACHE_TIER_SHARDS?: string;
  /** The Worker's log level: `silent` quiets the precompute's failures. */
  EDGECACHE_LOG_LEVEL?: string;
}

/** The part of a SQLite-backed Durable Object's `ctx` the tier's objects use. */
export interface TierStateLike {
  storage: {
    sql: SqlStorageLike;
    getAlarm(): Promise<number | null>;
    setAlarm(scheduledTime: number): Promise<void>;
  };
}

/**
 * An application's work that the object's alarm runs every `every` ms, a finer schedule than
 * a cron trigger's one minute. `run` gets a cache over the Durable Object tier and the change
 * log; what it sets there (`cache.set`) is one strongly consistent copy that every isolate
 * reads, and the set goes through the log, so every isolate drops its own older copy at its
 * next sync: all isolates serve the new value from then on.
 */
export interface Precompute<E extends TierEnv = TierEnv> {
  /** ms between the starts of two runs; at least MIN_PRECOMPUTE_MS. */
  every: number;
  run(cache: Cache, env: E): Promise<unknown>;
}

export interface CacheTierObjectOptions<E extends TierEnv = TierEnv> {
  /**
   * As the Workers' `tierShards` (the same number). Default 1. The variable
   * `EDGECACHE_TIER_SHARDS`, read by both, sets it in one place.
   */
  shards?: number;
  /** The change log's object name, as the Workers' `logName`. Default `"edgecache"`. */
  logName?: string;
  precompute?: Precompute<E>;
}

/** A precompute runs at most this often: each run is at least a log append and a set. */
export const MIN_PRECOMPUTE_MS = 1000;

const C = "durable-object";

/** The options CacheTierObjectOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<CacheTierObjectOptions> = {
  logName: true,
  precompute: true,
  shards: true,
};

/** What the precompute object reports (`precompute/stats`). */
export interface PrecomputeStats {
  every: number | null;
  runs: number;
  failures: number;
  lastRunAt: number | null;
  lastError: string | null;
}

type TierObjectClass = new (
  state: TierStateLike,
  env: TierEnv,
) => {
  fetch(request: Request): Promise<Response>;
  alarm(): Promise<void>;
};

/**
 * The Durable Object class of the tier (`durableObjectStore`), with an optional precompute.
 * Bind it as `CACHE_TIER` in `wrangler.jsonc` (a `durable_objects` binding and the class in
 * `new_sqlite_classes`: it keeps entries in the object's SQLite) and export it from the Worker.
 * The objects named `tier:<n>` each hold one shard; the object `tier:precompute` runs the
 * precompute on its alarm, armed by the first isolate that opens with `CACHE_TIER` bound (and
 * by each cron run), then re-armed by each run, before the application's work, so a run that
 * fails or runs long does not stop the next.
 *
 * @example
 * ```ts
 * export const CacheTierObject = cacheTierObject({
 *   precompute: {
 *     every: 30_000,
 *     run: async (cache, env) => cache.set("totals", await totals(env.DB), { ttl: 60_000 }),
 *   },
 * });
 * ```
 */
export function cacheTierObject<E extends TierEnv = TierEnv>(
  options: CacheTierObjectOptions<E> = {},
): TierObjectClass {
  if (typeof options !== "object" || options === null) {
    badOption(C, "options", "an object", options);
  }
  checkOptionNames(C, options, OPTIONS);
  const { precompute, shards = 1, logName } = options;
  if (precompute !== undefined) {
    if (!(precompute.every >= MIN_PRECOMPUTE_MS) || !Number.isFinite(precompute.every)) {
      badOption(C, "precompute.every", `ms, at least ${MIN_PRECOMPUTE_MS}`, precompute.every);
    }
    if (typeof precompute.run !== "function") {
      badOption(C, "precompute.run", "a function", precompute.run);
    }
  }
  return class TierObject {
    readonly #state: TierStateLike;
    readonly #env: E;
    #host: TierHost | undefined;
    #precompute: { cache: Cache; log: DurableChangeLog } | undefined;
    #counters: PrecomputeCounters | undefined;

    constructor(state: TierStateLike, env: TierEnv) {
      this.#state = state;
      this.#env = env as E;
    }

    async fetch(request: Request): Promise<Response> {
      const op = new URL(request.url).pathname.slice(1);
      if (op === "precompute/start") {
        // Alarms outlive restarts: one already set is the schedule.
        if (precompute && (await this.#state.storage.getAlarm()) === null) {
          await this.#state.storage.setAlarm(Date.now());
        }
        return Response.json(this.#stats());
      }
      if (op === "precompute/stats") return Response.json(this.#stats());
      this.#host ??= new TierHost(this.#state.storage.sql);
      const now = Number(request.headers.get("x-now"));
      const body = new Uint8Array(await request.arrayBuffer());
      return this.#host.handle(op, body, Number.isFinite(now) && now > 0 ? now : Date.now());
    }

    async alarm(): Promise<void> {
      if (!precompute) return;
      const started = Date.now();
      await this.#state.storage.setAlarm(started + precompute.every);
      const counters = this.#stored();
      try {
        this.#precompute ??= precomputeCache(this.#env, tierShards(this.#env, shards), logName);
        const { cache, log } = this.#precompute;
        // Brought up to the log's head, so what the run sets is stored at a position no older
        // than the writes acknowledged before it began.
        await log.sync();
        await precompute.run(cache, this.#env);
        await cache.drain();
        counters.ran(started);
      } catch (error) {
        counters.ran(started, String((error as Error)?.message ?? error));
        objectLogger(this.#env).error(`[edgecache] [${C}] precompute failed:`, error);
      }
    }

    #stored(): PrecomputeCounters {
      this.#counters ??= new PrecomputeCounters(this.#state.storage.sql);
      return this.#counters;
    }

    #stats(): PrecomputeStats {
      return { every: precompute?.every ?? null, ...this.#stored().read() };
    }
  };
}

/**
 * The precompute's counters in the object's SQLite, so they outlive the object: evicted
 * between two runs (idle for a few seconds, a deploy), it would start over at 0 and report no
 * last run. The object runs one event at a time between awaits, and this code never awaits.
 */
class PrecomputeCounters {
  readonly #sql: SqlStorageLike;

  constructor(sql: SqlStorageLike) {
    this.#sql = sql;
    sql.exec(
      "CREATE TABLE IF NOT EXISTS precompute_stats (id INTEGER PRIMARY KEY CHECK (id = 1), runs INTEGER NOT NULL, failures INTEGER NOT NULL, last_run_at INTEGER, last_error TEXT)",
    );
    sql.exec("INSERT OR IGNORE INTO precompute_stats (id, runs, failures) VALUES (1, 0, 0)");
  }

  read(): Omit<PrecomputeStats, "every"> {
    for (const row of this.#sql.exec(
      "SELECT runs, failures, last_run_at, last_error FROM precompute_stats WHERE id = 1",
    )) {
      return {
        runs: Number(row.runs),
        failures: Number(row.failures),
        lastRunAt: row.last_run_at === null ? null : Number(row.last_run_at),
        lastError: row.last_error === null ? null : String(row.last_error),
      };
    }
    return { runs: 0, failures: 0, lastRunAt: null, lastError: null };
  }

  /** A run that started at `at` ended: well, or with `error` (kept until the next failure). */
  ran(at: number, error?: string): void {
    if (error === undefined) {
      this.#sql.exec(
        "UPDATE precompute_stats SET runs = runs + 1, last_run_at = ? WHERE id = 1",
        at,
      );
    } else {
      this.#sql.exec(
        "UPDATE precompute_stats SET failures = failures + 1, last_run_at = ?, last_error = ? WHERE id = 1",
        at,
        error,
      );
    }
  }
}

/** The class with no precompute: the tier alone. */
export const CacheTierObject = cacheTierObject();

/** The precompute's cache: the tier alone (no memory of its own), on the change log. */
function precomputeCache(
  env: TierEnv,
  shards: number,
  logName: string | undefined,
): { cache: Cache; log: DurableChangeLog } {
  if (typeof env?.CACHE_TIER?.idFromName !== "function") {
    badOption(C, "env.CACHE_TIER", "the tier's Durable Object binding", env?.CACHE_TIER);
  }
  if (typeof env.CHANGE_LOG?.idFromName !== "function") {
    badOption(C, "env.CHANGE_LOG", "the change log's Durable Object binding", env.CHANGE_LOG);
  }
  const log = new DurableChangeLog({ namespace: env.CHANGE_LOG, name: logName });
  const cache = new Cache({
    tiers: [durableObjectStore({ namespace: env.CACHE_TIER, shards })],
    log,
  });
  return { cache, log };
}

/** Arms the precompute object's alarm if the class has a precompute (idempotent). */
export function startPrecompute(namespace: TierNamespaceLike): Promise<PrecomputeStats> {
  return askPrecompute(namespace, "start");
}

/**
 * The precompute's counters (runs, failures, the last run and error), kept in its object's
 * storage, so they count every run since the class was deployed: `precomputeStats(env.CACHE_TIER)`.
 */
export function precomputeStats(namespace: TierNamespaceLike): Promise<PrecomputeStats> {
  return askPrecompute(namespace, "stats");
}

async function askPrecompute(
  namespace: TierNamespaceLike,
  op: "start" | "stats",
): Promise<PrecomputeStats> {
  const stub = namespace.get(namespace.idFromName(`tier:${PRECOMPUTE_OBJECT}`) as never);
  const res = await stub.fetch(
    new Request(`https://cache-tier/precompute/${op}`, { method: "POST" }),
  );
  if (!res.ok) throw new Error(`[edgecache] [${C}] precompute/${op}: ${res.status}`);
  return (await res.json()) as PrecomputeStats;
}
