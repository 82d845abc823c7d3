import { describe, expect, it } from "vitest";
import { SESSION_HEADER, withSession } from "../../../src/adapter/cloudflare/session.ts";

// Session mode's answers carry the client's own session (header, cookie): a shared cache
// must never reuse them for another client, whatever the route lets CDNs keep.

const seen = { log: "ab", seq: 7 };
const answer = (cacheControl: string) =>
  new Response("{}", { headers: { "cache-control": cacheControl } });

describe("session mode's answers and shared caches", () => {
  it("a route shared with CDNs is made private once it carries a session", () => {
    const out = withSession(answer("max-age=60"), undefined, seen);
    expect(out.headers.get(SESSION_HEADER)).toBe("ab.7");
    expect(out.headers.get("set-cookie")).toContain("ab.7");
    expect(out.headers.get("cache-control")).toBe("private, max-age=60");
  });

  it("private, no-cache and no-store answers keep their Cache-Control", () => {
    for (const cc of ["private, max-age=60", "no-cache", "no-store"]) {
      expect(withSession(answer(cc), seen, seen).headers.get("cache-control")).toBe(cc);
    }
  });
});
