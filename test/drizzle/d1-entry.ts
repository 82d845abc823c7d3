// Bundled by test/drizzle/d1-in-workerd.test.ts and run inside workerd: Drizzle on
// D1 with edgecache/drizzle, as a Worker would use it.
import { eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";

const users = sqliteTable("users", {
  id: integer("id").primaryKey(),
  name: text("name").notNull(),
  at: integer("at", { mode: "timestamp_ms" }),
});

// biome-ignore lint/suspicious/noExplicitAny: D1's binding type is Cloudflare's, not imported here
type Env = { DB: any };

export default {
  async fetch(_request: Request, env: Env): Promise<Response> {
    await env.DB.exec(
      "create table if not exists users (id integer primary key, name text not null, at integer)",
    );
    await env.DB.exec("delete from users");
    const cache = drizzleCache({ tiers: [memoryStore({ maxBytes: 1_000_000 })], strategy: "all" });
    const db = withTransactions(drizzle(env.DB, { cache }));
    await db.insert(users).values({ id: 1, name: "Ann", at: new Date(1700000000123) });
    const user1 = () => db.select().from(users).where(eq(users.id, 1));
    const first = await user1();
    const hit = await user1();
    const hitIsDate = hit[0]?.at instanceof Date;
    await db.update(users).set({ name: "Bea" }).where(eq(users.id, 1));
    const afterUpdate = await user1();
    await user1();
    await env.DB.prepare("update users set name = 'direct'").run();
    await db.$cache.invalidate({ tables: [users] });
    const afterInvalidate = await user1();
    // Registered by its SQL (parsed inside workerd): a write event for another row leaves it.
    await cache.engine.applyWrite([{ table: "users", op: "insert", new: { id: 2, name: "Cy" } }]);
    await user1();
    return Response.json({
      first,
      hit,
      hitIsDate,
      afterUpdate,
      afterInvalidate,
      stats: cache.getStats(),
    });
  },
};
