import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { afterAll, expect, it } from "vitest";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { edgecache } from "../helpers/built-cli.ts";

// SQLite's json_object wrote REALs with 15 significant digits before 3.47 (libSQL bundles
// 3.45): capture's triggers record them with 17, so captured rows hold the stored double,
// for the planner's comparisons and for results patched in place.

const dir = mkdtempSync(join(tmpdir(), "edgecache-reals-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("REALs written around the cache: filtered and patched reads equal a fresh query", async () => {
  const path = join(dir, "db.sqlite");
  const admin = createClient({ url: `file:${path}` });
  await admin.executeMultiple(`create table items (id integer primary key, x real not null);
    insert into items values (1, 1.5), (2, 2.5);`);
  await edgecache(["capture", "install", "--db", path]);
  const client = createClient({ url: `file:${path}` });
  const sql = sqlCache({ client, tiers: [memoryStore()] });
  await sql.query("select id, x from items where id = ?", [0]);
  const until = Date.now() + 10_000;
  while (sql.getStats().writes !== "capture") {
    if (Date.now() > until) throw new Error("capture not followed");
    await new Promise((r) => setTimeout(r, 10));
  }
  const reads: [string, unknown[]][] = [
    ["select id, x from items order by id limit 10", []],
    ["select id, x from items where x > ? order by id", [0.3]],
  ];
  const fresh = async (q: string, p: unknown[]) =>
    (await admin.execute({ sql: q, args: p as never })).rows.map((r) => ({ ...r }));
  for (const [q, p] of reads) await sql.query(q, p);
  await admin.execute({ sql: "update items set x = ? where id = 1", args: [0.1 + 0.2] });
  await admin.execute({ sql: "insert into items values (3, ?)", args: [1 / 3] });
  expect(await sql.catchUp()).toBe(true);
  for (const [q, p] of reads) expect(await sql.query(q, p)).toEqual(await fresh(q, p));
  // 0.30000000000000004 > 0.3: the filtered read has row 1 now (rounded, it would not).
  expect((await sql.query(reads[1]![0], reads[1]![1])).map((r) => r.id)).toEqual([1, 2, 3]);
  expect(sql.getStats().patched).toBeGreaterThan(0);
  await sql.close();
  client.close();
  admin.close();
});
