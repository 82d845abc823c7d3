/**
 * Runs Conduit on a port:
 *
 *   npx tsx examples/conduit/server.ts --db conduit.db [--cached] [--port 3000]
 *
 * (or CONDUIT_DB, CONDUIT_CACHED=1, PORT). The database must exist (seed.ts makes one).
 * Prints `{"url": "http://127.0.0.1:<port>"}` once listening (port 0: a free one), and
 * closes the server and the database on SIGTERM or SIGINT.
 */
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { serve } from "@hono/node-server";
import { createConduit } from "./app.ts";

const { values } = parseArgs({
  options: {
    db: { type: "string", default: process.env.CONDUIT_DB ?? "conduit.db" },
    cached: { type: "boolean", default: process.env.CONDUIT_CACHED === "1" },
    port: { type: "string", default: process.env.PORT ?? "0" },
  },
});
if (!existsSync(values.db)) {
  console.error(`[conduit] no database at ${values.db}: run examples/conduit/seed.ts first`);
  process.exit(2);
}

const conduit = await createConduit({ url: `file:${values.db}`, cached: values.cached });
const server = serve(
  { fetch: conduit.app.fetch, port: Number(values.port), hostname: "127.0.0.1" },
  (info) => console.log(JSON.stringify({ url: `http://127.0.0.1:${info.port}` })),
);

async function stop(): Promise<void> {
  server.close();
  await conduit.close();
  process.exit(0);
}
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
