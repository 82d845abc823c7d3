import {
  type IncomingMessage,
  type OutgoingHttpHeader,
  type OutgoingHttpHeaders,
  Server,
  ServerResponse,
} from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { getRequestListener, type HttpBindings, RequestError } from "@hono/node-server";
import type { Context, Hono } from "hono";
import { listenerHosts } from "../../../app/access.ts";
import type { AdminOptions } from "../../../app/admin.ts";
import { errorReply, errorResponse } from "../../../app/errors.ts";
import { requestHead, requestRefusal } from "../../../app/request-target.ts";
import type { Cache } from "../../../core/cache/index.ts";
import { requestKey } from "../../../core/data/keys.ts";
import type { CacheEntry } from "../../../core/entries/entry.ts";
import { checkOptionNames, EdgecacheError, type OptionNames } from "../../../core/errors.ts";
import { memoize } from "../../../core/memo.ts";
import { type HitRequest, hitReply } from "./hit-reply.ts";
import { inOrder } from "./in-order.ts";
import { RawHits, type RawHitsOptions, replyBytes } from "./raw-hits.ts";

export type { HitRequest } from "./hit-reply.ts";

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
   * `entryReply(entry, {kind: "hit"}, ...)`. It reads only the request's method, target
   * (`url`) and lower-cased headers: on the raw path there is no IncomingMessage. (Method
   * syntax: a lookup typed for IncomingMessage, as before the raw path, still type-checks.)
   */
  findHit?(req: HitRequest): CacheEntry | undefined;
  /**
   * Answer hits straight from the socket, before node:http parses the request (true). Such
   * hits bypass the server's `request` event; false keeps every request on node:http.
   */
  rawHits?: boolean;
  port?: number;
  hostname?: string;
  /**
   * Host names answered besides the loopback ones and `hostname` (see `listenerHosts` in
   * access.ts: on a loopback listener always checked, elsewhere once names are listed);
   * false answers every Host (the tenants node: each request names its tenant by a key
   * a page cannot know, or by a tenant's public host).
   */
  allowedHosts?: readonly string[] | false;
  /** Names the app routes by (the proxy's origins' `host`): answered as if in allowedHosts. */
  routedHosts?: readonly string[];
  /** Clock of the fast path's Age and ttl (the cache's, for tests' fake clocks). */
  now?: () => number;
  /**
   * Sees every request node:http parses before it is answered (the request log). Hits the
   * raw path answers never reach it: turn `rawHits` off to see every request.
   */
  onRequest?: (req: IncomingMessage, res: ServerResponse) => void;
}

export interface RunningServer {
  /** node:http's server; its close() and closeAllConnections() end raw connections too. */
  server: Server;
  url: string;
  /**
   * Stops accepting connections, lets requests in flight finish (each connection closes
   * once its last reply is out), and ends what is left after `drainMs` (DRAIN_MS).
   */
  close(drainMs?: number): Promise<void>;
}

/** Every option of NodeServerOptions: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<NodeServerOptions> = {
  allowedHosts: true,
  app: true,
  routedHosts: true,
  cache: true,
  fastPrefix: true,
  findHit: true,
  hostname: true,
  now: true,
  onRequest: true,
  port: true,
  rawHits: true,
};
/** How long close() waits for requests in flight before it ends their connections. */
export const DRAIN_MS = 10_000;
/** While draining, connections whose replies are out are closed this often. */
const IDLE_SWEEP_MS = 50;
/** How long a connection closed before its request's body came in still reads the rest. */
const LINGER_MS = 5_000;

/**
 * Serves a Hono app on Node. A fresh hit in the memory tier is answered without building
 * Request and Response objects: the same reply the app would send (entryReply), at a
 * fraction of the cost. On a keep-alive connection whose requests are plain GETs and HEADs
 * the raw path (raw-hits.ts) answers hits before node:http parses anything; the rest goes
 * to node:http, whose request listener answers hits the same way and gives the rest to the app.
 */
