import { afterEach, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../../../src/adapter/node/server/server.ts";
import { startEdgecache } from "../../app/harness.ts";
import { startOrigin, startProxy } from "../../app/proxy/harness.ts";
import { exchange } from "./raw-client.ts";

// Pipelined requests on one connection (RFC 9112 9.3.2): answered in order, and an unsafe
// request processed neither alongside the requests before it nor those after it, on the raw
// hit path and on node:http alone.

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const portOf = (running: RunningServer) => Number(new URL(running.url).port);

describe("pipelined requests on one connection", () => {
  it.each([
    ["the raw hit path", true],
    ["node:http alone", false],
  ])("GET, GET, PATCH, GET: the last GET sees the PATCH (%s)", async (_, rawHits) => {
    const h = await startEdgecache();
    cleanup.push(() => h.close());
    const running = await startServer({
      app: h.edgecache.app,
      cache: h.edgecache.cache,
      rawHits,
      port: 0,
    });
    cleanup.push(() => running.close());
    const user = h.fresh("SELECT * FROM users ORDER BY id LIMIT 1")[0]!;
    const path = `/v1/users/${user.id}`;
    const get = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
    // Cached first, so each GET could be answered from memory at once.
    await exchange(portOf(running), get, ["GET"]);

    const body = JSON.stringify({ lastName: "Pipelined" });
    const patch =
      `PATCH ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\n\r\n${body}`;
    const { replies } = await exchange(portOf(running), get + get + patch + get, [
      "GET",
      "GET",
      "PATCH",
      "GET",
    ]);
    const lastNames = replies.map((r) => JSON.parse(r.body.toString()).lastName);
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(lastNames).toEqual([user.lastName, user.lastName, "Pipelined", "Pipelined"]);
  });

  it("a write waits for the request pipelined before it, and safe ones still run side by side", async () => {
    let version = 1;
    const log: string[] = [];
    let wrote = () => {};
    const o = await startOrigin(async (req, res) => {
      log.push(`${req.method} ${req.url} in`);
      if (req.method === "POST") {
        version++;
        wrote();
      } else if (req.url === "/slow") {
        // Answers once a write arrives (the bug) or after a while (writes wait their turn).
        await new Promise<void>((done) => {
          wrote = done;
          setTimeout(done, 300);
        });
      }
      log.push(`${req.method} ${req.url} out`);
      res.writeHead(200, { "cache-control": "no-store" });
      res.end(`v${version}`);
    });
    cleanup.push(() => o.close());
    const proxy = await startProxy(o.url);
    cleanup.push(() => proxy.close());
    const port = Number(new URL(proxy.url).port);
    const req = (method: string, target: string) =>
      `${method} ${target} HTTP/1.1\r\nHost: ${proxy.host}\r\nContent-Length: 0\r\n\r\n`;

    const { replies } = await exchange(
      port,
      req("GET", "/slow") + req("GET", "/fast") + req("POST", "/slow") + req("GET", "/fast"),
      ["GET", "GET", "POST", "GET"],
    );
    expect(replies.map((r) => r.body.toString())).toEqual(["v1", "v1", "v2", "v2"]);
    // The two GETs before the write ran side by side: the fast one was answered while the
    // slow one waited. The write came after both, the last GET after the write.
    expect(log).toEqual([
      "GET /slow in",
      "GET /fast in",
      "GET /fast out",
      "GET /slow out",
      "POST /slow in",
      "POST /slow out",
      "GET /fast in",
      "GET /fast out",
    ]);
  });
});
