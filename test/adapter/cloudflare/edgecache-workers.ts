import { Miniflare, type MiniflareOptions } from "miniflare";
import type { CapturingSource } from "../../../src/core/capture-feed.ts";
import { demoViews } from "../../../src/demo/seed.ts";
import { type D1DatabaseLike, type D1StatementLike, d1Source } from "../../../src/sources/d1.ts";
import type { Source } from "../../../src/sources/source.ts";
import { bundle, COMPATIBILITY_DATE } from "../../helpers/workerd.ts";
import type { Distance } from "./distance.ts";

/**
 * Several copies of the edgecache Worker inside one workerd: each its own isolate (its own
 * memory tier), all bound to one local D1 database, one KV namespace, the Cache API and one
 * Durable Object change log, as isolates of one deployed Worker are.
 */
export interface EdgecacheWorkers {
  mf: Miniflare;
  /** Runs the cron trigger in the isolate `name`. */
  scheduled(name: string): Promise<void>;
  /** A request to the isolate `name`, as from a loopback client. */
  fetch(name: string, path: string, init?: RequestInit): Promise<Response>;
  /** The D1 database as a source of its own: what it holds, never through a cache. */
  fresh(): Promise<Source & CapturingSource>;
  /** The isolate `name` over HTTP (with `directSockets`). */
  url(name: string): Promise<URL>;
  /**
   * The D1 database itself, around the Worker (as `wrangler d1 execute` or another Worker).
   * With `replica`, its statements run at the primary through the replicated binding, so
   * its writes reach the replica as every write to the primary does (when a bookmark asks).
   */
  direct(): Promise<D1DatabaseLike>;
  close(): Promise<void>;
}

export async function startEdgecacheWorkers(options: {
  names: string[];
  mode?: "strict" | "lease" | "follower" | "session";
  leaseMs?: number;
  /**
   * Follower mode: per isolate name, its region (EDGECACHE_REGION), and per region, the round
   * trip between its follower and the log's object (test/adapter/cloudflare/distance.ts `objectsAt`).
   */
  regions?: Record<string, string>;
  regionRtt?: Record<string, number>;
  demo?: { users: number; orders: number };
  /** edgecacheWorker options (JSON). */
  options?: Record<string, unknown>;
  /** Per isolate name, its distance from the object, D1 and KV (test/adapter/cloudflare/distance.ts). */
  distance?: Record<string, Partial<Distance>>;
  /**
   * A second local D1 database plays a replica of the first, behind it until a session's
   * bookmark (or `lagMs`) makes it replay the writes (test/adapter/cloudflare/distance.ts).
   */
  replica?: { lagMs?: number; ignoreBookmarks?: boolean };
  /** Each isolate listens on a port of its own (`url(name)`), as the benchmarks need. */
  directSockets?: boolean;
  /** EDGECACHE_CAPTURE_MS: the interval of the D1 capture drain's alarm. */
  captureMs?: number;
  /** Per isolate name, more of its variables (`EDGECACHE_CACHE: "off"`). */
  vars?: Record<string, Record<string, string>>;
  /** Where workerd's console lines go (miniflare's handleRuntimeStdio). */
  stdio?: MiniflareOptions["handleRuntimeStdio"];
}): Promise<EdgecacheWorkers> {
  const script = await bundle(new URL("./edgecache-entry.ts", import.meta.url));
  const { names, mode = "strict", leaseMs = 2000, demo = { users: 60, orders: 240 } } = options;
  const first = names[0]!;
  const mf = new Miniflare({
    ...(options.stdio && { handleRuntimeStdio: options.stdio }),
    workers: [
      ...names.map((name) => ({
        name,
        modules: true,
        script,
        compatibilityDate: COMPATIBILITY_DATE,
        d1Databases: {
          DB: "edgecache-db",
          ...(options.replica ? { DB_REPLICA: "edgecache-replica" } : {}),
        },
        kvNamespaces: { CACHE: "edgecache-kv" },
        ...(options.directSockets ? { unsafeDirectSockets: [{ port: 0 }] } : {}),
        durableObjects: { CHANGE_LOG: { className: "ChangeLogObject", scriptName: first } },
        bindings: {
          EDGECACHE_LOG_MODE: mode,
          EDGECACHE_LEASE_MS: String(leaseMs),
          ...(options.regions?.[name] ? { EDGECACHE_REGION: options.regions[name] } : {}),
          REGION_RTT: JSON.stringify(options.regionRtt ?? {}),
          DEMO_USERS: String(demo.users),
          DEMO_ORDERS: String(demo.orders),
          OPTIONS: JSON.stringify(options.options ?? {}),
          ...(options.distance?.[name] ? { DISTANCE: JSON.stringify(options.distance[name]) } : {}),
          ...(options.replica?.lagMs !== undefined
            ? { REPLICA_LAG_MS: String(options.replica.lagMs) }
            : {}),
          ...(options.replica?.ignoreBookmarks ? { IGNORE_BOOKMARKS: "true" } : {}),
          ...(options.captureMs !== undefined && {
            EDGECACHE_CAPTURE_MS: String(options.captureMs),
          }),
          ...options.vars?.[name],
        },
      })),
      {
        name: READER,
        modules: true,
        script: READER_SCRIPT,
        compatibilityDate: COMPATIBILITY_DATE,
        d1Databases: { DB: "edgecache-db" },
      },
    ],
  });
  await mf.ready;
  // Each Worker's `fetch`, read from miniflare's proxy once: reading a property of it is a
  // synchronous call into miniflare, whose own assertion failed once under load (a reply
  // that did not match its request). Calling the function read is not.
  type Send = (input: string, init?: RequestInit) => Promise<Response>;
  const fetches = new Map<string, Promise<Send>>();
  const fetchOf = (name: string): Promise<Send> => {
    let f = fetches.get(name);
    if (!f) {
      f = mf.getWorker(name).then((w) => {
        const worker = w as unknown as { fetch: typeof fetch };
        const call = worker.fetch;
        return (input, init) => call.call(worker, input, init);
      });
      fetches.set(name, f);
    }
    return f;
  };
  const workers: EdgecacheWorkers = {
    mf,
    async scheduled(name) {
      const worker = (await mf.getWorker(name)) as unknown as {
        scheduled(options: { cron: string }): Promise<{ outcome: string }>;
      };
      const { outcome } = await worker.scheduled({ cron: "*/5 * * * *" });
      if (outcome !== "ok") throw new Error(`scheduled: ${outcome}`);
    },
    async fetch(name, path, init = {}) {
      const send = await fetchOf(name);
      const headers = new Headers(init.headers);
      if (!headers.has("cf-connecting-ip")) headers.set("cf-connecting-ip", "127.0.0.1");
      return send(`http://127.0.0.1:8787${path}`, { ...init, headers });
    },
    async fresh() {
      return d1Source({ database: await workers.direct(), views: demoViews });
    },
    async direct() {
      // The Worker seeds D1 when its isolate opens, on its first request: open one first,
      // or the fresh source would find no tables.
      const opened = await workers.fetch(first, "/_edgecache/stats");
      if (!opened.ok) throw new Error(`opening ${first}: ${opened.status} ${await opened.text()}`);
      if (options.replica) {
        return d1OverFetch((init) => workers.fetch(first, "/_distance/primary", init));
      }
      const reader = await fetchOf(READER);
      return d1OverFetch((init) => reader("http://d1-reader/", init));
    },
    url: (name) => mf.unsafeGetDirectURL(name),
    close: () => mf.dispose(),
  };
  return workers;
}

