import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI } from "../helpers/built-cli.ts";
import { WRANGLER, WRANGLER_ENV } from "../helpers/wrangler-dev.ts";
import { cleanEnv, cli } from "./run-cli.ts";

// `edgecache capture ... --d1`: the real command against a real local D1 (wrangler's local
// state in a temporary project), through the real wrangler. Each wrangler call takes a few
// seconds, so the steps run in order in one project.

const run = promisify(execFile);
let dir: string;
let state: string;

async function wrangler(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [WRANGLER, ...args, "--persist-to", state], {
    cwd: dir,
    env: WRANGLER_ENV,
  });
  return stdout;
}
const sql = (command: string) => wrangler("d1", "execute", "DB", "--local", "--command", command);
/** The change table's rows (`columns` of them), in order. */
const changes = async (columns: string): Promise<unknown[]> =>
  JSON.parse(
    await wrangler(
      "d1",
      "execute",
      "DB",
      "--local",
      "--json",
      "--command",
      `SELECT ${columns} FROM _edgecache_changes ORDER BY seq`,
    ),
  )[0].results;
const capture = (...args: string[]) =>
  cli(["capture", ...args, "--persist-to", state], { cwd: dir });
const statusOf = async () => {
  const r = await capture("status", "--d1", "DB", "--json");
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as {
    installed: boolean;
    tables: string[];
    missing: string[];
    backlog: number;
  };
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "edgecache-d1-cli-"));
  state = join(dir, "state");
  writeFileSync(
    join(dir, "wrangler.jsonc"),
    JSON.stringify({
      name: "capture-cli",
      compatibility_date: "2025-01-01",
      d1_databases: [
        {
          binding: "DB",
          database_name: "app",
          database_id: "00000000-0000-0000-0000-000000000000",
        },
      ],
    }),
  );
  await sql(
    "CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT, email TEXT UNIQUE); CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO users VALUES ('u1', 'Ann', 'a@x')",
  );
}, 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("edgecache capture --d1", () => {
  it("installs the triggers through wrangler; writes made with wrangler d1 execute are captured (the row a REPLACE deletes on a unique column among them); status names a table created later", async () => {
    expect(await statusOf()).toMatchObject({ installed: false });
    const installed = await capture("install", "--d1", "DB", "--local");
    expect(installed.code, installed.stderr).toBe(0);
    expect(installed.stdout).toContain("capture: installed in D1 DB (local)");
    expect(installed.stdout).toContain("tables:  notes, users");
    await sql(
      "UPDATE users SET name = 'Bo' WHERE id = 'u1'; REPLACE INTO users VALUES ('u2', 'Cy', 'a@x'); CREATE TABLE later (id TEXT PRIMARY KEY)",
    );
    expect(await statusOf()).toMatchObject({
      installed: true,
      tables: ["notes", "users"],
      missing: ["later"],
      backlog: 3,
    });
    expect(await changes("tbl, op, old, new")).toEqual([
      {
        tbl: "users",
        op: "update",
        old: '{"id":"u1","name":"Ann","email":"a@x"}',
        new: '{"id":"u1","name":"Bo","email":"a@x"}',
      },
      { tbl: "users", op: "delete", old: '{"id":"u1","name":"Bo","email":"a@x"}', new: null },
      { tbl: "users", op: "insert", old: null, new: '{"id":"u2","name":"Cy","email":"a@x"}' },
    ]);
  }, 120_000);

  it("writes a migration that wrangler d1 migrations apply installs; uninstall drops everything", async () => {
    const uninstalled = await capture("uninstall", "--d1", "DB");
    expect(uninstalled.code, uninstalled.stderr).toBe(0);
    expect(uninstalled.stdout).toContain("capture: not installed");
    const migrations = join(dir, "migrations");
    const written = await capture("install", "--d1", "DB", "--migration", migrations);
    expect(written.code, written.stderr).toBe(0);
    expect(readdirSync(migrations)).toEqual(["0001_edgecache_capture.sql"]);
    await wrangler("d1", "migrations", "apply", "DB", "--local");
    expect(await statusOf()).toMatchObject({
      installed: true,
      tables: ["later", "notes", "users"],
      missing: [],
    });
    // The migration's triggers record the row a REPLACE deletes too.
    await sql("REPLACE INTO users VALUES ('u3', 'Di', 'a@x')");
    expect(await changes("op, old")).toEqual([
      { op: "delete", old: '{"id":"u2","name":"Cy","email":"a@x"}' },
      { op: "insert", old: null },
    ]);
  }, 120_000);

  it("tries a statement again while the local database is locked (as wrangler dev's drain locks it when it deletes what it drained), and says so", async () => {
    // The database file wrangler dev would hold open, locked for writing by a real SQLite
    // connection until the command says it waits; wrangler sets no busy timeout.
    const objects = join(state, "v3", "d1", "miniflare-D1DatabaseObject");
    const file = readdirSync(objects).find((f) => /^[0-9a-f]+\.sqlite$/.test(f));
    const db = new Database(join(objects, file!));
    db.exec("BEGIN IMMEDIATE");
    try {
      const child = spawn(
        process.execPath,
        [CLI, "capture", "uninstall", "--d1", "DB", "--persist-to", state],
        { cwd: dir, env: cleanEnv() },
      );
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk) => {
        stdout += chunk;
      });
      const exited = new Promise<number | null>((done) => child.once("exit", done));
      await new Promise<void>((told, fail) => {
        child.stderr.on("data", (chunk) => {
          stderr += chunk;
          if (/D1 DB \(local\) is locked .*; trying again \(1\/7\)/.test(stderr)) told();
        });
        void exited.then((code) => fail(new Error(`exited with ${code}\n${stdout}\n${stderr}`)));
      });
      db.exec("COMMIT");
      expect(await exited, stderr).toBe(0);
      expect(stdout).toContain("capture: not installed");
    } finally {
      if (db.inTransaction) db.exec("ROLLBACK");
      db.close();
    }
    expect(await statusOf()).toMatchObject({ installed: false });
  }, 120_000);

  it("says clearly when the database is not in wrangler's config, or both --local and --remote are given", async () => {
    const missing = await capture("status", "--d1", "nosuch");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("Couldn't find a D1 DB with the name or binding 'nosuch'");
    const both = await capture("status", "--d1", "DB", "--local", "--remote");
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("--local and --remote: give one");
    expect(existsSync(join(dir, "migrations", "0002_edgecache_capture.sql"))).toBe(false);
  }, 60_000);
});
