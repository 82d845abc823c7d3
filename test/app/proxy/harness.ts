import { rmSync } from "node:fs";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { onTestFinished } from "vitest";
import {
  createNodeProxy,
  type NodeProxy,
  type NodeProxyOptions,
} from "../../../src/adapter/node/modes/proxy.ts";
import type { OriginRoute } from "../../../src/app/proxy/index.ts";
import { fakeClock } from "../../helpers/chaos-store.ts";
import { tempDir } from "../harness.ts";

/**
 * A real origin (node:http on a free port) whose handler a test sets, counting the
 * requests it answers and keeping their headers; and edgecache's proxy in front of it over
 * real sockets, on a fake clock.
 */
export interface Origin {
  url: string;
  /** Requests answered, in order. */
  requests: { method: string; url: string; headers: IncomingHttpHeaders; body: string }[];
  /** How many requests reached the origin for `path` (all when absent). */
  count(path?: string): number;
  handle(handler: OriginHandler): void;
  close(): Promise<void>;
}

export type OriginHandler = (
  req: IncomingMessage & { body: string },
  res: ServerResponse,
) => void | Promise<void>;

export async function startOrigin(handler?: OriginHandler): Promise<Origin> {
  let current: OriginHandler =
    handler ??
    ((_, res) => {
      res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=60" });
      res.end("ok");
    });
  const requests: Origin["requests"] = [];
  const server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    requests.push({ method: req.method!, url: req.url!, headers: req.headers, body });
    try {
      await current(Object.assign(req, { body }), res);
    } catch (err) {
      res.destroy(err as Error);
    }
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    count: (path) => requests.filter((r) => path === undefined || r.url === path).length,
    handle(h) {
      current = h;
    },
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
}

export interface ProxyHarness {
  node: NodeProxy;
  url: string;
  /** host:port of the proxy, as clients put it in Host. */
  host: string;
  /** The proxy's host without the port: what keys hold and the origin's X-Forwarded-Host. */
  hostname: string;
  clock: ReturnType<typeof fakeClock>;
  close(): Promise<void>;
}

export async function startProxy(
  origin: string | OriginRoute[],
  options: Partial<NodeProxyOptions> = {},
  cwd = tempDir("edgecache-proxy-"),
): Promise<ProxyHarness> {
  const clock = fakeClock(Date.now());
  const node = await createNodeProxy({
    origins: typeof origin === "string" ? [{ origin }] : origin,
    cacheFile: false,
    port: 0,
    cwd,
    now: clock.now,
    ...options,
  });
  const { url } = await node.listen();
  return {
    node,
    url,
    host: new URL(url).host,
    hostname: new URL(url).hostname,
    clock,
    async close() {
      await node.close();
      rmSync(cwd, { recursive: true, force: true });
    },
  };
}

export interface RawReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

/**
 * An HTTP request over node:http, which sends headers as given (fetch refuses some, such
 * as Connection, and adds others).
 */
export function raw(
  url: string,
  options: { method?: string; headers?: Record<string, string | string[]>; body?: string } = {},
): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? "GET", headers: options.headers });
    req.once("error", reject);
    req.once("response", async (res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of res) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks);
      resolve({ status: res.statusCode!, headers: res.headers, body, text: body.toString() });
    });
    req.end(options.body);
  });
}

/** Replies with a JSON body counting the origin's requests for this path, and `headers`. */
export function counting(headers: Record<string, string | string[]>, status = 200): OriginHandler {
  const seen = new Map<string, number>();
  return (req, res) => {
    const n = (seen.get(req.url!) ?? 0) + 1;
    seen.set(req.url!, n);
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify({ n, url: req.url }));
  };
}

export const SECOND = 1000;

export type Get = (
  path: string,
  headers?: Record<string, string>,
  method?: string,
) => Promise<RawReply>;

/**
 * An origin with `handler` and a proxy in front of it, both closed when the test ends, and
 * `get` to request a path through the proxy.
 */
export async function proxied(
  handler?: OriginHandler,
  options: Partial<NodeProxyOptions> & { ttl?: number } = {},
): Promise<{ origin: Origin; proxy: ProxyHarness; get: Get }> {
  const origin = await startOrigin(handler);
  onTestFinished(() => origin.close());
  const { ttl, ...rest } = options;
  const proxy = await startProxy([{ origin: origin.url, ...(ttl !== undefined && { ttl }) }], rest);
  onTestFinished(() => proxy.close());
  const get: Get = (path, headers = {}, method = "GET") =>
    raw(`${proxy.url}${path}`, { method, headers });
  return { origin, proxy, get };
}

/** The Cache-Status a reply carries. */
export const cacheStatusOf = (r: { headers: Record<string, unknown> }) =>
  String(r.headers["cache-status"]);
