// Architecture rules (the design's portable core and layout; docs/design/architecture.md), checked by
// `npm run check`: the core is portable, apps never reach into runtime adapters, and no
// module depends on itself through others, not even through a type.
/** The portable code: the core (the change log's contract and in-process log among it). */
const PORTABLE = ["^src/core/"];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "core-imports-nothing-above",
      comment:
        "The engine (src/core) imports nothing of the project outside itself: what it follows (the change log's contract, the in-process log) lives in it (core/change-log/), and the rooms above implement or use it.",
      severity: "error",
      from: { path: "^src/core/" },
      to: { path: "^src/", pathNot: "^src/core/" },
    },
    {
      name: "portable-no-node-builtins",
      comment: "The core imports no node:* module.",
      severity: "error",
      from: { path: PORTABLE },
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
      name: "log-not-stores",
      comment:
        "The change log (src/log) imports nothing of the stores (src/stores): what both use, such as the Redis client (src/redis/connect.ts), lives beneath them.",
      severity: "error",
      from: { path: "^src/log/" },
      to: { path: "^src/stores/" },
    },
    {
      name: "stores-not-log",
      comment: "A store (src/stores) imports nothing of the change log (src/log) either.",
      severity: "error",
      from: { path: "^src/stores/" },
      to: { path: "^src/log/" },
    },
    {
      name: "orm-adapters-are-leaves",
      comment:
        "Nothing imports an ORM adapter (src/drizzle, src/kysely, src/prisma) but itself: what the ORMs and raw SQL share is the query cache (src/query-cache) and the SQL room (src/database).",
      severity: "error",
      from: { path: "^src/([^/]+)" },
      to: { path: "^src/(drizzle|kysely|prisma)/", pathNot: "^src/$1/" },
    },
    {
      name: "query-cache-not-entries",
      comment:
        "The query cache (src/query-cache) imports none of the entries built on it (the Drizzle, Kysely and Prisma adapters, raw SQL in src/sql).",
      severity: "error",
      from: { path: "^src/query-cache/" },
      to: { path: "^src/(drizzle|kysely|prisma|sql)/" },
    },
    {
      name: "sql-room-is-beneath",
      comment:
        "The SQL room (src/database: dialects, drivers, capture, query analysis) imports nothing built on it: not the data API's sources, the query cache, its entries (raw SQL, the Drizzle adapter), the apps or the adapters.",
      severity: "error",
      from: { path: "^src/database/" },
      to: { path: "^src/(sources|query-cache|sql|drizzle|kysely|prisma|app|adapter|cli)/" },
    },
    {
      name: "postgres-loaded-by-node-entries",
      comment:
        'postgres.js is loaded (src/database/postgres/connect.ts) only by the PostgreSQL source and the Node adapter: a Worker bundle that holds the drivers (raw SQL on D1) must not pull it in, since esbuild follows import("postgres") to Node\'s net and tls.',
      severity: "error",
      from: {
        path: "^src/",
        pathNot: "^src/(sources/postgres\\.ts|adapter/node/|database/postgres/connect\\.ts)",
      },
      to: { path: "^src/database/postgres/connect\\.ts$" },
    },
    {
      name: "cli-through-sources-index",
      comment:
        "The command line reaches the sources and the SQL room through the sources' front door (src/sources/index.ts), never a dialect, driver or capture file.",
      severity: "error",
      from: { path: "^src/cli/" },
      to: { path: "^src/(sources|database)/", pathNot: "^src/sources/index\\.ts$" },
    },
    {
      name: "no-cycles",
      comment:
        "No import cycle anywhere in src, type-only and dynamic imports included: modules that name each other's types are one module in disguise, or share a bag; a type both need lives beneath both (a contract file).",
      severity: "error",
      from: { path: "^src/" },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "^src/.*\\.d\\.ts$" },
  },
};
