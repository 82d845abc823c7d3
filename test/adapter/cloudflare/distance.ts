/**
 * Distance for Workers tests and benchmarks, inside workerd: wraps the bindings a Worker
 * receives so that every call to the Durable Object, D1 or KV costs the round trip of a
 * simulated location (wrangler dev and miniflare put them all microseconds apart). Half the
 * round trip passes before the call reaches the binding, half before its answer is back, so
 * the object sees a call when a far isolate's call would arrive.
 *
 * D1 read replication is simulated too: with a second database as `replica`, writes go to
 * the primary and are logged there (with a bookmark, their log seq); the replica replays the
 * log only when a session's bookmark demands it or an entry is older than `lagMs`, so an
 * unconstrained read sees a snapshot that lags, as a real replica may. The log's tables carry
 * change capture's `_edgecache_` prefix, which the D1 source never serves (D1 reserves `_cf_`).
 *
 * It lives beside the edgecache Worker's harness (edgecache-workers.ts), whose entry
 * (edgecache-entry.ts) bundles it; bench/ imports it from here (bench/workers-tiers-entry.ts).
 */
import type {
  D1DatabaseLike,
  D1QueriesLike,
  D1SessionLike,
  D1StatementLike,
} from "../../../src/sources/d1.ts";

/** One location's round trips, in ms. */
export interface Distance {
  /** To the Durable Object (the change log and hot keys). */
  object: number;
  /** To D1's primary: queries outside a session, writes, a `first-primary` session's first query. */
  primary: number;
  /** To the nearest D1 replica: a session's reads. */
  replica: number;
  /** To KV. */
  kv: number;
  /** To the region's follower of the log (an object named `<log>@<region>`, follower mode). */
  follower: number;
  /** To the Durable Object read tier's shards (`CACHE_TIER`); default: `object`. */
  tier?: number;
}

export const NO_DISTANCE: Distance = { object: 0, primary: 0, replica: 0, kv: 0, follower: 0 };

export interface DistanceOptions {
  /** A second D1 database playing a replica of `DB` (see the top of this file). */
  replica?: D1DatabaseLike;
  /** The replica replays log entries older than this by itself; default: only when asked. */
  lagMs?: number;
  /**
   * The replica answers a session whatever its bookmark: what a Worker gets that reads
   * replicas without passing the bookmark of the writes it must see (the control that shows
   * the lag is there to be caught).
   */
  ignoreBookmarks?: boolean;
}

/** Calls made through the wrapped bindings of this isolate, per destination. */
export const calls = { object: 0, primary: 0, replica: 0, kv: 0, follower: 0, tier: 0 };

/**
 * Whether this isolate reaches the Durable Object: false cuts the link (calls fail). `cut`:
 * regions whose follower and the log's object no longer reach each other (see `objectsAt`).
 */
export const link = { object: true, cut: new Set<string>() };

/** The bindings the edgecache Worker reads, wrapped at `distance`. */
export interface DistanceEnv {
  CHANGE_LOG?: unknown;
  DB?: D1DatabaseLike;
  CACHE?: unknown;
  CACHE_TIER?: unknown;
}

/**
 * `env` with CHANGE_LOG, DB, CACHE and CACHE_TIER (those present) at `distance`; other fields
 * as they are.
 */
export function atDistance<E extends DistanceEnv>(
  env: E,
  distance: Distance,
  options: DistanceOptions = {},
): E & { DB: ReplicatedD1 } {
  const wrapped: Record<string, unknown> = { ...(env as Record<string, unknown>) };
  if (env.CHANGE_LOG) {
    wrapped.CHANGE_LOG = namespaceAt(env.CHANGE_LOG as object, (name) =>
      name.includes("@") ? distance.follower : distance.object,
    );
  }
  if (env.CACHE) wrapped.CACHE = callsAt(env.CACHE as object, distance.kv, "kv");
  if (env.CACHE_TIER) {
    wrapped.CACHE_TIER = namespaceAt(
      env.CACHE_TIER as object,
      () => distance.tier ?? distance.object,
      () => "tier",
    );
  }
  if (env.DB) wrapped.DB = new ReplicatedD1(env.DB, distance, options);
  return wrapped as unknown as E & { DB: ReplicatedD1 };
}

