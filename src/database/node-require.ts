/**
 * Node's `require`, made from `from` (a file path or URL), reached through
 * `process.getBuiltinModule` so that no import names `node:module` nor the package
 * required: a Worker's bundler would follow either (and fail on a Node-only client's
 * built-ins), and workerd refuses a computed `import()`. Only called for clients that
 * exist only on Node (postgres.js's factory, libSQL's file connections).
 */
export function nodeRequire(from: string): ((id: string) => unknown) & {
  resolve(id: string): string;
} {
  const node = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const module = node?.getBuiltinModule?.("node:module") as
    | {
        createRequire(from: string): ((id: string) => unknown) & { resolve(id: string): string };
      }
    | undefined;
  if (!module) throw new Error("needs Node 20.16 or later (process.getBuiltinModule)");
  return module.createRequire(from);
}
