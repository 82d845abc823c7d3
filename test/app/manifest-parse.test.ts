import { describe, expect, it } from "vitest";
import {
  expandLine,
  MAX_MANIFEST_URLS,
  parseManifest,
} from "../../src/app/proxy/manifest/parse.ts";
import { EdgecacheError } from "../../src/core/errors.ts";

// The manifest's file format: one path or URL a line, # comments, and patterns with a
// finite expansion ({1..20}, {a,b}) under a cap that is checked before anything expands.

function problem(text: string): string {
  try {
    parseManifest(text, "urls.txt");
  } catch (err) {
    expect(err).toBeInstanceOf(EdgecacheError);
    expect((err as EdgecacheError).code).toBe("E_BAD_OPTION");
    return (err as Error).message;
  }
  throw new Error("parsed");
}

describe("a manifest file", () => {
  it("is one path or URL a line; comments, blank lines and repeats are skipped", () => {
    const text = [
      "# the pages users open first",
      "",
      "/v1/users?limit=10   # the home page's list",
      "  https://api.example.com/v1/orders  ",
      "/v1/users?limit=10",
      "\r",
    ].join("\r\n");
    expect(parseManifest(text, "urls.txt")).toEqual([
      "/v1/users?limit=10",
      "https://api.example.com/v1/orders",
    ]);
  });

  it("expands ranges and alternatives, every combination in order", () => {
    expect(parseManifest("/v1/{users,orders}?page={1..3}\n/feed{,.json}", "m")).toEqual([
      "/v1/users?page=1",
      "/v1/users?page=2",
      "/v1/users?page=3",
      "/v1/orders?page=1",
      "/v1/orders?page=2",
      "/v1/orders?page=3",
      "/feed",
      "/feed.json",
    ]);
    expect(expandLine("/d/{08..11}", "m")).toEqual(["/d/08", "/d/09", "/d/10", "/d/11"]);
    expect(expandLine("/n/{3..1}", "m")).toEqual(["/n/3", "/n/2", "/n/1"]);
    expect(expandLine("https://{api,www}.example.com/", "m")).toEqual([
      "https://api.example.com/",
      "https://www.example.com/",
    ]);
  });

  it("refuses an expansion beyond the cap, saying how many it would make, without making them", () => {
    expect(problem("/a\n/items/{1..20000}")).toBe(
      `[edgecache] [manifest] urls.txt:2: {1..20000} expands to 20000 URLs; at most ${MAX_MANIFEST_URLS} in a manifest`,
    );
    // 10^12 combinations: refused from the count alone.
    expect(problem("/x/{1..1000}/{1..1000}/{1..1000}/{1..1000}")).toContain(
      "urls.txt:1: expands to 1000000000000 URLs",
    );
    const full = `/a/{1..${MAX_MANIFEST_URLS}}`;
    expect(parseManifest(full, "m")).toHaveLength(MAX_MANIFEST_URLS);
    expect(problem(`${full}\n/one-more`)).toContain(
      `urls.txt:2: expands to 1 URLs; 0 more fit in a manifest of at most ${MAX_MANIFEST_URLS}`,
    );
  });

  it("names the file and line of a malformed pattern or URL", () => {
    expect(problem("/ok\n/a/{1..3")).toContain('urls.txt:2: "{" without "}"');
    expect(problem("/a/}")).toContain('urls.txt:1: "}" without "{"');
    expect(problem("/a/{x,{y,z}}")).toContain("urls.txt:1: braces do not nest");
    expect(problem("/a/{users}")).toContain("urls.txt:1: {users} is neither alternatives");
    expect(problem("\n\nftp://example.com/x")).toContain(
      'urls.txt:3: "ftp://example.com/x": expected a path starting with "/" or an http(s) URL',
    );
    expect(problem("v1/users")).toContain("urls.txt:1:");
    expect(problem("/_edgecache/stats")).toContain("outside /_edgecache");
    expect(problem("/{_edgecache,v1}/stats")).toContain('"/_edgecache/stats"');
    // What a client's request may not name, a manifest may not either: each is fetched.
    for (const url of [
      "/v1/..;/admin",
      "/v1/%2e%2e/admin",
      "/v1/..%5cadmin",
      "http://o.example/v1/..%3f/x",
    ]) {
      expect(problem(url), url).toContain(`urls.txt:1: ${JSON.stringify(url)}: expected`);
    }
  });
});
