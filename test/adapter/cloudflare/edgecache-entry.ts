// Bundled by the Worker tests (test/adapter/cloudflare/edgecache-workers.ts): the Worker entry as a user
// builds it, over the demo seeded small into the test's local D1, with the options the test
// passes as JSON in OPTIONS. With DISTANCE (JSON, see distance.ts) its bindings are at that
// distance, and with DB_REPLICA that database plays a D1 replica lagging behind DB. With
// RECYCLE_EVERY the isolate starts its Worker over every that many data requests (a new
// isolate's cache and log follower, the shared tiers as they are), and WITHHOLD_HISTORY
// takes the log's history out of the object's replies, as before the object kept one
// (bench/workers-recycle.ts).

import { ChangeLogObject as LogObject } from "../../../src/adapter/cloudflare/change-log-object.ts";
import {
  type EdgecacheEnv,
  type EdgecacheWorker,
  type ExecutionContextLike,
  edgecacheWorker,
} from "../../../src/adapter/cloudflare/worker.ts";
import { demoViews } from "../../../src/demo/seed.ts";
import { seedD1Demo } from "../../../src/demo/seed-d1.ts";
import type { D1DatabaseLike } from "../../../src/sources/d1.ts";
import {
  atDistance,
  calls,
  type DistanceOptions,
  link,
  NO_DISTANCE,
  objectsAt,
  ReplicatedD1,
} from "./distance.ts";

/**
 * The log's objects, with their own calls to each other (follower mode) across each region's
 * round trip from the log's object: REGION_RTT, JSON `{ region: ms }`. With DB_REPLICA their
 * `DB` (what the capture drain reads) is the replicated one, as the isolates' is: its
 * sessions have bookmarks, and its writes (the drained rows' deletes) reach the replica.
 * `/_test/restart` resets the object (workerd's `abort`): its next call, or its alarm, finds a
 * new instance over the same storage, as after an eviction.
 */
export class ChangeLogObject extends LogObject {
  readonly #state: { abort?(reason?: string): void };

  constructor(
    state: ConstructorParameters<typeof LogObject>[0],
    env: Env & { CHANGE_LOG: Parameters<typeof objectsAt>[0]; REGION_RTT?: string },
  ) {
    super(state, {
      ...env,
      CHANGE_LOG: objectsAt(env.CHANGE_LOG, JSON.parse(env.REGION_RTT ?? "{}")),
      ...(env.DB_REPLICA && { DB: new ReplicatedD1(env.DB, NO_DISTANCE, replication(env)) }),
    });
    this.#state = state as { abort?(reason?: string): void };
  }

  override async fetch(request: Request): Promise<Response> {
    if (new URL(request.url).pathname === "/_test/restart") this.#state.abort?.("restart");
    return super.fetch(request);
  }
}

type Env = EdgecacheEnv & {
  DEMO_USERS: string;
  DEMO_ORDERS: string;
  OPTIONS: string;
  DISTANCE?: string;
  DB_REPLICA?: D1DatabaseLike;
  REPLICA_LAG_MS?: string;
  IGNORE_BOOKMARKS?: string;
  RECYCLE_EVERY?: string;
  WITHHOLD_HISTORY?: string;
};

let worker: EdgecacheWorker<Env> | undefined;
let far: Env | undefined;
/** Every Worker this isolate made (one, unless RECYCLE_EVERY), and the data requests so far. */
const made: EdgecacheWorker<Env>[] = [];
let dataRequests = 0;

function workerFor(env: Env, path = ""): EdgecacheWorker<Env> {
  const every = Number(env.RECYCLE_EVERY ?? 0);
  if (every > 0 && path.startsWith("/v1/") && dataRequests++ % every === 0) worker = undefined;
  if (!worker) made.push(newWorker(env));
  worker = made.at(-1)!;
  return worker;
}

function newWorker(env: Env): EdgecacheWorker<Env> {
  return edgecacheWorker<Env>({
    views: demoViews,
    prepare: async (env) => {
      await seedD1Demo(env.DB, { users: Number(env.DEMO_USERS), orders: Number(env.DEMO_ORDERS) });
      // The schema and the seed are old news to a replica; what the test writes is not.
      if (env.DB instanceof ReplicatedD1) await env.DB.catchUp();
    },
    ...JSON.parse(env.OPTIONS),
  });
}

