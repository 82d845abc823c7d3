import { describe, expect, it } from "vitest";
import { createProxy } from "../../../src/app/proxy/index.ts";
import { Cache } from "../../../src/core/cache/index.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { CLAIM_NAMES } from "../../fuzz/grammar.ts";
import { cacheStatusOf, type OriginHandler, proxied, type RawReply } from "./harness.ts";

// Which client headers reach the origin: a real origin that answers with the headers it
// got (cacheable), so a header that reached it would be in the stored answer every later
// client of the URL gets (web cache poisoning, issue 46).

/** Answers with the request's headers as JSON, cacheable for 10 minutes. */
const echo: OriginHandler = (req, res) => {
  res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=600" });
  res.end(JSON.stringify({ url: req.url, method: req.method, headers: req.headers }));
};

const seen = (r: RawReply): Record<string, string> => JSON.parse(r.text).headers;

/** Headers a proxy in front would set; a client's own would build the answer (Rack reads X-Forwarded-Ssl). */
const CLAIMS = [
  "x-forwarded-scheme",
  "x-forwarded-ssl",
  "x-forwarded-path",
  "x-forwarded-port",
  "x-forwarded-prefix",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-for",
  "x-original-host",
  "x-original-method",
  "x-original-url",
  "front-end-https",
  "true-client-ip",
  "x-client-ip",
  "x-real-ip",
  "forwarded",
  "x-http-method-override",
];
/** Any other header, which the origin could read just as well. */
const OTHERS = ["x-anything", "user-agent", "x-api-version", "referer"];

describe("a cached read's origin request", () => {
  it.each([...CLAIMS, ...OTHERS])(
    "never carries the client's %s, and another client gets the same answer",
    async (name) => {
      const { origin, get } = await proxied(echo);
      const first = await get("/page", { [name]: "evil" });
      expect(first.status).toBe(200);
      expect(origin.count()).toBe(1);
      expect(origin.requests[0]!.headers[name] ?? "", name).not.toContain("evil");
      expect(first.text).not.toContain("evil");
      // Another client of the URL: a hit on the answer the first one's request built.
      const second = await get("/page");
      expect(cacheStatusOf(second)).toMatch(/^edgecache; hit/);
      expect(second.text).toBe(first.text);
    },
  );

  it("carries the default ones (negotiation, credentials, directives) and edgecache's own", async () => {
    const { origin, proxy, get } = await proxied(echo);
    const sent = {
      accept: "application/json",
      "accept-language": "fr",
      "accept-encoding": "gzip",
      origin: "https://app.example",
      cookie: "a=1",
    };
    await get("/defaults", sent);
    const got = origin.requests[0]!.headers;
    expect(got).toMatchObject(sent);
    expect(got["x-forwarded-host"]).toBe(proxy.hostname);
    expect(got["x-forwarded-proto"]).toBe("http");
    expect(got["x-forwarded-for"]).toBe("127.0.0.1");
    expect(got.via).toContain("edgecache");
  });

  it("carries a header named in forwardHeaders, and keys by it: each value its own answer", async () => {
    const { origin, get } = await proxied(echo, { forwardHeaders: ["X-Tenant", "user-agent"] });
    const a = await get("/t", { "x-tenant": "a" });
    const b = await get("/t", { "x-tenant": "b" });
    const none = await get("/t");
    expect(seen(a)["x-tenant"]).toBe("a");
    expect(seen(b)["x-tenant"]).toBe("b");
    expect(seen(none)["x-tenant"]).toBeUndefined();
    expect(origin.count()).toBe(3);
    const again = await get("/t", { "x-tenant": "a" });
    expect(cacheStatusOf(again)).toMatch(/^edgecache; hit/);
    expect(seen(again)["x-tenant"]).toBe("a");
    const againNone = await get("/t");
    expect(cacheStatusOf(againNone)).toMatch(/^edgecache; hit/);
    expect(seen(againNone)["x-tenant"]).toBeUndefined();
    // Headers not named stay out, named ones in, keyed with the origin's own Vary.
    const ua = await get("/t", { "x-tenant": "a", "user-agent": "bot", "x-anything": "evil" });
    expect(seen(ua)["user-agent"]).toBe("bot");
    expect(seen(ua)["x-anything"]).toBeUndefined();
    expect(origin.count()).toBe(4);
  });
});

