import { Agent as HttpAgent, request as httpRequest, type OutgoingHttpHeaders } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import type { OriginFetch } from "../../../app/proxy/index.ts";

/** An origin idle this long (no headers, or a body that stopped) fails the request. */
const ORIGIN_TIMEOUT_MS = 30_000;
/** Statuses whose responses have no body (RFC 9110 6.4.1). */
const NO_BODY = new Set([101, 204, 205, 304]);

export interface NodeOriginFetch {
  fetch: OriginFetch;
  /** Closes the kept-alive connections. */
  close(): void;
}

/**
 * The proxy's origin requests over node:http(s) with kept-alive connections. Unlike
 * `fetch`, it passes bodies through as sent (no Content-Encoding decoding), keeps each
 * repeated response field (Set-Cookie among them), and sends the Host of the origin.
 */
export function nodeOriginFetch(): NodeOriginFetch {
  const http = new HttpAgent({ keepAlive: true, maxSockets: 256 });
  const https = new HttpsAgent({ keepAlive: true, maxSockets: 256 });
  const fetch: OriginFetch = (url, init) => send(url, init, true);
  const send = (url: string, init: Parameters<OriginFetch>[1], retry: boolean) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(url);
      const secure = target.protocol === "https:";
      const headers: OutgoingHttpHeaders = {};
      for (const [name, value] of init.headers) headers[name] = value;
      const req = (secure ? httpsRequest : httpRequest)(target, {
        method: init.method,
        headers,
        agent: secure ? https : http,
      });
      // node:http gives 1xx responses other than 101 as `information`, before `response`.
      if (init.onInterim) {
        const onInterim = init.onInterim;
        req.on("information", (info) => {
          const h = new Headers();
          for (let i = 0; i + 1 < info.rawHeaders.length; i += 2) {
            h.append(info.rawHeaders[i]!, info.rawHeaders[i + 1]!);
          }
          onInterim(info.statusCode, h);
        });
      }
      req.setTimeout(ORIGIN_TIMEOUT_MS, () => req.destroy(new Error("origin timed out")));
      let answered = false;
      // After the headers, a failure (a body cut short) reaches the reader of the stream.
      req.on("error", (err) => {
        if (answered) return;
        // A kept-alive connection the origin closed just as it was reused: a request
        // without a body is safe to send again, once (as the Node.js docs advise).
        if (
          retry &&
          req.reusedSocket &&
          !init.body &&
          (err as { code?: string }).code === "ECONNRESET"
        ) {
          send(url, init, false).then(resolve, reject);
        } else reject(err);
      });
      req.once("response", (res) => {
        answered = true;
        try {
          const h = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
            h.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
          }
          const status = res.statusCode ?? 502;
          // The Fetch API takes final statuses 200 to 599 only, and a Response made under
          // @hono/node-server checks that late, where it would be a 500: a broken reply.
          if (status < 200 || status > 599) throw new RangeError(`origin status ${status}`);
          const empty = NO_BODY.has(status) || init.method === "HEAD";
          if (empty) res.resume();
          const body = empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
          resolve(new Response(body, { status, headers: h }));
        } catch (err) {
          // A status or header value the Fetch API refuses: a broken origin reply.
          res.destroy();
          reject(err);
        }
      });
      if (init.body) {
        const body = Readable.fromWeb(init.body as NodeReadableStream<Uint8Array>);
        body.once("error", (err) => req.destroy(err));
        body.pipe(req);
      } else req.end();
    });
  return {
    fetch,
    close() {
      http.destroy();
      https.destroy();
    },
  };
}
