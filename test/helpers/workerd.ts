import { build } from "esbuild";
import { Miniflare, type MiniflareOptions } from "miniflare";

/**
 * Bundles a Worker entry for the browser platform (a Node built-in anywhere in what it
 * imports fails the build) and runs it inside workerd.
 */
export async function startWorker(
  entry: URL,
  options: Partial<MiniflareOptions> = {},
): Promise<Miniflare> {
  return new Miniflare({
    ...options,
    modules: true,
    script: await bundle(entry),
    compatibilityDate: COMPATIBILITY_DATE,
  } as MiniflareOptions);
}

export const COMPATIBILITY_DATE = "2025-01-01";

/**
 * A Worker entry bundled as workerd runs it: no Node built-in may be reachable, but those
 * named in `external` (which a compatibility flag provides, `node:async_hooks` with
 * `nodejs_als`).
 */
export async function bundle(entry: URL, external: string[] = []): Promise<string> {
  const out = await build({
    entryPoints: [entry.pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    external,
  });
  return out.outputFiles[0]!.text;
}