/**
 * A Worker that runs the statements it is sent against the shared D1 and answers with their
 * results. The fresh source goes through it with an ordinary async fetch: miniflare's
 * `getD1Database` proxy makes a synchronous cross-thread call for every `prepare`, and under
 * load one of those once failed its own reply check in CI.
 */
const READER = "d1-reader";
const READER_SCRIPT = `export default {
  async fetch(request, env) {
    const { statements } = await request.json();
    try {
      const prepared = statements.map((s) => env.DB.prepare(s.sql).bind(...s.params));
      const results = statements.length === 1 ? [await prepared[0].all()] : await env.DB.batch(prepared);
      return Response.json({ results: results.map((r) => r.results) });
    } catch (err) {
      return Response.json({ error: String(err && err.message || err) }, { status: 500 });
    }
  },
};`;

interface Sent {
  sql: string;
  params: unknown[];
}

/** A D1DatabaseLike whose statements run in the Worker `send` reaches (the reader's protocol). */
function d1OverFetch(send: (init: RequestInit) => Promise<Response>): D1DatabaseLike {
  const run = async (statements: Sent[]): Promise<unknown[][]> => {
    const res = await send({
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ statements }),
    });
    const body = (await res.json()) as { results?: unknown[][]; error?: string };
    if (body.error !== undefined) throw new Error(body.error);
    return body.results!;
  };
  const statement = (sent: Sent): D1StatementLike & { sent: Sent } => ({
    sent,
    bind: (...params) => statement({ sql: sent.sql, params }),
    all: async () => ({ results: (await run([sent]))[0]! }),
    first: async () => (await run([sent]))[0]![0] ?? null,
  });
  return {
    prepare: (sql) => statement({ sql, params: [] }),
    batch: async (statements) =>
      (await run(statements.map((s) => (s as ReturnType<typeof statement>).sent))).map(
        (results) => ({ results }),
      ),
  };
}