export function startServer(options: NodeServerOptions): Promise<RunningServer> {
  checkOptionNames("server", options, OPTIONS);
  // What @hono/node-server refuses itself (a target it cannot make a URL of) gets the
  // JSON error too; requestRefusal below decides first on everything it knows of.
  const listener = getRequestListener(options.app.fetch, {
    errorHandler: (err) =>
      errorResponse(
        err instanceof RequestError
          ? new EdgecacheError("E_BAD_QUERY", "http", "the request target does not parse")
          : err,
      ),
  });
  const { cache } = options;
  const hostname = options.hostname ?? "127.0.0.1";
  const hosts =
    options.allowedHosts === false
      ? undefined
      : listenerHosts("server", hostname, options.allowedHosts, options.routedHosts);
  /** requestRefusal, then whether this listener answers the Host (DNS rebinding). */
  const refusal = (target: string, host: string | undefined) =>
    requestRefusal(target, host) ?? (target.startsWith("/") ? hosts?.(target, host) : undefined);
  // The proxy's lookup takes every path; the data API's only its own (dataApiHits).
  const now = options.now ?? Date.now;
  const findHit = options.findHit ?? (cache ? dataApiHits(cache, options.fastPrefix) : undefined);
  /** A request requestRefusal lets through: its fresh hit, if it is one. */
  const lookup = (req: HitRequest): CacheEntry | undefined => {
    if (!findHit || (req.method !== "GET" && req.method !== "HEAD") || !req.url?.startsWith("/")) {
      return undefined;
    }
    try {
      return findHit(req);
    } catch {
      // Input the lookup cannot key goes to the app, which answers it (a 400): a throw here
      // would be outside any handler and end the process.
      return undefined;
    }
  };
  const server = new HitServer(
    // Looked up when the request's turn comes: after a write pipelined before it.
    inOrder((req, res) => {
      options.onRequest?.(req, res);
      // Two Hosts, an absolute-form target: decided first, and such a target is answered as
      // its origin-form, so the URL the app builds has the listener's scheme (requestHead).
      const head = requestHead(req.url ?? "", req.headersDistinct.host);
      if (typeof head !== "string") return refuse(head, res);
      req.url = head;
      // Decided on the request line as sent, before the runtime's URL parsing rewrites it
      // (dot segments): the same decision as the raw path's below.
      const refused = refusal(req.url ?? "", req.headers.host);
      if (refused) return refuse(refused, res);
      const entry = lookup(req);
      if (entry) serveHit(entry, req, res, now());
      else listener(req, res);
    }),
    options.rawHits === false || !findHit
      ? undefined
      : (req, keepAliveMs) => {
          // A refused request is node:http's, whose listener answers it.
          const entry = refusal(req.url, req.headers.host) ? undefined : lookup(req);
          return entry && replyBytes(hitReply(entry, req, now()), req.method, keepAliveMs);
        },
  );
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8787, hostname, () => {
      server.off("error", reject);
      const { port, address, family } = server.address() as AddressInfo;
      const host = family === "IPv6" ? `[${address}]` : address;
      resolve({
        server,
        url: `http://${host}:${port}`,
        close: (drainMs = DRAIN_MS) =>
          new Promise<void>((done) => {
            // node:http's close() ends the connections idle at that moment only; a busy one
            // becomes idle when its reply is out, and the sweep then closes it.
            const sweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
            const force = setTimeout(() => server.closeAllConnections(), drainMs);
            server.close(() => {
              clearInterval(sweep);
              clearTimeout(force);
              done();
            });
          }),
      });
    });
  });
}

/**
 * node:http's server with the raw path in front: each new connection goes to RawHits first,
 * which gives it to node:http's own connection listener when it meets a request it does
 * not answer. The server listens itself, so address(), close() and the timeouts set on it
 * are node:http's; closing ends the raw connections too.
 */
class HitServer extends Server {
  readonly #raw: RawHits | undefined;

  constructor(
    listener: (req: IncomingMessage, res: ServerResponse) => void,
    answer: RawHitsOptions["answer"] | undefined,
  ) {
    // The option is typed generic over the request class; node:http passes IncomingMessage.
    // Without Host (RFC 9112 3.2) the listener answers, with the JSON error (requestRefusal).
    super(
      { ServerResponse: BodyAwareResponse as typeof ServerResponse, requireHostHeader: false },
      listener,
    );
    // node:http parses a connection from the `connection` listener its constructor added;
    // should a Node version differ, every connection simply stays with node:http.
    const [http, ...others] = this.listeners("connection") as ((socket: Socket) => void)[];
    if (!answer || !http || others.length > 0) {
      this.#raw = undefined;
      return;
    }
    this.off("connection", http);
    const raw = new RawHits({
      server: this,
      handOver: (socket) => http.call(this, socket),
      answer,
    });
    this.on("connection", (socket: Socket) => raw.accept(socket));
    this.#raw = raw;
  }

