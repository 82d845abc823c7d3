// Carries cache-tests' Req-Num header across the proxy, for measuring the proxy with the
// suite (docs/guides/proxy.md, "HTTP conformance, measured"). The proxy rightly does not
// send an unknown client header on a request whose answer may be stored, and without it the
// suite's server counts every second origin request of a test as a client retry. So:
// client -> :18789 (notes each test URL's Req-Num) -> proxy :18788 -> :18001 (puts it back)
// -> the suite's server :18000. Interim responses go on; a dropped connection is dropped.
//
//   npx tsx bench/cache-tests-relay.ts
import http from "node:http";

const last = new Map<string, string>();
const pathOf = (url: string) => url.split("?")[0]!;

function relay(port: number, target: number, onRequest: (req: http.IncomingMessage) => void) {
  http
    .createServer((req, res) => {
      onRequest(req);
      const upstream = http.request(
        {
          host: "127.0.0.1",
          port: target,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (reply) => {
          res.writeHead(reply.statusCode!, reply.statusMessage, reply.rawHeaders);
          reply.pipe(res);
          reply.on("error", () => res.destroy());
        },
      );
      upstream.on("information", (info) => {
        if (info.statusCode === 103)
          res.writeEarlyHints(info.headers as Record<string, string | string[]>);
        else if (info.statusCode === 102) res.writeProcessing();
        else if (info.statusCode === 100) res.writeContinue();
      });
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    })
    .listen(port, "127.0.0.1");
}

relay(18789, 18788, (req) => {
  const n = req.headers["req-num"];
  if (typeof n === "string") last.set(pathOf(req.url!), n);
});
relay(18001, 18000, (req) => {
  const n = last.get(pathOf(req.url!));
  if (req.headers["req-num"] === undefined && n !== undefined) req.headers["req-num"] = n;
});
