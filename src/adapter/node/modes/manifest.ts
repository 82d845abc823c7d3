import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { CachingProxy } from "../../../app/proxy/index.ts";
import {
  keepManifest,
  type ManifestKeeper,
  type ManifestKeeperOptions,
} from "../../../app/proxy/manifest/keeper.ts";
import { MANIFEST, manifestUrls, parseManifest } from "../../../app/proxy/manifest/parse.ts";
import { badOption, EdgecacheError } from "../../../core/errors.ts";
import type { Warner } from "../../../core/report.ts";
import type { Cluster } from "../cluster.ts";
import { type SharedManifest, sharedManifest } from "./manifest-shared.ts";

export interface NodeManifestOptions {
  /** A manifest file's path (relative to `cwd`), or its lines. */
  manifest: string | readonly string[];
  /** Fetches at once (4). */
  concurrency?: number;
  retry?: ManifestKeeperOptions["retry"];
  cwd: string;
  /** The address the proxy listens on: paths are fetched for its host. */
  hostname: string | undefined;
  now: () => number;
  /** Nodes sharing Redis: one of them keeps the manifest for all (see sharedManifest). */
  cluster?: Pick<Cluster, "client" | "prefix" | "leaseMs" | "log">;
  logger?: Warner;
}

/**
 * The proxy's manifest on Node: read (a file, or a config's lines) and checked when the
 * proxy is made, so a bad line stops the start with its line number; kept once started,
 * by this node alone or, with a cluster, by the one node that holds the keeper's lease.
 */
export function nodeManifest(
  options: NodeManifestOptions,
  proxy: Pick<CachingProxy, "keep">,
): ManifestKeeper | SharedManifest {
  const { manifest } = options;
  let urls: string[];
  if (typeof manifest === "string") {
    let text: string;
    try {
      text = readFileSync(resolve(options.cwd, manifest), "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new EdgecacheError("E_BAD_OPTION", MANIFEST, `cannot read ${manifest} (${code})`, {
        cause: err,
      });
    }
    urls = parseManifest(text, manifest);
  } else if (Array.isArray(manifest) && manifest.every((l) => typeof l === "string")) {
    urls = manifestUrls(manifest, "manifest");
  } else {
    badOption(MANIFEST, "manifest", "a file's path or an array of URLs", manifest);
  }
  const base = baseOf(options.hostname);
  const keep = {
    urls: urls.map((u) => new URL(u, base).href),
    fetch: (url: string, refresh: boolean) => proxy.keep(url, refresh),
    concurrency: options.concurrency,
    retry: options.retry,
    now: options.now,
  };
  const { cluster } = options;
  if (!cluster) return keepManifest(keep);
  return sharedManifest({
    ...keep,
    client: cluster.client,
    prefix: cluster.prefix,
    node: cluster.log.node,
    leaseMs: cluster.leaseMs,
    logger: options.logger,
  });
}

/**
 * Where a manifest's paths are fetched: the host the proxy listens on (entries are keyed by
 * host, as clients name it), or 127.0.0.1 for a wildcard address. Clients that use another
 * name need full URLs with it in the manifest.
 */
function baseOf(hostname: string | undefined): string {
  const host =
    hostname === undefined || hostname === "" || hostname === "0.0.0.0" || hostname === "::"
      ? "127.0.0.1"
      : hostname;
  return `http://${host.includes(":") ? `[${host}]` : host}`;
}
