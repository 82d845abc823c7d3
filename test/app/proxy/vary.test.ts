import { describe, expect, it } from "vitest";
import { proxied, cacheStatusOf as status } from "./harness.ts";

// Vary'd request headers normalized before keying (RFC 9111 4.1: "a cache MAY normalize"),
// against a real origin that answers by them.

describe("Vary normalization (RFC 9111 4.1)", () => {
  it("keys Accept-Encoding by the set of codings accepted, whatever their order, case and weights", async () => {
    const { origin, get } = await proxied((req, res) => {
      const accepts = String(req.headers["accept-encoding"] ?? "");
      res.writeHead(200, { "cache-control": "max-age=60", vary: "Accept-Encoding" });
      res.end(/br/.test(accepts) ? "br body" : /gzip/.test(accepts) ? "gzip body" : "plain");
    });
    expect((await get("/enc", { "accept-encoding": "gzip, deflate, br" })).text).toBe("br body");
    for (const same of [
      "br;q=1.0, gzip;q=0.8, deflate",
      "DEFLATE,BR , GZIP",
      "x-gzip, br, deflate",
    ]) {
      const r = await get("/enc", { "accept-encoding": same });
      expect(status(r)).toMatch(/^edgecache; hit/);
      expect(r.text).toBe("br body");
    }
    expect(origin.count()).toBe(1);
    // Another set is another variant: a client without br must not get the br body.
    expect((await get("/enc", { "accept-encoding": "gzip" })).text).toBe("gzip body");
    expect((await get("/enc", { "accept-encoding": "gzip, br;q=0" })).text).toBe("gzip body");
    expect(origin.count()).toBe(2);
    expect((await get("/enc")).text).toBe("plain");
    expect(origin.count()).toBe(3);
  });

  it("keys Accept-Language by the languages in order of preference, whatever their case and weights", async () => {
    const { origin, get } = await proxied((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60", vary: "Accept-Language" });
      res.end(`for ${req.headers["accept-language"]}`);
    });
    await get("/lang", { "accept-language": "en-US,en;q=0.9" });
    for (const same of ["en-us, en;q=0.5", "en;q=0.8, en-US", "EN-US,en;q=0.9,fr;q=0"]) {
      expect(status(await get("/lang", { "accept-language": same }))).toMatch(/^edgecache; hit/);
    }
    expect(origin.count()).toBe(1);
    await get("/lang", { "accept-language": "en, en-US;q=0.9" }); // another preference
    await get("/lang", { "accept-language": "fr-FR" });
    expect(origin.count()).toBe(3);
  });

  it("keys equally weighted languages as one, whatever their order (RFC 9110 12.5.4)", async () => {
    // cache-tests vary-normalise-lang-order: weights say the preference; the order of equals
    // "cannot be relied upon", so `en, de` and `de, en` ask the same (RFC 9111 4.1).
    const { origin, get } = await proxied((req, res) => {
      const first = req.headers["accept-language"]!.split(",")[0]!.trim();
      res.writeHead(200, {
        "cache-control": "max-age=60",
        vary: "Accept-Language",
        "content-language": first,
      });
      res.end(first);
    });
    expect((await get("/tie", { "accept-language": "en, de" })).text).toBe("en");
    for (const same of ["de, en", "DE;q=1, en", "de,en;q=1.0"]) {
      const reply = await get("/tie", { "accept-language": same });
      expect(status(reply), same).toMatch(/^edgecache; hit/);
      expect(reply.text).toBe("en");
    }
    expect(origin.count()).toBe(1);
    // Unequal weights still order: de first is another preference.
    await get("/tie", { "accept-language": "de, en;q=0.9" });
    await get("/tie", { "accept-language": "en, de;q=0.9, fr;q=0.9" });
    expect(origin.count()).toBe(3);
    expect(status(await get("/tie", { "accept-language": "en, fr;q=0.5, de;q=0.5" }))).toMatch(
      /^edgecache; hit/,
    );
  });

  it("never selects a variant by its Content-Language for a request that did not ask alike", async () => {
    // RFC 9111 4.1: not without revalidation unless the Vary'd fields match (cache-tests
    // vary-normalise-lang-select asks for this).
    const { origin, get } = await proxied((_, res) => {
      res.writeHead(200, {
        "cache-control": "max-age=60",
        vary: "Accept-Language",
        "content-language": "de",
      });
      res.end("de");
    });
    await get("/select", { "accept-language": "en, de" });
    const other = await get("/select", { "accept-language": "fr;q=0.5, de;q=1.0" });
    expect(status(other)).toMatch(/fwd=vary-miss; stored/);
    expect(origin.count()).toBe(2);
  });
});

describe("Vary records and purges", () => {
  it("drops the URL's Vary record with a tag purge of its variants", async () => {
    const { origin, proxy, get } = await proxied((req, res) => {
      res.writeHead(200, {
        "cache-control": "max-age=60",
        vary: "Accept-Language",
        "cache-tag": "page",
      });
      res.end(`for ${req.headers["accept-language"]}`);
    });
    await get("/tagged", { "accept-language": "en" });
    await get("/tagged", { "accept-language": "fr" });
    expect(await proxy.node.proxy.purge({ tags: ["page"] })).toBe(2);
    // Nothing of the URL is left: the next request is a plain URI miss, not a Vary miss.
    expect(status(await get("/tagged", { "accept-language": "en" }))).toMatch(
      /^edgecache; fwd=uri-miss; stored/,
    );
    expect(origin.count()).toBe(3);
    const keys = [...proxy.node.cache.keys({ prefix: "/tagged" })];
    expect(keys.filter((k) => !k.includes(" vary:"))).toHaveLength(1);
  });
});
