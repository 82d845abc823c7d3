import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import type { Context, Hono } from "hono";
import { entryReply } from "../../app/http.ts";
import type { Cache } from "../../core/cache.ts";
import type { CacheEntry } from "../../core/entry.ts";
import { requestKey } from "../../core/keys.ts";

export interface NodeServerOptions {
  app: Hono;
  /** With a cache whose first tier is memory, fresh hits under `fastPrefix` skip Hono. */
  cache?: Cache;
  /** Path prefix whose GETs are cached by `cache` ("/v1/"). */
  fastPrefix?: string;
  /**
   * Finds the fresh memory-tier entry that answers a GET or HEAD as a plain hit, or
   * undefined to let the app answer (the proxy's lookup); replaces `cache` and `fastPrefix`.
   * It must count the hit, and return only what the app would answer with
   * `entryReply(entry, {kind: "hit"}, ...)`.
   */
  findHit?: (req: IncomingMessage) => CacheEntry | undefined;
  port?: number;
  hostname?: string;
  /** Clock of the fast path's Age and ttl (the cache's, for tests' fake clocks). */
  now?: () => number;
}

export interface RunningServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/**
 * Serves a Hono app on Node. A fresh hit in the memory tier is answered straight from the
 * request listener, without building Request and Response objects: the same reply the app
 * would send (entryReply), at a fraction of the cost. Everything else goes to the app.
 */
export function startServer(options: NodeServerOptions): Promise<RunningServer> {
  const listener = getRequestListener(options.app.fetch);
  const { cache } = options;
  // The proxy's lookup takes every path; the data API's only its own.
  const prefix = options.findHit ? "/" : (options.fastPrefix ?? "/v1/");
  const now = options.now ?? Date.now;
  const findHit =
    options.findHit ?? (cache ? (req: IncomingMessage) => cache.peek(keyOf(req.url!)) : undefined);
  const server = createServer((req, res) => {
    if (
      findHit &&
      (req.method === "GET" || req.method === "HEAD") &&
      req.url?.startsWith(prefix) &&
      // What the app would refuse (a backslash, no Host) it must refuse here too.
      !req.url.includes("\\") &&
      req.headers.host !== undefined
    ) {
      const entry = findHit(req);
      if (entry) {
        serveHit(entry, req, res, now);
        return;
      }
    }
    listener(req, res);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8787, options.hostname ?? "127.0.0.1", () => {
      server.off("error", reject);
      const { port, address, family } = server.address() as AddressInfo;
      const host = family === "IPv6" ? `[${address}]` : address;
      resolve({
        server,
        url: `http://${host}:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** Raw request targets to cache keys: most hits repeat a target seen before. */
const KEY_MEMO_SIZE = 10_000;
/** Longer targets are keyed each time, so the memo stays within a few tens of MB. */
const KEY_MEMO_MAX_TARGET = 2048;
const keyMemo = new Map<string, string>();

function keyOf(target: string): string {
  let key = keyMemo.get(target);
  if (key === undefined) {
    // The same normalization the app applies (WHATWG URL parsing), so keys agree.
    const url = new URL(target, "http://localhost");
    key = requestKey(url.pathname, url.search);
    if (target.length <= KEY_MEMO_MAX_TARGET) {
      if (keyMemo.size >= KEY_MEMO_SIZE) keyMemo.clear();
      keyMemo.set(target, key);
    }
  }
  return key;
}

/**
 * The headers of a plain hit change only when its Age or its Cache-Status ttl ticks to the
 * next whole second, so they are built once per entry and tick, not per request.
 */
const hitHeaders = new WeakMap<CacheEntry, { until: number; headers: Record<string, string> }>();

function serveHit(
  entry: CacheEntry,
  req: IncomingMessage,
  res: ServerResponse,
  clock: () => number,
): void {
  const now = clock();
  const inm = req.headers["if-none-match"];
  const ims = req.headers["if-modified-since"];
  let status = entry.status;
  let headers: Record<string, string>;
  let body: Uint8Array | undefined = entry.body;
  if (inm === undefined && ims === undefined) {
    let memo = hitHeaders.get(entry);
    if (!memo || now >= memo.until) {
      const reply = entryReply(entry, { kind: "hit" }, now, undefined);
      reply.headers["content-length"] = String(entry.body.byteLength);
      const age = Math.floor((now - entry.createdAt) / 1000);
      const ttl = Math.floor((entry.freshUntil - now) / 1000);
      const until = Math.min(entry.createdAt + (age + 1) * 1000, entry.freshUntil - ttl * 1000 + 1);
      memo = { until, headers: reply.headers };
      hitHeaders.set(entry, memo);
    }
    headers = memo.headers;
  } else {
    const reply = entryReply(entry, { kind: "hit" }, now, inm, ims);
    status = reply.status;
    headers = reply.headers;
    body = reply.body;
    if (body) headers["content-length"] = String(body.byteLength);
  }
  res.writeHead(status, headers);
  res.end(req.method === "HEAD" ? undefined : body);
}

/** Whether the request came from this machine (admin API without a token). */
export function isLoopback(c: Context): boolean {
  const addr = (c.env as HttpBindings | undefined)?.incoming?.socket?.remoteAddress ?? "";
  return addr.startsWith("127.") || addr === "::1" || addr.startsWith("::ffff:127.");
}
