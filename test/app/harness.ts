import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { expect } from "vitest";
import {
  createNodeEdgecache,
  type NodeEdgecache,
  type NodeEdgecacheOptions,
} from "../../src/adapter/node/modes/data-api.ts";
import type { Row } from "../../src/core/data/query.ts";
import { EdgecacheError } from "../../src/core/errors.ts";

/**
 * A real edgecache over real SQLite files in a temp dir (the demo unless `database` is
 * given), plus a second, read-only connection that answers "what does the database say
 * now", independent of the data API.
 */
export interface Harness {
  edgecache: NodeEdgecache;
  cwd: string;
  /** A fresh query over a separate connection. */
  fresh(sql: string, ...params: unknown[]): Row[];
  close(): Promise<void>;
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected field by field
  json: any;
}

export function tempDir(prefix = "edgecache-app-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startEdgecache(
  options: NodeEdgecacheOptions = {},
  cwd = tempDir(),
): Promise<Harness> {
  const edgecache = await createNodeEdgecache({
    demo: { users: 200, orders: 1000 },
    port: 0,
    ...options,
    cwd,
  });
  const reader = new Database(edgecache.databasePath, { readonly: true });
  return {
    edgecache,
    cwd,
    fresh: (sql, ...params) => reader.prepare(sql).all(...params) as Row[],
    async close() {
      reader.close();
      await edgecache.close();
      rmSync(cwd, { recursive: true, force: true });
    },
  };
}

/** In-process HTTP through the whole app (no socket). A body object is sent as JSON. */
export async function send(
  edgecache: NodeEdgecache,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await edgecache.app.request(path, requestInit(method, body, headers));
  return reply(res);
}

/** A request's method, headers and body; a body object is sent as JSON. */
export function requestInit(
  method: string,
  body?: unknown,
  headers: Record<string, string> = {},
): RequestInit {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] = "application/json";
  }
  return init;
}

export async function reply(res: Response): Promise<Reply> {
  const text = await res.text();
  let json: unknown;
  try {
    json = text === "" ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export const MISS_STORED = /^edgecache; fwd=miss; stored; ttl=\d+$/;
export const HIT = /^edgecache; hit; ttl=\d+$/;

/** Asserts a client error: the status, the code, a message naming `names`, nothing internal. */
export function expectClientError(r: Reply, status: number, code: string, ...names: string[]) {
  expect(r.status).toBe(status);
  expect(r.headers.get("content-type")).toMatch(/^application\/json/);
  expect(r.json).toEqual({ error: { code, message: expect.any(String) } });
  for (const name of names) expect(r.json.error.message).toContain(name);
  expectNothingInternal(r.text);
}

/** Asserts that `fn` throws E_BAD_OPTION with a message matching `pattern`. */
export function expectBadOption(fn: () => unknown, pattern: RegExp) {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(EdgecacheError);
  expect((thrown as EdgecacheError).code).toBe("E_BAD_OPTION");
  expect((thrown as Error).message).toMatch(pattern);
}

/** Never a database message, SQL text or a stack trace in what a client sees. */
export function expectNothingInternal(text: string) {
  expect(text).not.toContain("SQLITE");
  expect(text).not.toMatch(/\bSELECT\b/);
  expect(text).not.toMatch(/\bat \S+ \(|\n\s+at /);
  expect(text).not.toMatch(/\.ts:\d+:\d+/);
}

/**
 * A small database of the user's own, for `database:` configs: books (INTEGER key, a
 * nullable column) and their reviews (ON DELETE CASCADE).
 */
export function booksDatabase(cwd: string, file = "books.db"): string {
  const path = join(cwd, file);
  const db = new Database(path);
  db.exec(`
    CREATE TABLE books (
      id INTEGER PRIMARY KEY,
      title TEXT NOT NULL,
      subtitle TEXT,
      pages INTEGER
    );
    CREATE TABLE reviews (
      id INTEGER PRIMARY KEY,
      bookId INTEGER NOT NULL REFERENCES books(id) ON DELETE CASCADE,
      stars INTEGER NOT NULL
    );
    INSERT INTO books (id, title, subtitle, pages) VALUES
      (1, 'Dune', 'A novel', 412),
      (2, 'Emma', NULL, 300),
      (3, 'Kim', 'A story of India', 368);
    INSERT INTO reviews (id, bookId, stars) VALUES (1, 1, 5), (2, 1, 4), (3, 3, 2);
  `);
  db.close();
  return path;
}
