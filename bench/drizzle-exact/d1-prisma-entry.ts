// Bundled by bench/drizzle-exact/d1.ts and run inside workerd (miniflare, with the
// `nodejs_als` flag): bench:orm-exact's Prisma application as a Worker on D1,
// `prismaCache(new PrismaD1(env.DB), ...)` (the binding found behind the adapter) following
// D1 change capture through the change log's Durable Object, as docs/guides/prisma.md sets
// it up, with the client generated for workerd from prisma/schema.d1.prisma (the routes:
// d1-worker.ts; the queries: orm-queries.ts, as in this process).
import { PrismaClient } from "edgecache-bench:prisma-d1-client";
import { PrismaD1 } from "@prisma/adapter-d1";
import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import { installD1Capture } from "../../src/database/d1/change-table.ts";
import { type CachedAdapterFactory, prismaCache } from "../../src/prisma/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { d1Worker, type Env, workerOrmApp } from "./d1-worker.ts";
import { countedFactory, followCapture, type OrmApp, prismaQueries } from "./orm-queries.ts";

export { ChangeLogObject };

export default d1Worker(async (env: Env, mode, counter, log) => {
  if (mode === "table-keyed") throw new Error("[bench] prisma: no Upstash-style mode");
  if (mode === "capture") await installD1Capture(env.DB);
  const adapter = prismaCache(countedFactory(new PrismaD1(env.DB), counter), {
    tiers: [memoryStore()],
    capture: mode === "capture",
    ...(log && { log }),
  });
  const prisma = new PrismaClient({ adapter });
  const fresh = new PrismaClient({ adapter: new PrismaD1(env.DB) });
  const app: OrmApp = {
    ...prismaQueries(prisma, fresh),
    cache: (adapter as CachedAdapterFactory).cache,
    async close() {
      await prisma.$disconnect();
      await fresh.$disconnect();
    },
  };
  if (mode === "capture") await followCapture(app, "prisma");
  return workerOrmApp(app, mode);
});
