import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isTemplate, templateOf, valueKind } from "../../../../src/app/proxy/learn/template.ts";

describe("route templates from concrete URLs", () => {
  it.each([
    ["/api/users/7", "/api/users/:id", ["7"]],
    ["/api/users/7/profile", "/api/users/:id/profile", ["7"]],
    ["/api/teams/3/members", "/api/teams/:id/members", ["3"]],
    [
      "/api/orders/3f2b8c1e-9a4d-4c2b-8f1e-2a3b4c5d6e7f",
      "/api/orders/:id",
      ["3f2b8c1e-9a4d-4c2b-8f1e-2a3b4c5d6e7f"],
    ],
    ["/api/docs/507f1f77bcf86cd799439011", "/api/docs/:id", ["507f1f77bcf86cd799439011"]],
    ["/blog/post-2024-hello", "/blog/:id", ["post-2024-hello"]],
    ["/api/users?team=3", "/api/users?team=*", ["3"]],
    ["/api/users?sort=name&team=3", "/api/users?sort=*&team=*", ["name", "3"]],
    ["/api/users?team=3&sort=name", "/api/users?sort=*&team=*", ["name", "3"]],
    ["/api/prices/-1.5", "/api/prices/:id", ["-1.5"]],
    ["/api/users/me", "/api/users/me", []],
    ["/api/v2/users", "/api/v2/users", []],
    ["/", "/", []],
  ])("%s is %s", (target, template, values) => {
    expect(templateOf(target)).toEqual({ template, values });
  });

  it("keeps names (words, versions, short hex-looking words) as they are", () => {
    for (const name of ["users", "profile", "v2", "cafe", "deadbeef", "me", "search-results"]) {
      expect(valueKind(name)).toBeUndefined();
    }
  });

  it("gives the same template to targets that differ only in values (property)", () => {
    const id = fc.oneof(
      fc.nat().map(String),
      fc.uuid(),
      fc.stringMatching(/^[0-9a-f]{24}$/).filter((s) => /\d/.test(s)),
    );
    fc.assert(
      fc.property(id, id, fc.nat(), fc.nat(), (a, b, t1, t2) => {
        const x = templateOf(`/api/users/${a}/profile?team=${t1}`);
        const y = templateOf(`/api/users/${b}/profile?team=${t2}`);
        expect(x.template).toBe(y.template);
        expect(x.values).toEqual([a, String(t1)]);
      }),
    );
  });

  it("keeps every value, and the template text put back with them gives the target (property)", () => {
    const segment = fc.oneof(
      fc.constantFrom("api", "users", "teams", "profile", "members", "v1"),
      fc.nat().map(String),
      fc.uuid(),
    );
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), (segments) => {
        const target = `/${segments.join("/")}`;
        const { template, values } = templateOf(target);
        let i = 0;
        expect(template.replace(/:id/g, () => values[i++] as string)).toBe(target);
        expect(i).toBe(values.length);
        expect(isTemplate(template)).toBe(true);
      }),
    );
  });

  it("recognises hand-written templates and refuses unknown placeholders", () => {
    expect(isTemplate("/api/users/:id/profile")).toBe(true);
    expect(isTemplate("/api/users?team=*")).toBe(true);
    expect(isTemplate("/api/users/:name")).toBe(false);
    expect(isTemplate("/api/users/:uuid")).toBe(false);
    expect(isTemplate("api/users")).toBe(false);
    expect(isTemplate("/api/users?team=3")).toBe(false);
  });
});