/** The stats of every Worker this isolate made, added up: tier hits, loads and refusals. */
async function madeStats(env: Env): Promise<Response> {
  const total = { workers: made.length, loads: 0, refused: 0, tiers: {} as Record<string, number> };
  for (const w of made) {
    const stats = (await w.isolate(env)).cache.stats();
    total.loads += stats.loads;
    total.refused += stats.refused;
    for (const t of stats.tiers) total.tiers[t.name] = (total.tiers[t.name] ?? 0) + t.hits;
  }
  return Response.json(total);
}

/** The log's namespace with the history taken out of every reply (see WITHHOLD_HISTORY). */
function withheld(namespace: Env["CHANGE_LOG"]): Env["CHANGE_LOG"] {
  return {
    idFromName: (name) => namespace.idFromName(name),
    get(id, options) {
      const stub = namespace.get(id, options);
      return {
        async fetch(request) {
          const res = await stub.fetch(request);
          if (!res.ok) return res;
          const { history: _, ...rest } = (await res.json()) as Record<string, unknown>;
          return Response.json(rest);
        },
      };
    },
  };
}

/** The replica of DB the test set up, if any (see distance.ts). */
function replication(env: Env): DistanceOptions {
  return {
    replica: env.DB_REPLICA,
    lagMs: env.REPLICA_LAG_MS ? Number(env.REPLICA_LAG_MS) : undefined,
    ignoreBookmarks: env.IGNORE_BOOKMARKS === "true",
  };
}

/** The bindings as this isolate sees them: at its distance, when the test set one. */
function envOf(env: Env): Env {
  if (env.WITHHOLD_HISTORY === "true") {
    far ??= { ...env, CHANGE_LOG: withheld(env.CHANGE_LOG) };
    return far;
  }
  if (!env.DISTANCE && !env.DB_REPLICA) return env;
  far ??= atDistance(
    env,
    { ...NO_DISTANCE, ...JSON.parse(env.DISTANCE ?? "{}") },
    replication(env),
  );
  return far;
}

/**
 * Statements sent as JSON (`{ statements: [{ sql, params }] }`) run straight at D1's
 * primary, around edgecache, through the replicated binding: a write made so reaches the
 * replica as any write to the primary does, once a session's bookmark asks for it.
 */
async function runAtPrimary(request: Request, db: D1DatabaseLike): Promise<Response> {
  const { statements } = (await request.json()) as {
    statements: { sql: string; params: unknown[] }[];
  };
  try {
    const prepared = statements.map((s) => db.prepare(s.sql).bind(...s.params));
    const answers = await db.batch(prepared);
    return Response.json({ results: answers.map((a) => a.results) });
  } catch (err) {
    return Response.json({ error: String((err as Error)?.message ?? err) }, { status: 500 });
  }
}

export default {
  fetch: (request: Request, env: Env, ctx: ExecutionContextLike) => {
    const path = new URL(request.url).pathname;
    // What this isolate's bindings were asked (benchmarks: calls per request).
    if (path === "/_distance/calls") return Response.json(calls);
    // Cuts or mends this isolate's link to the Durable Object (a partition).
    if (path === "/_distance/cut" || path === "/_distance/mend") {
      link.object = path === "/_distance/mend";
      return Response.json(link);
    }
    // Cuts or mends a region's follower from the log's object: asked of the isolate whose
    // script hosts the objects (the first), since the objects share its module state.
    const region = new URL(request.url).searchParams.get("region") ?? "";
    if (path === "/_distance/cut-region") link.cut.add(region);
    if (path === "/_distance/mend-region") link.cut.delete(region);
    if (path.endsWith("-region")) return Response.json({ cut: [...link.cut] });
    if (path === "/_distance/primary" && env.DB_REPLICA)
      return runAtPrimary(request, envOf(env).DB);
    if (path === "/_isolates/stats") return madeStats(envOf(env));
    return workerFor(env, path).fetch(request, envOf(env), ctx);
  },
  scheduled: (controller: unknown, env: Env, ctx: ExecutionContextLike) =>
    workerFor(env).scheduled(controller, envOf(env), ctx),
};
