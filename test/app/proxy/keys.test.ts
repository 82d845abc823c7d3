import { describe, expect, it, onTestFinished } from "vitest";
import {
  counting,
  proxied,
  raw,
  startOrigin,
  startProxy,
  cacheStatusOf as status,
} from "./harness.ts";

// Cache keys and the port in Host (RFC 9110 7.2: Host names the target's host and port;
// the port a client happened to write there does not change the resource behind the proxy).

describe("keys and the port in Host", () => {
  it("shares one entry among requests whose Host differs only by port", async () => {
    const { origin, proxy } = await proxied(counting({ "cache-control": "max-age=60" }));
    const url = `${proxy.url}/same`;
    await raw(url); // Host: 127.0.0.1:<proxy port>
    for (const host of ["127.0.0.1", "127.0.0.1:443", "127.0.0.1:80"]) {
      expect(status(await raw(url, { headers: { host } })), host).toMatch(/^edgecache; hit/);
    }
    expect(origin.count()).toBe(1);
  });

  it("tells the origin only the keyed host, so a port in Host cannot poison the entry", async () => {
    const { origin, proxy } = await proxied((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60" });
      res.end(`<a href="http://${req.headers["x-forwarded-host"]}/next">`);
    });
    const attack = await raw(`${proxy.url}/home`, { headers: { host: "127.0.0.1:666" } });
    expect(attack.text).toBe('<a href="http://127.0.0.1/next">');
    expect((await raw(`${proxy.url}/home`)).text).toBe('<a href="http://127.0.0.1/next">');
    expect(origin.requests[0]!.headers["x-forwarded-host"]).toBe("127.0.0.1");
  });

  it("keeps the port of routes that name one apart: they may lead to different origins", async () => {
    const a = await startOrigin(counting({ "cache-control": "max-age=60", "x-origin": "a" }));
    onTestFinished(() => a.close());
    const b = await startOrigin(counting({ "cache-control": "max-age=60", "x-origin": "b" }));
    onTestFinished(() => b.close());
    const proxy = await startProxy([
      { origin: a.url, host: "api.test:8080" },
      { origin: b.url, host: "api.test:9090" },
    ]);
    onTestFinished(() => proxy.close());
    const get = (host: string) => raw(`${proxy.url}/x`, { headers: { host } });
    expect((await get("api.test:8080")).headers["x-origin"]).toBe("a");
    expect((await get("api.test:9090")).headers["x-origin"]).toBe("b");
    expect((await get("api.test:8080")).headers["x-origin"]).toBe("a");
    expect(a.count() + b.count()).toBe(2);
  });
});
