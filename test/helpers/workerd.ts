import { readFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { build, type Plugin } from "esbuild";
import { Miniflare, type MiniflareOptions } from "miniflare";

/** How an entry is bundled beyond the defaults. */
export interface BundleOptions {
  /** Module names resolved to files: a generated module the entry imports by a name of its own. */
  aliases?: Record<string, string>;
  /**
   * Package export conditions, as wrangler sets them (`workerd`: postgres.js's build over
   * `cloudflare:sockets`), and modules workerd provides (`node:*` with `nodejs_compat`).
   */
  conditions?: string[];
  external?: string[];
}

/**
 * Bundles a Worker entry for the browser platform (a Node built-in anywhere in what it
 * imports fails the build) and runs it inside workerd. A `.wasm?module` import (Prisma's
 * query compiler) becomes a compiled WebAssembly module beside the script, as wrangler
 * makes it: workerd compiles no WebAssembly from bytes at run time.
 */
export async function startWorker(
  entry: URL,
  options: Partial<MiniflareOptions> = {},
  bundleOptions: BundleOptions = {},
): Promise<Miniflare> {
  return new Miniflare({
    ...options,
    ...(await workerCode(entry, bundleOptions)),
    compatibilityDate: COMPATIBILITY_DATE,
  } as MiniflareOptions);
}

/**
 * A Worker entry bundled as `startWorker` bundles it, as Miniflare's options take it: the
 * script, or the script and the compiled WebAssembly modules it imports.
 */
export async function workerCode(
  entry: URL,
  bundleOptions: BundleOptions = {},
): Promise<Pick<MiniflareOptions, "script" | "modules">> {
  const { script, wasm } = await bundleModules(entry, bundleOptions.external ?? [], bundleOptions);
  if (wasm.length === 0) return { script, modules: true };
  return {
    modules: [
      { type: "ESModule", path: "worker.mjs", contents: script },
      ...wasm.map((w) => ({
        type: "CompiledWasm" as const,
        path: w.name,
        contents: readFileSync(w.file),
      })),
    ],
  } as Pick<MiniflareOptions, "script" | "modules">;
}

export const COMPATIBILITY_DATE = "2025-01-01";

/**
 * A Worker entry bundled as workerd runs it: no Node built-in may be reachable, but those
 * named in `external` (which a compatibility flag provides, `node:async_hooks` with
 * `nodejs_als`).
 */
export async function bundle(entry: URL, external: string[] = []): Promise<string> {
  const { script, wasm } = await bundleModules(entry, external);
  if (wasm.length > 0) throw new Error(`${entry.pathname} imports WebAssembly: use startWorker`);
  return script;
}

/** The bundled script, and the WebAssembly modules it imports (by name, and their files). */
async function bundleModules(
  entry: URL,
  external: string[],
  { aliases = {}, conditions }: BundleOptions = {},
): Promise<{ script: string; wasm: { name: string; file: string }[] }> {
  const wasm: { name: string; file: string }[] = [];
  const modules: Plugin = {
    name: "worker-modules",
    setup(b) {
      for (const [name, file] of Object.entries(aliases)) {
        const exact = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
        b.onResolve({ filter: exact }, () => ({ path: file }));
      }
      b.onResolve({ filter: /\.wasm\?module$/ }, (args) => {
        const file = resolve(args.resolveDir, args.path.replace(/\?module$/, ""));
        const name = `${wasm.length}-${basename(file)}`;
        wasm.push({ name, file });
        return { path: `./${name}`, external: true };
      });
    },
  };
  const out = await build({
    entryPoints: [entry.pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    external,
    ...(conditions && { conditions }),
    plugins: [modules],
  });
  return { script: out.outputFiles[0]!.text, wasm };
}

/** What `startIsolates` gives each isolate beyond the entry and the change log. */
export interface IsolateBindings {
  d1Databases?: Record<string, string>;
  kvNamespaces?: Record<string, string>;
  bindings?: Record<string, string>;
  /** More Durable Object classes of the entry, by binding (`{ TENANTS: "TenantsObject" }`). */
  objects?: Record<string, string>;
}

/**
 * Several isolates (`names`) of one Worker entry in one workerd, as a Worker's isolates in
 * several places: the same D1, KV and Durable Objects (`CHANGE_LOG`, `ChangeLogObject`, and
 * `objects`), the objects living in the first isolate's script.
 */
export async function startIsolates(
  entry: URL,
  names: string[],
  { d1Databases, kvNamespaces, bindings, objects = {} }: IsolateBindings,
): Promise<Miniflare> {
  const script = await bundle(entry);
  const durable = (className: string) => ({ className, scriptName: names[0]!, useSQLite: true });
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    workers: names.map((name) => ({
      name,
      modules: true,
      script,
      compatibilityDate: COMPATIBILITY_DATE,
      ...(d1Databases && { d1Databases }),
      ...(kvNamespaces && { kvNamespaces }),
      ...(bindings && { bindings }),
      durableObjects: Object.fromEntries(
        Object.entries({ CHANGE_LOG: "ChangeLogObject", ...objects }).map(([b, c]) => [
          b,
          durable(c),
        ]),
      ),
    })),
  });
  await mf.ready;
  return mf;
}
