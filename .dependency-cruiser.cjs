// Architecture rules (DESIGN.md, "The engine (portable core)" and "Layout"), checked by
// `npm run check`: the core is portable, apps never reach into runtime adapters, and no
// module depends on itself through others at run time.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "core-is-portable",
      comment:
        "src/core imports nothing of the project outside src/core (portable npm libraries are fine).",
      severity: "error",
      from: { path: "^src/core/" },
      to: { path: "^src/", pathNot: "^src/core/" },
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