describe("a request whose answer is never stored (POST)", () => {
  it("carries the client's other headers, but not what only a proxy in front may claim", async () => {
    const { origin, get } = await proxied(echo);
    const claims = Object.fromEntries(CLAIMS.map((n) => [n, "evil"]));
    await get("/form", { ...claims, "x-csrf-token": "t1", "x-anything": "kept" }, "POST");
    const got = origin.requests[0]!.headers;
    expect(got["x-csrf-token"]).toBe("t1");
    expect(got["x-anything"]).toBe("kept");
    for (const name of CLAIMS) expect(got[name] ?? "", name).not.toContain("evil");
  });

  it("drops a claim spelled with underscores or in any case: CGI, WSGI, Rack and PHP read X_Forwarded_Host as X-Forwarded-Host", async () => {
    const { origin, get } = await proxied(echo);
    const spellings = [
      "X_Forwarded_Host",
      "x_forwarded_for",
      "X-Forwarded_Proto",
      "x_forwarded-ssl",
      "X_ORIGINAL_URL",
      "X_Real_IP",
      "True_Client_IP",
      "Front_End_Https",
      "X_HTTP_Method_Override",
      "Cf_Connecting_Ip",
    ];
    await get("/form", Object.fromEntries(spellings.map((n) => [n, "evil"])), "POST");
    const got = origin.requests[0]!.headers;
    for (const name of spellings) expect(got[name.toLowerCase()], name).toBeUndefined();
    expect(JSON.stringify(got)).not.toContain("evil");
  });

  it("drops the claims of other stacks and auth proxies too (client address, scheme, host and path overrides, identity), in any spelling", async () => {
    const { origin, get } = await proxied(echo);
    // The generator's list (test/fuzz/grammar.ts), less the three edgecache sets itself.
    const names = CLAIM_NAMES.filter((n) => !/^x-forwarded-(for|host|proto)$/i.test(n));
    for (const spell of [(n: string) => n, (n: string) => n.toLowerCase().replaceAll("-", "_")]) {
      origin.requests.length = 0;
      await get("/form", Object.fromEntries(names.map((n) => [spell(n), "evil"])), "POST");
      const got = origin.requests[0]!.headers;
      for (const name of names) expect(got[spell(name).toLowerCase()], name).toBeUndefined();
      expect(JSON.stringify(got)).not.toContain("evil");
    }
  });

  it("never carries Proxy (httpoxy, CVE-2016-5385: CGI reads it as HTTP_PROXY, the outbound proxy), on reads or writes", async () => {
    const { origin, get } = await proxied(echo);
    for (const method of ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]) {
      await get(
        `/p-${method}`,
        { proxy: "http://evil.example:8080", "cache-control": "no-cache" },
        method,
      );
    }
    expect(origin.count()).toBe(6);
    for (const r of origin.requests) expect(r.headers.proxy, r.method).toBeUndefined();
  });

  it("carries a claim the operator named (their own front proxy sets it)", async () => {
    const { origin, get } = await proxied(echo, { forwardHeaders: ["x-forwarded-ssl"] });
    await get("/form", { "x-forwarded-ssl": "on" }, "POST");
    expect(origin.requests[0]!.headers["x-forwarded-ssl"]).toBe("on");
  });
});

describe("the forwardHeaders option", () => {
  it.each([
    ["host", "host"],
    ["connection", "connection"],
    ["x-forwarded-for", "x-forwarded-for"],
    ["via", "via"],
    ["x_forwarded_for, an underscore spelling of one edgecache sets", "x_forwarded_for"],
    ["X_Forwarded_Proto", "X_Forwarded_Proto"],
    ["proxy (httpoxy: never sent to an origin)", "proxy"],
    ["Proxy", "Proxy"],
    ["a name with a space", "x a"],
  ])("refuses %s with E_BAD_OPTION naming it", (_, name) => {
    const cache = new Cache({ tiers: [memoryStore()] });
    expect(() =>
      createProxy({ cache, routes: [{ origin: "http://127.0.0.1:1" }], forwardHeaders: [name] }),
    ).toThrow(
      expect.objectContaining({ code: "E_BAD_OPTION", message: expect.stringContaining(name) }),
    );
  });
});

describe("the scheme the origin is told (X-Forwarded-Proto)", () => {
  it("keys its answers: one built for https is never served to an http request, nor the reverse", async () => {
    const seenProto: string[] = [];
    const cache = new Cache({ tiers: [memoryStore()] });
    const proxy = createProxy({
      cache,
      routes: [{ origin: "http://origin.test" }],
      // Like Rails' force_ssl: a redirect to https for a request told it came by http.
      fetch: async (_, init) => {
        const proto = init.headers.get("x-forwarded-proto") ?? "";
        seenProto.push(proto);
        return new Response(`built for ${proto}`, {
          status: 200,
          headers: { "cache-control": "max-age=600" },
        });
      },
    });
    const text = async (url: string) => (await proxy.app.request(url)).text();
    expect(await text("https://example.com/p")).toBe("built for https");
    expect(await text("http://example.com/p")).toBe("built for http");
    expect(await text("https://example.com/p")).toBe("built for https");
    expect(await text("http://example.com/p")).toBe("built for http");
    expect(seenProto).toEqual(["https", "http"]);
  });
});
