// What the D1-following Workers share (test/query-cache/d1-follow-entry.ts for Drizzle, raw
// SQL and Kysely, test/prisma/d1-entry.ts for Prisma): the `users` table and its rows, the
// writes made straight into D1, and the routes every entry answers.

import { installD1Capture } from "../../src/database/d1/change-table.ts";
import type { DurableChangeLog } from "../../src/log/durable-object.ts";

// biome-ignore lint/suspicious/noExplicitAny: Cloudflare's binding types are not imported here
export type Env = { DB: any; CHANGE_LOG: any };

export interface Op {
  /** "read", "write" (through the entry), "around" (straight into D1). */
  kind: "read" | "write" | "around";
  /** Which read, or which write: 0 update, 1 upsert, 2 delete. */
  which: number;
  id: number;
  value: number;
}

/** The name an op writes: n0, n1, n2, or null. */
export const nameOf = (op: Op): string | null => (op.value % 4 === 3 ? null : `n${op.value % 3}`);

/** A write made around edgecache, straight through the binding (as `wrangler d1 execute`). */
export async function around(env: Env, op: Op): Promise<void> {
  const name = nameOf(op);
  const statements = [
    env.DB.prepare("update users set name = ?, score = ? where id = ?").bind(name, op.value, op.id),
    env.DB.prepare(
      "insert into users (id, name, score) values (?, ?, ?) on conflict (id) do update set name = excluded.name, score = excluded.score",
    ).bind(op.id, name, op.value),
    env.DB.prepare("delete from users where id = ?").bind(op.id),
  ];
  await statements[op.which % 3].run();
}

/** What an entry's caches answer on /catch-up and /stats. */
interface Followed {
  catchUp(): Promise<boolean>;
  getStats(): unknown;
}

/**
 * The Worker of an entry: POST /setup makes the table of rows 1 to 10 and the entry's own
 * `tables` (statements, run before capture is installed or not) and opens the entry's
 * isolate; each route of `routes` runs a list of ops; /catch-up and /stats answer for every
 * cache of `caches`, by name.
 */
export function followingEntry<I extends { logs: DurableChangeLog[] }>(
  open: (env: Env) => I,
  routes: Record<string, (isolate: I, env: Env, op: Op) => Promise<unknown>>,
  caches: (isolate: I) => Record<string, Followed>,
  tables: readonly string[] = [],
) {
  let isolate: I | undefined;
  return {
    async fetch(request: Request, env: Env): Promise<Response> {
      const path = new URL(request.url).pathname;
      if (path === "/setup") {
        const { capture } = (await request.json()) as { capture: boolean };
        await env.DB.exec(
          "create table if not exists users (id integer primary key, name text, score integer not null)",
        );
        await env.DB.exec("delete from users");
        const rows = Array.from({ length: 10 }, (_, k) => `(${k + 1}, 'n${k % 3}', ${k * 3})`);
        await env.DB.exec(`insert into users values ${rows.join(", ")}`);
        for (const sql of tables) await env.DB.exec(sql);
        if (capture) await installD1Capture(env.DB);
        isolate = open(env);
        return Response.json({});
      }
      isolate ??= open(env);
      const i = isolate;
      // Apply other writers' records before reading (strict mode: every request).
      await Promise.all(i.logs.map((log) => log.sync()));
      const route = routes[path];
      if (route) {
        const ops = (await request.json()) as Op[];
        const results = [];
        for (const op of ops) results.push(await route(i, env, op));
        return Response.json(results);
      }
      const named = Object.entries(caches(i));
      if (path === "/catch-up") {
        const caught = await Promise.all(named.map(async ([n, c]) => [n, await c.catchUp()]));
        return Response.json(Object.fromEntries(caught));
      }
      if (path === "/stats") {
        return Response.json(Object.fromEntries(named.map(([n, c]) => [n, c.getStats()])));
      }
      return new Response("not found", { status: 404 });
    },
  };
}
