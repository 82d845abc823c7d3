import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { sqliteSource } from "../../../src/sources/sqlite.ts";
import { sqliteStore } from "../../../src/stores/sqlite.ts";

// Opening a SQLite file switches it to WAL mode. A file in rollback-journal mode that another
// process is writing answers that switch SQLITE_BUSY at once, whatever the busy timeout
// (SQLite's deadlock rule): two nodes started together on one file, or a node started while
// the app writes, failed to start with "database is locked".

const dir = mkdtempSync(join(tmpdir(), "edgecache-open-file-"));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file in rollback-journal mode with one table of one row. */
function rollbackFile(name: string): string {
  const path = join(dir, `${name}.db`);
  const db = new Database(path);
  db.pragma("journal_mode = DELETE");
  db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
  db.exec("INSERT INTO items (id, name) VALUES (1, 'one')");
  db.close();
  return path;
}

const betterSqlite = createRequire(import.meta.url).resolve("better-sqlite3");

/**
 * Another process that writes `path` in a transaction it holds for `ms` (inserting row 2),
 * then commits. Resolves once the transaction holds the file's write lock; `done` resolves
 * when the process has committed and exited.
 */
async function writerHolding(path: string, ms: number): Promise<{ done: Promise<number> }> {
  const script = `
    const Database = require(${JSON.stringify(betterSqlite)});
    const db = new Database(${JSON.stringify(path)});
    db.exec("BEGIN IMMEDIATE; INSERT INTO items (id, name) VALUES (2, 'two')");
    console.log("held");
    setTimeout(() => { db.exec("COMMIT"); db.close(); }, ${ms});
  `;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  const done = new Promise<number>((resolve) => child.on("exit", (code) => resolve(code ?? 1)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("held")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`the writer exited with ${code}`)));
  });
  return { done };
}

async function table(source: ReturnType<typeof sqliteSource>) {
  return (await source.schema()).tables.get("items")!;
}

function journalMode(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    return db.pragma("journal_mode", { simple: true }) as string;
  } finally {
    db.close();
  }
}

describe("opening a SQLite file another process is writing", () => {
  it("the data API's source waits for the write, then opens the file in WAL mode and reads the write's row", async () => {
    const path = rollbackFile("source");
    const writer = await writerHolding(path, 300);
    const source = sqliteSource({ path });
    try {
      expect(await writer.done).toBe(0);
      expect(journalMode(path)).toBe("wal");
      expect(
        await source.get({ kind: "table", name: "items", table: await table(source) }, 2),
      ).toMatchObject({
        name: "two",
      });
    } finally {
      await source.close();
    }
  });

  it("the source gives up after its busyTimeout, naming the file and the lock", async () => {
    const path = rollbackFile("source-timeout");
    const writer = await writerHolding(path, 1_500);
    const started = Date.now();
    expect(() => sqliteSource({ path, busyTimeout: 200 })).toThrow(
      expect.objectContaining({
        code: "E_SOURCE_UNAVAILABLE",
        message: expect.stringMatching(/cannot open database .*source-timeout\.db.*locked/),
      }),
    );
    // It waited, and gave up before the writer let go (else it would have opened): the
    // option's time, not SQLite's default of five seconds.
    expect(Date.now() - started).toBeGreaterThanOrEqual(180);
    await writer.done;
  });

  it("a cache file shared by processes (not exclusive) waits for the write too, then stores and reads", async () => {
    const path = rollbackFile("store");
    const writer = await writerHolding(path, 300);
    const store = sqliteStore({ path });
    try {
      expect(await writer.done).toBe(0);
      expect(journalMode(path)).toBe("wal");
      const entry = {
        body: new TextEncoder().encode("hello"),
        headers: {},
        status: 200,
        createdAt: Date.now(),
        freshUntil: Date.now() + 60_000,
        staleUntil: Date.now() + 60_000,
        etag: '"1"',
        tags: [],
      };
      await store.set("k", entry, 60_000);
      expect(new TextDecoder().decode((await store.get("k"))!.body)).toBe("hello");
    } finally {
      await store.close();
    }
  });
});
