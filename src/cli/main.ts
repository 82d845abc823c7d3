#!/usr/bin/env node
import { defineCommand, runMain } from "citty";
import { loadConfig } from "../adapter/node/config.ts";
import { createNodeEdgecache } from "../adapter/node/edgecache.ts";
import { EdgecacheError } from "../core/errors.ts";

const serve = defineCommand({
  meta: {
    name: "serve",
    description: "Serve the data API (the demo database unless a config names yours)",
  },
  args: {
    port: { type: "string", description: "Port (default: PORT, the config, or 8787)" },
    host: { type: "string", description: "Address to listen on (default 127.0.0.1)" },
    db: { type: "string", description: "SQLite file (default ./edgecache.db, the demo)" },
    config: {
      type: "string",
      description: "Config file (default ./edgecache.config.{json,ts,js})",
    },
  },
  run: ({ args }) =>
    friendly(async () => {
      const loaded = await loadConfig(process.cwd(), args.config);
      const config = loaded?.config ?? {};
      const port = Number(args.port ?? process.env.PORT ?? config.port ?? 8787);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new EdgecacheError(
          "E_BAD_OPTION",
          "cli",
          `--port: expected 0 to 65535, got ${args.port}`,
        );
      }
      // --db names the demo database's file unless a config names a database of its own.
      const edgecache = await createNodeEdgecache({
        ...config,
        ...(args.db && (config.database ? { database: args.db } : { demoDatabase: args.db })),
        port,
        hostname: args.host ?? config.hostname,
        adminToken: process.env.EDGECACHE_ADMIN_TOKEN || undefined,
      });
      let url: string;
      try {
        ({ url } = await edgecache.listen());
      } catch (err) {
        await edgecache.close();
        if ((err as { code?: string }).code === "EADDRINUSE") {
          throw new EdgecacheError(
            "E_BAD_OPTION",
            "cli",
            `port ${port} is in use: stop what runs there or pass --port (0 picks a free one)`,
          );
        }
        throw err;
      }
      const resources = [
        ...edgecache.api.schema.tables.keys(),
        ...edgecache.api.schema.views.keys(),
      ];
      console.log(
        `edgecache serving ${edgecache.demo ? "the demo database" : "your database"} ${edgecache.databasePath}`,
      );
      if (loaded) console.log(`config: ${loaded.path}`);
      console.log(`data API:  ${url}/v1/{${resources.join(",")}}`);
      console.log(`try:       curl '${url}/v1/users?firstName=Lane&limit=5'`);
      console.log(`admin API: ${url}/_edgecache/stats`);
      const stop = async () => {
        await edgecache.close();
        process.exit(0);
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    }),
});

/** An EdgecacheError is the user's to fix: one line that says what, no stack trace. */
async function friendly(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    if (!(err instanceof EdgecacheError)) throw err;
    console.error(err.message);
    process.exit(1);
  }
}

const main = defineCommand({
  meta: { name: "edgecache", description: "A cache for database-backed APIs" },
  subCommands: { serve },
});

runMain(main);