function pause(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

/** A call that travels half the round trip there and half back. */
async function across<T>(rtt: number, call: () => Promise<T>): Promise<T> {
  await pause(rtt / 2);
  try {
    return await call();
  } finally {
    await pause(rtt / 2);
  }
}

type Destination = keyof typeof calls;

/**
 * A Durable Object namespace whose stubs' calls (fetch or RPC) cross `rttTo(name)` of their
 * object, counted as `whatOf(name)` (the log: a follower when named `<log>@<region>`).
 */
function namespaceAt(
  namespace: object,
  rttTo: (name: string) => number,
  whatOf: (name: string) => Destination = (name) => (name.includes("@") ? "follower" : "object"),
): object {
  const names = new WeakMap<object, string>();
  return new Proxy(namespace, {
    get(target, prop) {
      const value = Reflect.get(target, prop) as unknown;
      if (typeof value !== "function") return value;
      if (prop === "idFromName") {
        return (name: string) => {
          const id = value.call(target, name) as object;
          names.set(id, name);
          return id;
        };
      }
      if (prop === "get" || prop === "getByName") {
        return (...args: unknown[]) => {
          const name =
            prop === "getByName" ? String(args[0]) : (names.get(args[0] as object) ?? "");
          return callsAt(value.apply(target, args) as object, rttTo(name), whatOf(name));
        };
      }
      return value.bind(target);
    },
  });
}

/** The part of a namespace binding `objectsAt` wraps. */
interface ObjectNamespace {
  idFromName(name: string): unknown;
  get(id: never, options?: unknown): { fetch(request: Request): Promise<Response> };
}

/**
 * The `CHANGE_LOG` binding of the objects themselves (the log's object pushing to a follower,
 * a follower renewing its lease with the log's object): such a call crosses its region's
 * round trip `rtts[region]`, and fails on arrival while the region is in `link.cut`. A
 * follower is named `<log>@<region>`; its calls to the log's object name it in their body
 * (`push`). Other calls pass as they are.
 */
export function objectsAt(
  namespace: ObjectNamespace,
  rtts: Record<string, number>,
): ObjectNamespace {
  const names = new WeakMap<object, string>();
  const regionAfter = (name: string) =>
    name.includes("@") ? name.slice(name.indexOf("@") + 1) : undefined;
  return {
    idFromName(name) {
      const id = namespace.idFromName(name) as object;
      names.set(id, name);
      return id;
    },
    get(id, options) {
      const name = names.get(id as object) ?? "";
      const stub = namespace.get(id, options);
      return {
        async fetch(request) {
          const body = (await request.clone().json()) as { push?: string };
          const region = regionAfter(name) ?? regionAfter(body.push ?? "");
          if (region === undefined) return stub.fetch(request);
          return across(rtts[region] ?? 0, async () => {
            if (link.cut.has(region)) {
              throw new Error(`[distance] region ${region} is cut from the log's object`);
            }
            return stub.fetch(request);
          });
        },
      };
    },
  };
}

/** Every method call on `target` crosses `rtt` (a KV namespace, a Durable Object stub). */
function callsAt(target: object, rtt: number, what: Destination): object {
  return new Proxy(target, {
    get(t, prop) {
      const value = Reflect.get(t, prop) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls[what]++;
        if (what === "object" && !link.object) {
          return Promise.reject(new Error("[distance] the link to the Durable Object is cut"));
        }
        return across(rtt, async () => value.apply(t, args));
      };
    },
  });
}

interface Sent {
  sql: string;
  params: unknown[];
}

interface Answer {
  results: Record<string, unknown>[];
  [more: string]: unknown;
}

/** A prepared statement of the wrapper: the SQL and values, run by whoever prepared it. */
class Statement implements D1StatementLike {
  constructor(
    readonly sent: Sent,
    readonly via: Queries,
  ) {}
  bind(...params: unknown[]): Statement {
    return new Statement({ sql: this.sent.sql, params }, this.via);
  }
  async all(): Promise<Answer> {
    return (await this.via.run([this]))[0]!;
  }
  async run(): Promise<Answer> {
    return this.all();
  }
  async first(column?: string): Promise<unknown> {
    const row = (await this.all()).results[0];
    if (row === undefined) return null;
    return column === undefined ? row : row[column];
  }
  async raw(): Promise<unknown[][]> {
    return (await this.all()).results.map((row) => Object.values(row));
  }
}

