import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  booksDatabase,
  expectClientError,
  type Harness,
  HIT,
  send,
  startEdgecache,
  tempDir,
} from "./harness.ts";

let h: Harness;

beforeAll(async () => {
  const cwd = tempDir();
  booksDatabase(cwd);
  h = await startEdgecache({ database: "books.db" }, cwd);
});

afterAll(async () => {
  await h?.close();
});

describe("request limits and odd targets", () => {
  it("refuses a body over 1 MB with a JSON 413, on the data and the admin API", async () => {
    const big = JSON.stringify({ title: "x".repeat(1024 * 1024 + 10) });
    const r = await send(h.edgecache, "POST", "/v1/books", big, {
      "content-length": String(big.length),
    });
    expectClientError(r, 413, "E_TOO_LARGE", "body");
    expect(h.fresh("SELECT count(*) AS n FROM books")[0]).toEqual({ n: 3 });
  });

  it("admin row invalidation clears a cached 404 spelled 05 for the number key 5", async () => {
    await send(h.edgecache, "GET", "/v1/books/5");
    expect((await send(h.edgecache, "GET", "/v1/books/5")).headers.get("cache-status")).toMatch(
      HIT,
    );
    const { server } = await h.edgecache.listen();
    const port = (server.address() as { port: number }).port;
    const res = await fetch(`http://127.0.0.1:${port}/_edgecache/invalidate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ row: { table: "books", id: "05" } }),
    });
    expect(await res.json()).toEqual({ invalidated: 1 });

    // The fast path refuses what the app refuses: a backslash in the target is the app's 400.
    await send(h.edgecache, "GET", "/v1/books/1");
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ port, path: "/v1/books/x\\..\\1", host: "127.0.0.1" }, (r) => {
        r.resume();
        resolve(r.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    expect(status).not.toBe(200);
  });
});