  override closeAllConnections(): void {
    super.closeAllConnections();
    this.#raw?.closeAll();
  }

  override closeIdleConnections(): void {
    super.closeIdleConnections();
    this.#raw?.closeIdle();
  }
}

/**
 * A reply whose request's body has not all come in (a 404, 403 or 413 answered without
 * reading it) closes the connection: node:http would read the rest before the next
 * request, but the listener's clean-up (@hono/node-server) drops the connection when that
 * takes long, under a client told keep-alive. Closing, it keeps reading what the client
 * still sends (lingering close), since closing a socket with unread input resets it, and a
 * reset can cost the client the reply it has not read yet.
 */
class BodyAwareResponse extends ServerResponse {
  override writeHead(status: number, message?: string, headers?: Fields): this;
  override writeHead(status: number, headers?: Fields): this;
  override writeHead(status: number, ...rest: [string?, Fields?] | [Fields?]): this {
    if (this.shouldKeepAlive && bodyToCome(this.req)) {
      this.shouldKeepAlive = false; // node:http sends Connection: close and ends the socket
      lingerOnClose(this.req.socket, this.req);
    }
    return super.writeHead(status, ...(rest as [string?, Fields?]));
  }
}

type Fields = OutgoingHttpHeaders | OutgoingHttpHeader[];

/**
 * Whether a request declares a body not all in yet. (`complete` alone would not do: a
 * request without a body is complete only after its `request` event, where hits answer.)
 */
function bodyToCome(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers["content-length"];
  return (length !== undefined && length !== "0") || req.headers["transfer-encoding"] !== undefined;
}

/**
 * Makes the close node:http asks for once the reply is out (destroySoon) end the socket and
 * discard what the client still sends of `req`'s body, for LINGER_MS at most. A reader the
 * app left (a body stream read in part) would otherwise hold the rest, and the socket, paused.
 */
function lingerOnClose(socket: Socket, req: IncomingMessage): void {
  let lingering = false;
  socket.destroySoon = () => {
    if (lingering) return;
    lingering = true;
    req.removeAllListeners("data");
    req.resume();
    socket.end();
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once("close", () => clearTimeout(timer));
  };
}

/** The data API's hit lookup: fresh memory entries of GETs under `prefix` ("/v1/"). */
export function dataApiHits(
  cache: Cache,
  prefix = "/v1/",
): (req: HitRequest) => CacheEntry | undefined {
  return (req) => (req.url!.startsWith(prefix) ? cache.peek(keyOf(req.url!)) : undefined);
}

/**
 * Raw request targets to cache keys: most hits repeat a target seen before. The same
 * normalization the app applies (WHATWG URL parsing), so keys agree.
 */
const keyOf = memoize(
  (target) => {
    const url = new URL(target, "http://localhost");
    return requestKey(url.pathname, url.search);
  },
  { size: 10_000 },
);

function refuse(err: EdgecacheError, res: ServerResponse): void {
  const { status, headers, body } = errorReply(err);
  res.writeHead(status, headers);
  res.end(body);
}

function serveHit(entry: CacheEntry, req: IncomingMessage, res: ServerResponse, now: number): void {
  const reply = hitReply(entry, req, now);
  res.writeHead(reply.status, reply.headers);
  res.end(req.method === "HEAD" ? undefined : reply.body);
}

/** The TCP peer's address of a request startServer received (the admin API's peerAddress). */
export function peerAddress(c: Context): string | undefined {
  return (c.env as HttpBindings | undefined)?.incoming?.socket?.remoteAddress;
}

/** The admin API's access options from a Node server's settings. */
export function adminAccess(options: {
  hostname?: string;
  trustedProxies?: string[];
  allowedHosts?: string[];
}): Pick<AdminOptions, "peerAddress" | "trustedProxies" | "allowedHosts"> {
  return {
    peerAddress,
    trustedProxies: options.trustedProxies,
    // The name it listens on is one its clients may use.
    allowedHosts: [
      ...(options.allowedHosts ?? []),
      ...(options.hostname ? [options.hostname] : []),
    ],
  };
}
