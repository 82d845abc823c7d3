/**
 * An origin for the proxy and tenant modes that records every request it gets (method, raw
 * target, headers as sent) and names it in its answer: `X-Echo-Id` holds the record's id,
 * which a stored answer keeps, so the harness can tell what the origin saw when it built
 * an answer served later from the cache. Answers are cacheable (max-age) unless the path
 * says otherwise; `/vary/*` varies on Accept, the only request header it reads (it echoes
 * the rest in its body, which is what a careless origin does with X-Forwarded-Host).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/** One request as the origin got it. */
export interface OriginRequest {
  id: number;
  method: string;
  /** The request line's target, as sent. */
  target: string;
  /** Name/value pairs in order, names as sent. */
  headers: [string, string][];
  /** What it was answered: 304 says a stored body built for another request is still good. */
  status?: number;
}

export interface EchoOrigin {
  url: string;
  /** Every request so far, by id (ids start at 1). */
  log: OriginRequest[];
  byId(id: number): OriginRequest | undefined;
  close(): Promise<void>;
}

/** The header naming the origin request an answer was built for. */
export const ECHO_ID = "x-echo-id";
/** The request headers the echo origin says it varies on (RFC 9110 12.5.5). */
export const ECHO_VARY = ["accept"];

export async function startEchoOrigin(): Promise<EchoOrigin> {
  const log: OriginRequest[] = [];
  const server = createServer(async (req, res) => {
    const headers: [string, string][] = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      headers.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
    }
    const seen: OriginRequest = {
      id: log.length + 1,
      method: req.method ?? "",
      target: req.url ?? "",
      headers,
    };
    log.push(seen);
    try {
      for await (const _ of req); // the body, if any
    } catch {
      return; // the proxy gave up on this request (its client went away): nothing to answer
    }
    const path = req.url ?? "/";
    const out: Record<string, string> = {
      "content-type": "text/plain",
      "cache-control": "max-age=60",
      etag: '"v1"',
      [ECHO_ID]: String(seen.id),
    };
    if (path.startsWith("/vary")) out.vary = ECHO_VARY.join(", ");
    if (path.startsWith("/private")) out["cache-control"] = "no-store";
    if (path.startsWith("/tagged")) out["cache-tag"] = "pages,tagged";
    if (req.headers["if-none-match"] === '"v1"') {
      seen.status = 304;
      res.writeHead(304, out);
      res.end();
      return;
    }
    seen.status = 200;
    res.writeHead(200, out);
    res.end(req.method === "HEAD" ? undefined : `page ${path}`);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    byId: (id) => log[id - 1],
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
}
