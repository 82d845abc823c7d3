import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/libsql";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { memoryStore } from "../../src/stores/memory.ts";

/**
 * Change capture is a guest in the application's database: its statements run on a
 * connection of its own. On the application's libSQL connection, one of them failing with
 * SQLITE_BUSY (another process writing the file) left that connection in a transaction that
 * never committed: the application's later writes were answered, then lost.
 */

const items = sqliteTable("items", {
  id: integer("id").primaryKey(),
  owner: text("owner").notNull(),
  n: integer("n").notNull(),
});

let dir: string;
let path: string;

async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error("still not so after the wait");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A libSQL client whose statements are recorded (what the application sends on it). */
function recorded(client: Client): { client: Client; sql: string[] } {
  const sql: string[] = [];
  const note = (stmt: unknown) =>
    sql.push(typeof stmt === "string" ? stmt : String((stmt as { sql?: unknown }).sql));
  const wrapped = new Proxy(client, {
    get(target, name) {
      const value = Reflect.get(target, name, target);
      if (typeof value !== "function") return value;
      if (name === "execute") {
        return (stmt: unknown, args?: unknown) => {
          note(stmt);
          return value.call(target, stmt, args);
        };
      }
      if (name === "batch") {
        return (stmts: unknown[], mode?: unknown) => {
          for (const s of stmts) note(s);
          return value.call(target, stmts, mode);
        };
      }
      return value.bind(target);
    },
  });
  return { client: wrapped, sql };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "edgecache-own-"));
  path = join(dir, "app.db");
  const setup = createClient({ url: `file:${path}` });
  await setup.executeMultiple(
    "create table items (id integer primary key, owner text not null, n integer not null);",
  );
  setup.close();
  // As `npx edgecache capture install --db app.db` does (a process of its own there).
  const source = sqliteSource({ path, readonly: false });
  await source.installCapture();
  await source.close();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("drizzle capture on libSQL: a connection of its own", () => {
  it("runs none of its statements on the application's connection, and counts its own", async () => {
    const { client, sql } = recorded(createClient({ url: `file:${path}` }));
    const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    const db = withTransactions(drizzle(client, { cache }));
    try {
      await db.select().from(items).where(eq(items.id, 1));
      await eventually(() => cache.getStats().writes === "capture");
      await db.insert(items).values({ id: 1, owner: "app", n: 1 });
      expect(await db.select().from(items).where(eq(items.id, 1))).toHaveLength(1);
      // Idle for a while: the follower keeps watching the file meanwhile.
      await new Promise((r) => setTimeout(r, 600));
      const ours = sql.filter((s) =>
        /_edgecache_|data_version|schema_version|pragma_table_info/i.test(s),
      );
      expect(ours).toEqual([]);
      // What it asked of the application's client: only where the file is.
      expect(sql.filter((s) => /^pragma/i.test(s.trim()))).toEqual(["PRAGMA database_list"]);
      const statements = cache.getStats().capture?.statements ?? 0;
      expect(statements).toBeGreaterThan(0);
      // Idle watching costs a few looks a second, not hundreds.
      const before = cache.getStats().capture?.statements ?? 0;
      await new Promise((r) => setTimeout(r, 1000));
      const idle = (cache.getStats().capture?.statements ?? 0) - before;
      expect(idle).toBeLessThan(40);
    } finally {
      await cache.close();
      client.close();
    }
  });

  it("loses no acknowledged write while another process writes the same file", async () => {
    // Two processes on one file: each client waits for the other's lock (see the guide).
    const client = createClient({ url: `file:${path}`, timeout: 5000 });
    const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    const db = withTransactions(drizzle(client, { cache }));
    let other: ChildProcess | undefined;
    const acknowledged: number[] = [];
    try {
      await db.select().from(items).where(eq(items.id, 0));
      await eventually(() => cache.getStats().writes === "capture");
      other = spawn(
        process.execPath,
        [resolve(import.meta.dirname, "own-connection-writer.mjs"), path],
        {
          stdio: ["ignore", "pipe", "inherit"],
        },
      );
      let written = "";
      other.stdout?.on("data", (chunk) => {
        written += chunk;
      });
      for (let i = 0; i < 600; i++) {
        const id = 1000 + i;
        try {
          await db.insert(items).values({ id, owner: "app", n: i });
          acknowledged.push(id);
        } catch {
          // A busy write that failed is not acknowledged: nothing to read back.
        }
        if (i % 3 === 0) await db.select().from(items).where(eq(items.owner, "other"));
      }
      other.kill("SIGTERM");
      await new Promise((r) => other?.once("exit", r));
      const others = written.split("\n").filter(Boolean).map(Number);
      expect(others.length).toBeGreaterThan(0);
      // With a busy timeout, no write of the application fails for capture's sake.
      expect(acknowledged).toHaveLength(600);
      // Read back by a connection opened afterwards: what was committed, not a snapshot.
      await cache.close();
      client.close();
      const fresh = createClient({ url: `file:${path}` });
      const rows = (await fresh.execute("select id from items")).rows.map((r) => Number(r.id));
      fresh.close();
      const present = new Set(rows);
      expect(acknowledged.filter((id) => !present.has(id))).toEqual([]);
      expect(others.filter((id) => !present.has(id))).toEqual([]);
    } finally {
      other?.kill("SIGKILL");
      await cache.close();
      client.close();
    }
  }, 60_000);

  it("warns once when the application's own libSQL statement fails busy", async () => {
    const client = createClient({ url: `file:${path}` });
    const warnings: string[] = [];
    const cache = drizzleCache({
      tiers: [memoryStore()],
      strategy: "all",
      logger: { warn: (m: string) => warnings.push(m) },
    });
    const db = withTransactions(drizzle(client, { cache }), { capture: false });
    const blocker = createClient({ url: `file:${path}` });
    const tx = await blocker.transaction("write");
    try {
      await tx.execute("insert into items (id, owner, n) values (5000, 'blocker', 0)");
      await expect(db.insert(items).values({ id: 5001, owner: "app", n: 0 })).rejects.toThrow();
      await expect(db.insert(items).values({ id: 5002, owner: "app", n: 0 })).rejects.toThrow();
      expect(warnings.filter((w) => /SQLITE_BUSY.*busy timeout/.test(w))).toHaveLength(1);
    } finally {
      await tx.rollback();
      blocker.close();
      await cache.close();
      client.close();
    }
  });
});
