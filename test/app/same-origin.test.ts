import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { sameOrigin, sameOriginWrites } from "../../src/app/access.ts";
import { onError } from "../../src/app/errors.ts";

// The CSRF guard of the data API's writes and the admin API: an Origin header is exactly
// scheme://host[:port] (RFC 6454 7); anything else in one names no origin of this node.

const HOST = "127.0.0.1:8787";

function app(): Hono {
  const a = new Hono();
  a.onError(onError);
  a.use("*", sameOriginWrites());
  a.all("*", (c) => c.json({ ok: true }));
  return a;
}

const patch = (origin: string) =>
  app().request(`http://${HOST}/v1/users/1`, {
    method: "PATCH",
    headers: { host: HOST, origin, "content-type": "application/json" },
    body: "{}",
  });

describe("a write's Origin", () => {
  it.each([
    ["another scheme", `ftp://${HOST}`],
    ["another scheme, ws", `ws://${HOST}`],
    ["userinfo", `http://evil.com@${HOST}`],
    ["userinfo with a password", `http://u:p@${HOST}`],
    ["a path", `http://${HOST}/evil`],
    ["a trailing slash", `http://${HOST}/`],
    ["a query", `http://${HOST}?x`],
    ["a fragment", `http://${HOST}#x`],
    ["a backslash (the parser's /)", `http://${HOST}\\evil`],
    ["null", "null"],
    ["another host", "http://evil.com"],
    ["another port", "http://127.0.0.1:1"],
  ])("with %s is not this origin: a 403", async (_, origin) => {
    const r = await patch(origin);
    expect(r.status, origin).toBe(403);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe("E_FORBIDDEN");
    expect(sameOrigin(origin, HOST), origin).toBe(false);
  });

  it.each([
    ["the listener's own", `http://${HOST}`],
    ["https, as a TLS-terminating front proxy's browser sends it", `https://${HOST}`],
    ["in upper case", `HTTP://${HOST}`],
  ])("that is %s is this origin", async (_, origin) => {
    expect((await patch(origin)).status, origin).toBe(200);
    expect(sameOrigin(origin, HOST), origin).toBe(true);
  });
});

describe("an origin listed in allowedOrigins", () => {
  it("passes only as scheme://host[:port]: with userinfo or a path it is another", async () => {
    const a = new Hono();
    a.onError(onError);
    a.use("*", sameOriginWrites(new Set(["https://app.example"])));
    a.all("*", (c) => c.json({ ok: true }));
    const post = (origin: string) =>
      a.request(`http://${HOST}/v1/users`, { method: "POST", headers: { host: HOST, origin } });
    expect((await post("https://app.example")).status).toBe(200);
    for (const origin of [
      "https://evil@app.example",
      "https://app.example/x",
      "https://app.example/",
    ]) {
      expect((await post(origin)).status, origin).toBe(403);
    }
  });
});