interface Queries extends D1QueriesLike {
  run(statements: Statement[]): Promise<Answer[]>;
}

const WRITE = /^\s*(insert|update|delete|replace|create|drop|alter|pragma\s+\w+\s*=)/i;

/** Bookmarks as D1's: strings that sort in commit order. */
const bookmarkOf = (seq: number) => `${String(seq).padStart(16, "0")}-replicated`;
const seqOf = (bookmark: string | null) => (bookmark ? Number.parseInt(bookmark, 10) : 0);

/**
 * A D1 binding at a distance, optionally with a lagging replica. Outside a session every
 * query goes to the primary (as D1 does); a session's reads go to the replica, which first
 * replays the primary's log up to the session's bookmark.
 */
export class ReplicatedD1 implements D1DatabaseLike, Queries {
  readonly #primary: D1DatabaseLike;
  readonly #replica: D1DatabaseLike | undefined;
  readonly #distance: Distance;
  readonly #lagMs: number;
  readonly #ignoreBookmarks: boolean;
  #ready: Promise<unknown> | undefined;

  constructor(primary: D1DatabaseLike, distance: Distance, options: DistanceOptions) {
    this.#primary = primary;
    this.#replica = options.replica;
    this.#distance = distance;
    this.#lagMs = options.lagMs ?? Number.POSITIVE_INFINITY;
    this.#ignoreBookmarks = options.ignoreBookmarks === true;
  }

  prepare(sql: string): Statement {
    return new Statement({ sql, params: [] }, this);
  }

  async batch(statements: D1StatementLike[]): Promise<Answer[]> {
    return this.run(statements as Statement[]);
  }

  async run(statements: Statement[]): Promise<Answer[]> {
    return (await this.atPrimary(statements)).answers;
  }

  withSession(constraintOrBookmark = "first-unconstrained"): D1SessionLike {
    return new Session(this, constraintOrBookmark);
  }

  /** Replays the whole log into the replica (a test's setup: the schema is not new). */
  async catchUp(): Promise<void> {
    if (!this.#replica) return;
    await this.#setUp();
    const head = await this.#primary
      .prepare("SELECT coalesce(max(seq), 0) AS seq FROM _edgecache_replication")
      .first();
    await this.#replay((head as { seq: number }).seq);
  }

  /** Runs statements at the primary; with a replica, writes are logged under a new bookmark. */
  async atPrimary(
    statements: Statement[],
  ): Promise<{ answers: Answer[]; bookmark: string | null }> {
    calls.primary++;
    return across(this.#distance.primary, async () => {
      const prepared = statements.map((s) => bound(this.#primary, s.sent));
      if (!this.#replica)
        return { answers: await this.#batch(this.#primary, prepared), bookmark: null };
      await this.#setUp();
      const writes = statements.filter((s) => WRITE.test(s.sent.sql)).map((s) => s.sent);
      const tail =
        writes.length > 0
          ? this.#primary
              .prepare(
                "INSERT INTO _edgecache_replication (at, statements) VALUES (?, ?) RETURNING seq",
              )
              .bind(Date.now(), JSON.stringify(writes))
          : this.#primary.prepare(
              "SELECT coalesce(max(seq), 0) AS seq FROM _edgecache_replication",
            );
      const answers = await this.#batch(this.#primary, [...prepared, tail]);
      const seq = Number(answers.pop()!.results[0]?.seq ?? 0);
      return { answers, bookmark: bookmarkOf(seq) };
    });
  }

  /** Runs reads at the replica, once it has replayed the log up to `atLeast`. */
  async atReplica(
    statements: Statement[],
    atLeast: string | null,
  ): Promise<{ answers: Answer[]; bookmark: string | null }> {
    calls.replica++;
    return across(this.#distance.replica, async () => {
      const replica = this.#replica;
      if (!replica) {
        const prepared = statements.map((s) => bound(this.#primary, s.sent));
        return { answers: await this.#batch(this.#primary, prepared), bookmark: null };
      }
      await this.#setUp();
      let target = this.#ignoreBookmarks ? 0 : seqOf(atLeast);
      if (Number.isFinite(this.#lagMs)) {
        const old = await this.#primary
          .prepare("SELECT coalesce(max(seq), 0) AS seq FROM _edgecache_replication WHERE at <= ?")
          .bind(Date.now() - this.#lagMs)
          .first();
        target = Math.max(target, (old as { seq: number }).seq);
      }
      await this.#replay(target);
      const answers = await this.#batch(replica, [
        ...statements.map((s) => bound(replica, s.sent)),
        replica.prepare("SELECT coalesce(max(seq), 0) AS seq FROM _edgecache_replicated"),
      ]);
      const seq = Number(answers.pop()!.results[0]?.seq ?? 0);
      return { answers, bookmark: bookmarkOf(seq) };
    });
  }

  async #batch(db: D1DatabaseLike, prepared: D1StatementLike[]): Promise<Answer[]> {
    return (await db.batch(prepared)) as Answer[];
  }

  #setUp(): Promise<unknown> {
    this.#ready ??= Promise.all([
      this.#primary
        .prepare(
          "CREATE TABLE IF NOT EXISTS _edgecache_replication (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, statements TEXT NOT NULL)",
        )
        .all(),
      this.#replica!.prepare(
        "CREATE TABLE IF NOT EXISTS _edgecache_replicated (seq INTEGER PRIMARY KEY)",
      ).all(),
    ]);
    return this.#ready;
  }

