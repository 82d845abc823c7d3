// Bundled by bench/drizzle-exact/d1.ts and run inside workerd (miniflare, with the
// `nodejs_als` flag): bench:orm-exact's Kysely application as a Worker on D1, kysely-d1's
// dialect wrapped by kyselyCache with the binding as `client`, following D1 change capture
// through the change log's Durable Object, as docs/guides/kysely.md sets it up (the routes:
// d1-worker.ts; the queries: orm-queries.ts, as in this process).
import { Kysely } from "kysely";
import { D1Dialect } from "kysely-d1";
import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import { installD1Capture } from "../../src/database/d1/change-table.ts";
import { type CachedDialect, kyselyCache } from "../../src/kysely/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { d1Worker, type Env, workerOrmApp } from "./d1-worker.ts";
import {
  countedDialect,
  type Db,
  followCapture,
  kyselyQueries,
  type OrmApp,
} from "./orm-queries.ts";

export { ChangeLogObject };

export default d1Worker(async (env: Env, mode, counter, log) => {
  if (mode === "table-keyed") throw new Error("[bench] kysely: no Upstash-style mode");
  if (mode === "capture") await installD1Capture(env.DB);
  const dialect = kyselyCache(countedDialect(new D1Dialect({ database: env.DB }), counter), {
    client: env.DB,
    tiers: [memoryStore()],
    capture: mode === "capture",
    ...(log && { log }),
  });
  const db: Db = new Kysely({ dialect });
  const fresh: Db = new Kysely({ dialect: new D1Dialect({ database: env.DB }) });
  const app: OrmApp = {
    ...kyselyQueries(db, fresh),
    cache: (dialect as CachedDialect).cache,
    async close() {
      await db.destroy();
      await fresh.destroy();
    },
  };
  if (mode === "capture") await followCapture(app, "kysely");
  return workerOrmApp(app, mode);
});
