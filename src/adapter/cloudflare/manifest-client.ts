import type { ManifestView } from "../../app/admin.ts";
import {
  type KeepPolicy,
  keepPolicy,
  type ManifestKeeperOptions,
  type UrlReport,
} from "../../app/proxy/manifest/keeper.ts";
import { MANIFEST, manifestUrls } from "../../app/proxy/manifest/parse.ts";
import { badOption } from "../../core/errors.ts";
import { callObject, type DurableObjectNamespaceLike } from "../../durable/rpc.ts";
import type { SqlStorageLike } from "../../stores/durable-object-host.ts";

/** A proxy Worker's manifest options (docs/guides/workers/proxy.md, "Keeping URLs cached"). */
export interface ManifestOptions {
  /**
   * URLs kept cached: a manifest's lines (paths on the host of the Worker's first request, or
   * http(s) URLs; patterns such as `{1..20}`), as `edgecache proxy --manifest`. Needs the
   * `MANIFEST` binding; `EDGECACHE_MANIFEST` overrides.
   */
  manifest?: string[];
  /** Manifest fetches at once (4). */
  manifestConcurrency?: number;
  /** Manifest retry delays, ms: the first (1000), doubling up to the longest (300000). */
  manifestRetry?: ManifestKeeperOptions["retry"];
}

/** The bindings and variables of a proxy Worker's manifest. */
export interface ManifestEnv {
  /** The Durable Object namespace of the manifest's class (`proxyManifestObject`). */
  MANIFEST?: ManifestNamespaceLike;
  /** The manifest's lines, one a line (over the `manifest` option). */
  EDGECACHE_MANIFEST?: string;
}

/** The binding of `ManifestObject`'s namespace (`env.MANIFEST`), described structurally. */
export interface ManifestNamespaceLike {
  idFromName(name: string): unknown;
  get(id: never): { fetch(request: Request): Promise<Response> };
}

/** The part of a SQLite-backed Durable Object's `ctx` the manifest's object uses. */
export interface ManifestStateLike {
  storage: {
    sql: SqlStorageLike;
    getAlarm(): Promise<number | null>;
    setAlarm(scheduledTime: number): Promise<void>;
    deleteAlarm(): Promise<void>;
  };
}

/**
 * The manifest's options checked when a factory is called (the Worker's, the object's): the
 * lines (E_BAD_OPTION names a bad one, `manifest:2`), the concurrency and the retry delays.
 */
export function manifestPolicy(options: ManifestOptions): KeepPolicy {
  workerManifest({}, options);
  return keepPolicy({ concurrency: options.manifestConcurrency, retry: options.manifestRetry });
}

/**
 * The manifest's lines: `EDGECACHE_MANIFEST` (one URL or pattern a line) when set, else the
 * `manifest` option; `source` names where they came from in errors (`EDGECACHE_MANIFEST:2`).
 * Parsed and checked here, so a bad line fails with E_BAD_OPTION naming it.
 */
export function workerManifest(env: ManifestEnv, options: ManifestOptions): string[] {
  const text = env.EDGECACHE_MANIFEST;
  if (typeof text === "string" && text.trim() !== "") {
    return manifestUrls(text.split(/\r?\n/), "EDGECACHE_MANIFEST");
  }
  const { manifest } = options;
  if (manifest === undefined) return [];
  if (!(Array.isArray(manifest) && manifest.every((l) => typeof l === "string"))) {
    badOption(MANIFEST, "manifest", "an array of URLs (a manifest's lines)", manifest);
  }
  return manifestUrls(manifest, "manifest");
}

/**
 * The manifest as an isolate sees it: calls to the one object that keeps it. `base` is the
 * origin of the isolate's first request: paths in the manifest are fetched for that host
 * (entries are keyed by the host clients name), and the object keeps the first base it hears.
 */
export function manifestClient(
  namespace: ManifestNamespaceLike,
  base: string | undefined,
): ManifestView & { start(): Promise<unknown> } {
  const call = <T>(op: string): Promise<T> =>
    callObject<T>(
      namespace as DurableObjectNamespaceLike,
      OBJECT_NAME,
      op,
      { base: base ?? null },
      {
        component: C,
        unavailable: "E_STORE_UNAVAILABLE",
      },
    );
  return {
    start: () => call("start"),
    summary: () => call("summary"),
    report: async () => (await call<{ urls: UrlReport[] }>("report")).urls,
  };
}

/** The one object that keeps a Worker's manifest (per MANIFEST namespace). */
const OBJECT_NAME = "edgecache-manifest";
const C = "manifest-object";
