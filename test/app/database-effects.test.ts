import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNodeEdgecache, type NodeEdgecache } from "../../src/adapter/node/modes/data-api.ts";

/**
 * Schemas where the database does more than the written row: collations, triggers,
 * ON UPDATE actions, REPLACE, untyped columns. Reads after each write must be fresh.
 */

let dir: string;
let ec: NodeEdgecache;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "edgecache-effects-"));
  const db = new Database(join(dir, "app.db"));
  db.exec(`
    CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT COLLATE NOCASE, active BOOLEAN NOT NULL DEFAULT 0);
    INSERT INTO people VALUES (1, 'alice', 1), (2, 'bob', 0);
    CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT UNIQUE);
    CREATE TABLE mails (id INTEGER PRIMARY KEY,
      email TEXT REFERENCES accounts(email) ON UPDATE CASCADE);
    INSERT INTO accounts VALUES (1, 'a@x');
    INSERT INTO mails VALUES (10, 'a@x');
    CREATE TABLE counts (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
    INSERT INTO counts VALUES (1, 0);
    CREATE TRIGGER count_mails AFTER INSERT ON mails BEGIN
      UPDATE counts SET n = n + 1 WHERE id = 1;
    END;
    CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT UNIQUE ON CONFLICT REPLACE);
    INSERT INTO tags VALUES (1, 'red'), (2, 'blue');
    CREATE TABLE items (id INTEGER PRIMARY KEY, code, name TEXT);
    INSERT INTO items VALUES (1, 123, 'Alice');
  `);
  db.close();
  ec = await createNodeEdgecache({ cwd: dir, database: "app.db" });
});

afterAll(async () => {
  await ec?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function get(path: string) {
  const res = await ec.app.request(path);
  // biome-ignore lint/suspicious/noExplicitAny: bodies are inspected field by field
  const body: any = await res.json();
  return { status: res.status, cache: res.headers.get("cache-status"), body };
}

async function send(method: string, path: string, body: unknown) {
  const res = await ec.app.request(path, {
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status, await res.clone().text()).toBeLessThan(300);
}

describe("writes whose effects reach beyond the row", () => {
  it("compares text by code point even on a NOCASE column, so the planner agrees", async () => {
    expect((await get("/v1/people?name=BOB")).body.data).toEqual([]);
    await send("PATCH", "/v1/people/2", { name: "BOB" });
    const after = await get("/v1/people?name=BOB");
    expect(after.body.data).toEqual([{ id: 2, name: "BOB", active: 0 }]);
  });

  it("treats BOOLEAN columns as numbers and accepts JSON booleans", async () => {
    expect((await get("/v1/people?active=1")).body.data.map((p: { id: number }) => p.id)).toEqual([
      1,
    ]);
    await send("PATCH", "/v1/people/2", { active: true });
    expect((await get("/v1/people?active=1")).body.data.map((p: { id: number }) => p.id)).toEqual([
      1, 2,
    ]);
  });

  it("sees rows an ON UPDATE CASCADE changed", async () => {
    expect((await get("/v1/mails/10")).body.email).toBe("a@x");
    expect((await get("/v1/mails?email=a@x")).body.data).toHaveLength(1);
    await send("PATCH", "/v1/accounts/1", { email: "b@x" });
    expect((await get("/v1/mails/10")).body.email).toBe("b@x");
    expect((await get("/v1/mails?email=a@x")).body.data).toEqual([]);
  });

  it("sees rows a trigger changed", async () => {
    const before = (await get("/v1/counts/1")).body.n as number;
    await send("POST", "/v1/mails", { id: 11, email: "b@x" });
    expect((await get("/v1/counts/1")).body.n).toBe(before + 1);
  });

  it("sees rows an ON CONFLICT REPLACE deleted", async () => {
    expect((await get("/v1/tags/1")).status).toBe(200);
    await send("PATCH", "/v1/tags/2", { label: "red" }); // replaces row 1
    expect((await get("/v1/tags/1")).status).toBe(404);
  });

  it("matches a prefix only against text, as the planner does", async () => {
    expect((await get("/v1/items?code=12*&name=Bob")).body.data).toEqual([]);
    await send("PATCH", "/v1/items/1", { name: "Bob" });
    const cached = await get("/v1/items?code=12*&name=Bob");
    const uncached = await get("/v1/items?code=12*&name=Bob&limit=20"); // another key
    expect(uncached.cache).toMatch(/fwd=miss/);
    expect(cached.body.data).toEqual(uncached.body.data);
  });
});