  /** Replays log entries into the replica, one batch each, until it holds `target`. */
  async #replay(target: number): Promise<void> {
    const replica = this.#replica!;
    for (;;) {
      const at = await replica
        .prepare("SELECT coalesce(max(seq), 0) AS seq FROM _edgecache_replicated")
        .first();
      const applied = (at as { seq: number }).seq;
      if (applied >= target) return;
      const { results } = (await this.#primary
        .prepare(
          "SELECT seq, statements FROM _edgecache_replication WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT 20",
        )
        .bind(applied, target)
        .all()) as { results: { seq: number; statements: string }[] };
      for (const entry of results) {
        const sent = JSON.parse(entry.statements) as Sent[];
        // The seq first: another isolate replaying the same entry makes this batch fail
        // whole (a primary key taken), so no entry is replayed twice.
        await replica
          .batch([
            replica.prepare("INSERT INTO _edgecache_replicated (seq) VALUES (?)").bind(entry.seq),
            ...sent.map((s) => bound(replica, s)),
          ])
          .catch(() => {});
      }
    }
  }
}

function bound(db: D1QueriesLike, { sql, params }: Sent): D1StatementLike {
  const statement = db.prepare(sql);
  return params.length > 0 ? statement.bind(...params) : statement;
}

/** A session as D1's binding keeps one: its constraint, then the newest bookmark seen. */
class Session implements D1SessionLike, Queries {
  #db: ReplicatedD1;
  #constraint: string;
  #bookmark: string | null;

  constructor(db: ReplicatedD1, constraintOrBookmark: string) {
    this.#db = db;
    this.#constraint = constraintOrBookmark;
    const given = constraintOrBookmark;
    this.#bookmark = given === "first-primary" || given === "first-unconstrained" ? null : given;
  }

  prepare(sql: string): Statement {
    return new Statement({ sql, params: [] }, this);
  }

  async batch(statements: D1StatementLike[]): Promise<Answer[]> {
    return this.run(statements as Statement[]);
  }

  getBookmark(): string | null {
    return this.#bookmark;
  }

  async run(statements: Statement[]): Promise<Answer[]> {
    const primary =
      statements.some((s) => WRITE.test(s.sent.sql)) ||
      (this.#constraint === "first-primary" && this.#bookmark === null);
    const { answers, bookmark } = primary
      ? await this.#db.atPrimary(statements)
      : await this.#db.atReplica(statements, this.#bookmark);
    if (bookmark !== null && (this.#bookmark === null || bookmark > this.#bookmark)) {
      this.#bookmark = bookmark;
    }
    return answers;
  }
}
