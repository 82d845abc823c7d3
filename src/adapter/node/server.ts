import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import type { Context, Hono } from "hono";
import { entryReply } from "../../app/http.ts";
import type { Cache } from "../../core/cache.ts";
import { requestKey } from "../../core/keys.ts";

export interface NodeServerOptions {
  app: Hono;
  /** With a cache whose first tier is memory, fresh hits under `fastPrefix` skip Hono. */
  cache?: Cache;
  /** Path prefix whose GETs are cached by `cache` ("/v1/"). */
  fastPrefix?: string;
  port?: number;
  hostname?: string;
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
  const prefix = options.fastPrefix ?? "/v1/";
  const server = createServer((req, res) => {
    if (cache && (req.method === "GET" || req.method === "HEAD") && req.url?.startsWith(prefix)) {
      if (serveHit(cache, req, res)) return;
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

function serveHit(cache: Cache, req: IncomingMessage, res: ServerResponse): boolean {
  // The same normalization the app applies (WHATWG URL parsing), so keys agree.
  const url = new URL(req.url!, "http://localhost");
  const key = requestKey(url.pathname, url.search);
  const entry = cache.peek(key);
  if (!entry) return false;
  const reply = entryReply(entry, { kind: "hit" }, Date.now(), req.headers["if-none-match"]);
  if (reply.body) reply.headers["content-length"] = String(reply.body.byteLength);
  res.writeHead(reply.status, reply.headers);
  res.end(req.method === "HEAD" ? undefined : reply.body);
  return true;
}

/** Whether the request came from this machine (admin API without a token). */
export function isLoopback(c: Context): boolean {
  const addr = (c.env as HttpBindings | undefined)?.incoming?.socket?.remoteAddress ?? "";
  return addr.startsWith("127.") || addr === "::1" || addr.startsWith("::ffff:127.");
}
