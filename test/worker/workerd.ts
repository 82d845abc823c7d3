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
  const out = await build({
    entryPoints: [entry.pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
  });
  return new Miniflare({
    ...options,
    modules: true,
    script: out.outputFiles[0]!.text,
    compatibilityDate: "2025-01-01",
  } as MiniflareOptions);
}
