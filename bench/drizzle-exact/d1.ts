/**
 * bench:drizzle-exact on D1: the application (Drizzle's, Kysely's or Prisma's) runs as a
 * Worker inside workerd (miniflare, offline) over a local D1 database holding the
 * template's rows, with the change log's Durable Object draining D1's change table
 * (d1-worker.ts and each ORM's entry); this process sends it one request per operation, so
 * the run drives it as it drives the others (a Contestant).
 */
import Database from "better-sqlite3";
import { Miniflare, type MiniflareOptions } from "miniflare";
import { type BundleOptions, COMPATIBILITY_DATE, workerCode } from "../../test/helpers/workerd.ts";
import { generatedEntry } from "../../test/prisma/client.ts";
import type { Table } from "../workload/oracle.ts";
import type { Mode } from "./app.ts";
import type { Contestant, Counts } from "./contestant.ts";
import type { D1Setup } from "./d1-worker.ts";
import type { Orm } from "./orm-queries.ts";

/** Each ORM's Worker entry, and how it is bundled (`node:async_hooks` is `nodejs_als`'s). */
const ENTRIES: Record<Orm, () => [URL, BundleOptions]> = {
  drizzle: () => [new URL("./d1-entry.ts", import.meta.url), { external: ["node:async_hooks"] }],
  kysely: () => [
    new URL("./d1-kysely-entry.ts", import.meta.url),
    { external: ["node:async_hooks"] },
  ],
  prisma: () => [
    new URL("./d1-prisma-entry.ts", import.meta.url),
    {
      external: ["node:async_hooks"],
      // The client generated for workerd, its query compiler a compiled module beside the script.
      aliases: {
        "edgecache-bench:prisma-d1-client": generatedEntry(
          new URL("./prisma/schema.d1.prisma", import.meta.url).pathname,
        ),
      },
    },
  ],
};

const code = new Map<Orm, ReturnType<typeof workerCode>>();

/** `orm`'s application in `mode`, in a Worker of its own over a fresh D1 database seeded from `template`. */
export async function openOnD1(template: string, mode: Mode, orm: Orm): Promise<Contestant> {
  const bundled = code.get(orm) ?? workerCode(...ENTRIES[orm]());
  code.set(orm, bundled);
  const mf = new Miniflare({
    ...(await bundled),
    compatibilityDate: COMPATIBILITY_DATE,
    // AsyncLocalStorage counts each request's statements, as in this process.
    compatibilityFlags: ["nodejs_als"],
    d1Databases: ["DB"],
    durableObjects: { CHANGE_LOG: "ChangeLogObject" },
  } as MiniflareOptions);
  const call = async <T>(path: string, body: unknown = {}): Promise<T> => {
    const res = await mf.dispatchFetch(`http://localhost${path}`, {
      method: "POST",
      body: JSON.stringify(body),
    });
    const answer = (await res.json()) as T & { error?: string };
    if (!res.ok) throw new Error(`[bench] [d1] ${path}: ${answer.error ?? res.status}`);
    return answer;
  };
  try {
    await call("/setup", { mode, ...templateContents(template) } satisfies D1Setup);
  } catch (err) {
    await mf.dispose();
    throw err;
  }
  return {
    async read(spec) {
      const { statements, ...value } = await call<{
        status: number;
        body: unknown;
        statements: number;
      }>("/read", spec);
      return { value, statements };
    },
    write: async (op, values, around) => {
      await call("/write", { op, values, around });
    },
    fresh: async (table: Table, id: string) =>
      (await call<{ row?: never }>("/fresh", { table, id })).row,
    entries: async () => (await call<{ entries: number }>("/entries")).entries,
    counts: () => call<Counts>("/counts"),
    catchUp: async () => {
      await call("/catch-up");
    },
    async close() {
      try {
        await call("/close");
      } finally {
        await mf.dispose();
      }
    },
  };
}

/** The template database's schema (tables, then indexes) and rows. */
function templateContents(template: string): Omit<D1Setup, "mode"> {
  const db = new Database(template, { readonly: true });
  try {
    const schema = db
      .prepare(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND type IN ('table', 'index') ORDER BY type = 'index', rowid",
      )
      .pluck()
      .all() as string[];
    const rows = (table: Table) => db.prepare(`SELECT * FROM "${table}"`).all() as never[];
    return { schema, rows: { users: rows("users"), orders: rows("orders") } };
  } finally {
    db.close();
  }
}
