// Bundled by bench/drizzle-exact/d1.ts and run inside workerd (miniflare, with the
// `nodejs_als` flag): bench:drizzle-exact's Drizzle application as a Worker on D1,
// drizzle-orm/d1 with edgecache/drizzle following D1 change capture through the change log's
// Durable Object, as docs/guides/drizzle.md sets it up (the routes: d1-worker.ts).
import { drizzle } from "drizzle-orm/d1";
import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import { installD1Capture } from "../../src/database/d1/change-table.ts";
import { type AppDatabase, openApp } from "./app.ts";
import { d1Worker, type Env } from "./d1-worker.ts";
import { freshRow, readQuery, sqliteTables, writeThroughDrizzle } from "./queries.ts";
import type { StatementCounter } from "./statements.ts";

export { ChangeLogObject };

export default d1Worker(async (env: Env, mode, counter, log) => {
  const db: AppDatabase = {
    driver: "d1",
    ...sqliteTables,
    app: (cache, counter) => drizzle(counted(env.DB, counter), cache ? { cache } : {}),
    installCapture: async () => {
      await installD1Capture(env.DB);
    },
  };
  const app = await openApp(db, mode, counter, log);
  const fresh = drizzle(env.DB);
  return {
    read: (spec) => readQuery(app.db, sqliteTables, spec),
    write: (op, values) => writeThroughDrizzle(app.db, sqliteTables, op, values),
    fresh: (table, id) => freshRow(fresh, sqliteTables, table, id),
    entries: () => app.entries(),
    removed: () => app.removed(),
    stats: () => app.stats(),
    catchUp: () => app.catchUp(),
    idle: () => app.idle(),
    close: () => app.close(),
  };
});

/**
 * The binding with its statements counted when they run (Drizzle prepares a select before
 * it asks the cache, so a hit prepares one too and runs none).
 */
// biome-ignore lint/suspicious/noExplicitAny: Cloudflare's D1 types are not imported here
function counted(db: any, counter: StatementCounter): any {
  // biome-ignore lint/suspicious/noExplicitAny: a D1 prepared statement
  const statement = (inner: any, sql: string): any => {
    const runs =
      (method: string) =>
      (...args: unknown[]): Promise<unknown> => {
        counter.count(sql);
        return inner[method](...args);
      };
    return {
      inner,
      sql,
      bind: (...params: unknown[]) => statement(inner.bind(...params), sql),
      all: runs("all"),
      raw: runs("raw"),
      run: runs("run"),
      first: runs("first"),
    };
  };
  return {
    prepare: (sql: string) => statement(db.prepare(sql), sql),
    // biome-ignore lint/suspicious/noExplicitAny: counted statements
    batch: (statements: any[]) => {
      for (const s of statements) counter.count(s.sql);
      return db.batch(statements.map((s) => s.inner));
    },
    exec: (sql: string) => {
      counter.count(sql);
      return db.exec(sql);
    },
  };
}
