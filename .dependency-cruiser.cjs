// Architecture rules (the design's portable core and layout; docs/design/architecture.md), checked by
// `npm run check`: the core is portable, apps never reach into runtime adapters, and no
// module depends on itself through others at run time.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "core-is-portable",
      comment:
        "src/core imports nothing of the project outside it but the change log's portable part (its contract and the in-process log); portable npm libraries are fine.",
      severity: "error",
      from: { path: "^src/core/" },
      to: {
        path: "^src/",
        pathNot: ["^src/core/", "^src/log/(contract|in-process|outside-writes)\\.ts$"],
      },
    },
    {
      name: "log-contract-is-portable",
      comment:
        "The change log's contract and in-process log run wherever the core runs: no node:* module, nothing of the project but the core.",
      severity: "error",
      from: { path: "^src/log/(contract|in-process|outside-writes)\\.ts$" },
      to: {
        path: "^src/",
        pathNot: ["^src/core/", "^src/log/(contract|in-process|outside-writes)\\.ts$"],
      },
    },
    {
      name: "log-contract-no-node-builtins",
      severity: "error",
      from: { path: "^src/log/(contract|in-process|outside-writes)\\.ts$" },
      to: { dependencyTypes: ["core"] },
    },
    {
      name: "core-no-node-builtins",
      comment: "src/core imports no node:* module (it runs on Workers too).",
      severity: "error",
      from: { path: "^src/core/" },
      to: { dependencyTypes: ["core"] },
    },
    {
      name: "app-not-adapters",
      comment: "src/app (Hono apps) never imports a runtime adapter; adapters import apps.",
      severity: "error",
      from: { path: "^src/app/" },
      to: { path: "^src/adapter/" },
    },
    {
      name: "no-cycles",
      comment:
        "No import cycle at load time: type-only imports are erased and a dynamic import() loads later, so neither counts.",
      severity: "error",
      from: { path: "^src/" },
      to: {
        circular: true,
        viaOnly: { dependencyTypesNot: ["type-only", "dynamic-import"] },
      },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "^src/.*\\.d\\.ts$" },
  },
};
