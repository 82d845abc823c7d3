import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Learner } from "../../../../src/app/proxy/learn/learner.ts";
import { addChanges } from "../../../../src/app/proxy/learn/rule-changes.ts";
import {
  checkRule,
  confidence,
  matchesRead,
  type Rule,
  readPattern,
  type Write,
  writeFields,
} from "../../../../src/app/proxy/learn/rules.ts";
import { shareChanges } from "../../../../src/app/proxy/learn/share.ts";

const patch7 = { method: "PATCH", target: "/api/users/7" };

/** Copies of cached pages, each holding the ids listed for it (and no rows). */
function holding(pages: ReadonlyMap<string, readonly string[]>) {
  return {
    has: (target: string) => pages.has(target),
    holds: (target: string, value: string) => pages.get(target)?.includes(value) ?? false,
    rows: () => undefined,
  };
}

describe("learned rules between route templates", () => {
  it("binds a read's values to the write's where they are equal", () => {
    expect(readPattern("/api/users/7/profile", ["7"])).toBe("/api/users/$1/profile");
    expect(readPattern("/api/users/8/profile", ["7"])).toBe("/api/users/:id/profile");
    expect(readPattern("/api/users?team=3", ["7"])).toBe("/api/users?team=*");
    expect(readPattern("/api/teams/3/members", ["3", "7"])).toBe("/api/teams/$1/members");
  });

  it("binds values to the write's fields: its answer's, then the copy's before it", () => {
    const fields = writeFields(
      { id: "o-1", userId: "u-9", status: "paid", tags: ["x"], team: { id: 3 } },
      { id: "o-1", userId: "u-9", status: "pending" },
    );
    expect([...fields]).toEqual([
      ["id", "o-1"],
      ["userId", "u-9"],
      ["status", "paid"],
      ["team.id", "3"],
      ["before.id", "o-1"],
      ["before.userId", "u-9"],
      ["before.status", "pending"],
    ]);
    expect(readPattern("/api/users/u-9/orders", ["o-1"], fields)).toBe("/api/users/$userId/orders");
    expect(readPattern("/api/orders?status=pending", ["o-1"], fields)).toBe(
      "/api/orders?status=$before.status",
    );
    expect(readPattern("/api/orders/o-1", ["o-1"], fields)).toBe("/api/orders/$1");
    expect(readPattern("/api/teams/3", [], fields)).toBe("/api/teams/$team.id");
    expect(matchesRead("/api/orders?status=$status", "/api/orders?status=paid", [], fields)).toBe(
      true,
    );
    expect(matchesRead("/api/orders?status=$status", "/api/orders?status=new", [], fields)).toBe(
      false,
    );
    expect(matchesRead("/api/orders?status=$nope", "/api/orders?status=paid", [], fields)).toBe(
      false,
    );
    expect(
      checkRule("PATCH /api/orders/:id", "/api/users/$userId/orders?status=$before.status"),
    ).toBe(undefined);
    expect(checkRule("PATCH /api/orders/:id", "/api/users?team=$1")).toBe(undefined);
    expect(checkRule("PATCH /api/orders/:id", "/api/users/$2")).toMatch(/names no value/);
  });

  it("matches a read against a rule: same template, bound values equal, free ones any", () => {
    expect(matchesRead("/api/users/$1/profile", "/api/users/7/profile", ["7"])).toBe(true);
    expect(matchesRead("/api/users/$1/profile", "/api/users/8/profile", ["7"])).toBe(false);
    expect(matchesRead("/api/users/:id/profile", "/api/users/8/profile", ["7"])).toBe(true);
    expect(matchesRead("/api/users?team=*", "/api/users?team=3", ["7"])).toBe(true);
    expect(matchesRead("/api/users?team=*", "/api/users?team=3&sort=x", ["7"])).toBe(false);
    expect(matchesRead("/api/users/:id/profile", "/api/users/8", ["7"])).toBe(false);
    expect(matchesRead("/api/users/$2", "/api/users/7", ["7"])).toBe(false);
  });

  it("a rule's confidence is held / tested, and it acts only past the threshold and minimum", () => {
    const learner = new Learner({ threshold: 0.75, minTests: 4 });
    learner.observe(patch7, "/api/users/7/profile", true, 1);
    learner.observe(patch7, "/api/users/7/profile", true, 2);
    learner.observe(patch7, "/api/users/7/profile", true, 3);
    const bound = learner.get("PATCH /api/users/:id -> /api/users/$1/profile")!;
    expect(bound).toMatchObject({ held: 3, tested: 3, lastSeen: 3 });
    expect(learner.acts(bound)).toBe(false); // 3 tests < 4
    learner.observe(patch7, "/api/users/7/profile", false, 4);
    expect(confidence(bound)).toBe(0.75);
    expect(learner.acts(bound)).toBe(true);
    learner.observe(patch7, "/api/users/7/profile", false, 5);
    expect(learner.acts(bound)).toBe(false); // 3/5 < 0.75
  });

  it("learns same-id and any-value rules apart, and plans only what acting rules match", () => {
    const learner = new Learner({ threshold: 0.9, minTests: 3 });
    for (let i = 0; i < 3; i++) {
      const w = { method: "PATCH", target: `/api/users/${i}` };
      learner.observe(w, `/api/users/${i}/profile`, true, i); // same user: changed
      learner.observe(w, `/api/users/${i + 100}/profile`, false, i); // another: not
      learner.observe(w, `/api/users?team=${i}`, true, i); // any list: changed
      learner.observe(w, `/api/teams/${i + 100}`, false, i); // teams: not
    }
    const cached = [
      "/api/users/7/profile",
      "/api/users/8/profile",
      "/api/users?team=1",
      "/api/users?team=2",
      "/api/teams/7",
      "/api/users/7",
    ];
    const plan = learner.plan(patch7, cached);
    expect(plan.targets.sort()).toEqual([
      "/api/users/7/profile",
      "/api/users?team=1",
      "/api/users?team=2",
    ]);
    expect(plan.rules.sort()).toEqual([
      "PATCH /api/users/:id -> /api/users/$1/profile",
      "PATCH /api/users/:id -> /api/users?team=*",
    ]);
    // The any-value profile rule held 3 of 6 times: it does not act.
    expect(confidence(learner.get("PATCH /api/users/:id -> /api/users/:id/profile")!)).toBe(0.5);
    // Other methods and templates have no rules.
    expect(learner.plan({ method: "DELETE", target: "/api/users/7" }, cached).targets).toEqual([]);
    // Named outright, cached here or not: the reads of rules whose every placeholder the
    // write binds (`$1`); the any-value team rule's `*` is found only among cached reads.
    expect(learner.named(patch7).sort()).toEqual(["/api/users/7/profile", "/api/users?team=7"]);
    expect(learner.named({ method: "DELETE", target: "/api/users/7" })).toEqual([]);
  });

  it("audits: a failed audit of an acting rule lowers its confidence until it stops acting", () => {
    const learner = new Learner({ minTests: 3, threshold: 0.9 });
    // A coincidence: three writes each found the team page changed (other writes did it).
    for (let i = 0; i < 3; i++) learner.observe(patch7, "/api/teams/1", true, i);
    const id = "PATCH /api/users/:id -> /api/teams/:id";
    const plan = learner.plan(patch7, ["/api/teams/1", "/api/teams/2", "/api/users/8"]);
    expect(plan.byRule.get(id)).toEqual(["/api/teams/1", "/api/teams/2"]);
    expect(learner.acts(learner.get(id)!)).toBe(true);
    learner.audit(id, false, 10);
    expect(learner.get(id)).toMatchObject({ held: 3, tested: 4, lastSeen: 10 });
    expect(learner.acts(learner.get(id)!)).toBe(false);
    expect(learner.plan(patch7, ["/api/teams/1"]).targets).toEqual([]);
    // A held audit keeps a right rule acting; an unknown id changes nothing.
    for (let i = 0; i < 3; i++) learner.observe(patch7, "/api/users/7/profile", true, i);
    learner.audit("PATCH /api/users/:id -> /api/users/$1/profile", true, 11);
    expect(learner.get("PATCH /api/users/:id -> /api/users/$1/profile")).toMatchObject({
      held: 4,
      tested: 4,
    });
    learner.audit("no such rule", false, 12);
    expect(learner.rules().some((r) => r.write === "no such rule")).toBe(false);
  });

  it("operators decide: pinned and hand-written rules act at once, rejected ones never", () => {
    const learner = new Learner();
    learner.decide("POST /api/teams/:id/members", "/api/teams/$1/members", "manual");
    const post = { method: "POST", target: "/api/teams/3/members" };
    expect(learner.plan(post, ["/api/teams/3/members", "/api/teams/4/members"]).targets).toEqual([
      "/api/teams/3/members",
    ]);
    for (let i = 0; i < 5; i++) learner.observe(patch7, "/api/users?team=3", true, i);
    expect(learner.plan(patch7, ["/api/users?team=3"]).targets).toEqual(["/api/users?team=3"]);
    learner.decide("PATCH /api/users/:id", "/api/users?team=*", "rejected");
    expect(learner.plan(patch7, ["/api/users?team=3"]).targets).toEqual([]);
  });

  it("samples one read per pattern, least tested first, skipping decided and acting rules", () => {
    const learner = new Learner({ minTests: 1 });
    learner.observe(patch7, "/api/users?team=1", true, 1); // acts now: not sampled again
    learner.observe(patch7, "/api/teams/1", false, 1); // tested once
    const cached = [
      "/api/teams/1",
      "/api/teams/2",
      "/api/users?team=3",
      "/api/users/7/profile",
      "/api/users/9/profile",
    ];
    expect(learner.sample(patch7, cached, 10)).toEqual([
      "/api/users/7/profile",
      "/api/users/9/profile",
      "/api/teams/1",
    ]);
    expect(learner.sample(patch7, cached, 1)).toHaveLength(1);
  });

  it("merging shared rules keeps the larger counts and an operator's decision", () => {
    const a = new Learner();
    const b = new Learner();
    for (let i = 0; i < 3; i++) a.observe(patch7, "/api/users/7/profile", true, i);
    b.observe(patch7, "/api/users/7/profile", true, 10);
    b.decide("PATCH /api/users/:id", "/api/users/$1/profile", "pinned");
    a.merge(b.toJSON());
    expect(a.get("PATCH /api/users/:id -> /api/users/$1/profile")).toMatchObject({
      held: 3,
      tested: 3,
      lastSeen: 10,
      state: "pinned",
    });
    a.merge(JSON.parse(JSON.stringify(a.toJSON())));
    expect(a.get("PATCH /api/users/:id -> /api/users/$1/profile")!.tested).toBe(3);
  });

  it("checks hand-written rules and says what is wrong", () => {
    expect(checkRule("PATCH /api/users/:id", "/api/users/$1/profile")).toBeUndefined();
    expect(checkRule("patch /api/users/:id", "/x")).toMatch(/^write: expected "METHOD/);
    expect(checkRule("PATCH /api/users/:id", "/api/users/$2")).toMatch(/\$2 names no value/);
    expect(checkRule("PATCH /api/users/:name", "/x")).toMatch(/route template/);
  });

  it("a plan is exactly the cached reads that some acting rule matches (property)", () => {
    const id = fc.integer({ min: 1, max: 5 }).map(String);
    const read = fc.oneof(
      id.map((i) => `/api/users/${i}/profile`),
      id.map((i) => `/api/users?team=${i}`),
      id.map((i) => `/api/teams/${i}/members`),
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(id, read, fc.boolean()), { maxLength: 40 }),
        id,
        fc.array(read, { maxLength: 15 }),
        (observations, writeId, cached) => {
          const learner = new Learner({ minTests: 2, threshold: 0.8 });
          for (const [w, r, changed] of observations) {
            learner.observe({ method: "PATCH", target: `/api/users/${w}` }, r, changed, 0);
          }
          const write = { method: "PATCH", target: `/api/users/${writeId}` };
          const acting = learner.rules().filter((r) => learner.acts(r));
          const expected = cached.filter((t) =>
            acting.some((r) => matchesRead(r.read, t, [writeId])),
          );
          expect(learner.plan(write, cached).targets).toEqual(expected);
          for (const r of acting) expect(r.held / r.tested).toBeGreaterThanOrEqual(0.8);
        },
      ),
    );
  });

  it("hands out what it counted and decided once, and takes a shared store's rules with its own changes on top", () => {
    const a = new Learner();
    a.observe(patch7, "/api/users/7/profile", true, 1);
    a.decide("PATCH /api/users/:id", "/api/teams/:id", "rejected");
    const changes = a.takeChanges();
    expect(changes.counts.map((c) => [c.read, c.held, c.tested])).toEqual([
      ["/api/users/$1/profile", 1, 1],
      ["/api/users/:id/profile", 1, 1],
    ]);
    expect(changes.decisions).toEqual([
      { write: "PATCH /api/users/:id", read: "/api/teams/:id", state: "rejected" },
    ]);
    expect(a.takeChanges()).toEqual({ counts: [], decisions: [] });

    // Not taken after all (the store was down): given back, and added to later changes.
    a.putBack(changes);
    a.observe(patch7, "/api/users/7/profile", false, 2);
    const again = a.takeChanges();
    expect(again.counts.find((c) => c.read === "/api/users/$1/profile")).toMatchObject({
      held: 1,
      tested: 2,
      lastSeen: 2,
    });
    expect(again.decisions).toHaveLength(1);

    // The store's rules are the truth; changes not yet taken go on top of them.
    a.observe(patch7, "/api/users/7/profile", true, 3);
    a.adopt([
      {
        write: "PATCH /api/users/:id",
        read: "/api/users/$1/profile",
        held: 5,
        tested: 6,
        lastSeen: 2,
        state: "learned",
      },
      {
        write: "POST /api/users",
        read: "/api/users",
        held: 1,
        tested: 1,
        lastSeen: 1,
        state: "pinned",
      },
    ]);
    expect(a.get("PATCH /api/users/:id -> /api/users/$1/profile")).toMatchObject({
      held: 6,
      tested: 7,
      lastSeen: 3,
    });
    expect(a.get("POST /api/users -> /api/users")).toMatchObject({ state: "pinned" });
    expect(a.get("PATCH /api/users/:id -> /api/teams/:id")).toBeUndefined();
    a.remove("POST /api/users -> /api/users");
    expect(a.takeChanges().decisions).toEqual([
      { write: "POST /api/users", read: "/api/users", state: "forget" },
    ]);
    expect(a.everything().counts.map((c) => c.tested)).toEqual([7, 1]);
  });

  it("a store of rules fed by two learners counts each one's evidence once, and their decisions in order", async () => {
    const store = new Map<string, Rule>();
    const exchange = async (changes: Parameters<typeof addChanges>[1], holds: boolean) => {
      if (holds && store.size === 0) return null;
      addChanges(store, changes);
      return [...store.values()];
    };
    const a = new Learner();
    const b = new Learner();
    a.observe(patch7, "/api/users/7/profile", true, 1);
    await shareChanges(a, exchange);
    b.observe({ method: "PATCH", target: "/api/users/8" }, "/api/users/8/profile", true, 2);
    b.observe({ method: "PATCH", target: "/api/users/9" }, "/api/users/9/profile", true, 3);
    await shareChanges(b, exchange);
    await shareChanges(a, exchange);
    const id = "PATCH /api/users/:id -> /api/users/$1/profile";
    for (const l of [a, b]) {
      expect(l.get(id)).toMatchObject({ held: 3, tested: 3, lastSeen: 3 });
      expect(l.acts(l.get(id)!)).toBe(true);
    }
    // The latest decision wins; a forget removes the rule from the store.
    a.decide("PATCH /api/users/:id", "/api/users/$1/profile", "rejected");
    b.decide("PATCH /api/users/:id", "/api/users/$1/profile", "pinned");
    await shareChanges(a, exchange);
    await shareChanges(b, exchange);
    await shareChanges(a, exchange);
    expect(a.get(id)?.state).toBe("pinned");
    b.remove(id);
    await shareChanges(b, exchange);
    await shareChanges(a, exchange);
    expect(store.has(id)).toBe(false);
    expect(a.get(id)).toBeUndefined();

    // A store that lost its rules is seeded with all a learner has; a store that cannot
    // be reached leaves the changes with the learner, added on a later step.
    store.clear();
    await shareChanges(a, exchange);
    expect(store.size).toBe(a.rules().length);
    a.observe(patch7, "/api/users/7/profile", false, 4);
    const down = () => Promise.reject(new Error("unreachable"));
    await expect(shareChanges(a, down)).rejects.toThrow("unreachable");
    const before = store.get("PATCH /api/users/:id -> /api/users/:id/profile")!.tested;
    await shareChanges(a, exchange);
    expect(store.get("PATCH /api/users/:id -> /api/users/:id/profile")!.tested).toBe(before + 1);
  });

  it("learns which pages of a sorted list a row's move shifts: from its place before the write to its place after", () => {
    // Pages of users sorted by name, two a page.
    const pages = new Map<string, Record<string, unknown>[]>([
      ["/api/users?offset=0&sort=name", [{ name: "Adams" }, { name: "Baker" }]],
      ["/api/users?offset=2&sort=name", [{ name: "Clark" }, { name: "Davis" }]],
      ["/api/users?offset=4&sort=name", [{ name: "Evans" }, { name: "Evans" }]],
      ["/api/users?offset=6&sort=name", [{ name: "Green" }, { name: "Hall" }]],
    ]);
    const copies = {
      has: (target: string) => pages.has(target),
      holds: () => false,
      rows: (target: string) => pages.get(target),
    };
    const learner = new Learner({ minTests: 1 });
    const rule = "/api/users?offset=*&sort=* shifted by $name";
    for (const method of ["POST", "PATCH", "DELETE"]) {
      learner.decide(`${method} /api/users${method === "POST" ? "" : "/:id"}`, rule, "manual");
    }
    const offsets = (write: Write) =>
      learner.plan(write, pages.keys(), copies).targets.map((t) => t.match(/offset=(\d)/)![1]);
    // A new row shifts every page from its place on (a page of equal values is taken as
    // running up); a removed one every page from its old place on.
    const post = (name: string) => ({
      method: "POST",
      target: "/api/users",
      fields: writeFields({ name }),
    });
    expect(offsets(post("Cook"))).toEqual(["2", "4", "6"]);
    expect(offsets(post("Evans"))).toEqual(["4", "6"]);
    expect(offsets(post("Zhu"))).toEqual([]);
    const gone = {
      method: "DELETE",
      target: "/api/users/9",
      fields: writeFields(undefined, { name: "Baker" }),
    };
    expect(offsets(gone)).toEqual(["0", "2", "4", "6"]);
    // A move shifts the pages between its two places, either way; a row whose name stayed
    // moved nothing (the page that shows it is a `containing` rule's).
    const move = (from: string, to: string) => ({
      method: "PATCH",
      target: "/api/users/9",
      fields: writeFields({ name: to }, { name: from }),
    });
    expect(offsets(move("Baker", "Fox"))).toEqual(["0", "2", "4"]);
    expect(offsets(move("Fox", "Baker"))).toEqual(["0", "2", "4"]);
    expect(offsets(move("Baker", "Baker"))).toEqual([]);
    // Without the value before, a PATCH's move is unknown: nothing is said.
    expect(
      offsets({ method: "PATCH", target: "/api/users/9", fields: writeFields({ name: "Fox" }) }),
    ).toEqual([]);
    // Pages not in that order, or without the field, are never shifted by it.
    pages.set("/api/users?offset=8&sort=name", [{ name: "Young" }, { name: "Ives" }]);
    pages.set("/api/users?offset=9&sort=name", [{ id: 1 }]);
    expect(offsets(post("Cook"))).toEqual(["2", "4", "6"]);
    // A page of equal values is in an order only when its URL asks for it, and runs the way
    // the URL says; a field every row shares (a version) orders nothing.
    const flat = new Learner({ minTests: 1 });
    flat.decide("POST /api/users", "/api/users?offset=*&sort=* shifted by $name", "manual");
    flat.decide("POST /api/users", "/api/users?offset=*&sort=* shifted by $v", "manual");
    const evans = [
      { name: "Evans", v: 1 },
      { name: "Evans", v: 1 },
    ];
    const flatPages = new Map([
      ["/api/users?offset=0&sort=name", evans],
      ["/api/users?offset=0&sort=-name", evans],
    ]);
    const flatCopies = { ...copies, rows: (t: string) => flatPages.get(t), has: () => true };
    const added = (name: string, v: number) =>
      flat.plan(
        { method: "POST", target: "/api/users", fields: writeFields({ name, v }) },
        flatPages.keys(),
        flatCopies,
      ).targets;
    expect(added("Adams", 1)).toEqual(["/api/users?offset=0&sort=name"]);
    expect(added("Zhu", 1)).toEqual(["/api/users?offset=0&sort=-name"]);
    // A page with no copy to look in (a load on its way) may bring anything back: it is
    // taken as shifted, so that the load is not stored.
    const loading = "/api/users?offset=7&sort=name";
    expect(learner.plan(post("Zhu"), [loading], copies).targets).toEqual([loading]);

    // Learning it: observations of the pages a POST shifts count for the rule.
    const learning = new Learner({ minTests: 2 });
    for (const name of ["Cook", "Fox"]) {
      const w = post(name);
      for (const page of pages.keys()) {
        const moved = offsets(w).includes(page.match(/offset=(\d)/)![1]!);
        learning.observe(w, page, moved, 1, copies);
      }
    }
    expect(learning.get(`POST /api/users -> ${rule}`)).toMatchObject({ held: 4, tested: 4 });
    expect(checkRule("PATCH /api/users/:id", rule)).toBeUndefined();
    expect(checkRule("PATCH /api/users/:id", "/api/users?sort=* shifted by $a.b")).toMatch(
      /needs a field name/,
    );
  });

  it("learns which pages of a list change: those whose cached copy holds the written id", () => {
    // Pages of a sorted list: each holds some users; a PATCH changes the pages that show
    // the user, whatever their offset, and no other.
    const pages = new Map([
      ["/api/users?offset=0&sort=name", ["1", "2"]],
      ["/api/users?offset=2&sort=name", ["3", "4"]],
      ["/api/users?offset=4&sort=name", ["5", "6"]],
    ]);
    const copies = holding(pages);
    const learner = new Learner({ threshold: 0.9, minTests: 3 });
    for (const id of ["1", "3", "5", "2"]) {
      const w = { method: "PATCH", target: `/api/users/${id}` };
      for (const page of pages.keys())
        learner.observe(w, page, copies.holds(page, id), Number(id), copies);
    }
    const rule = learner.get("PATCH /api/users/:id -> /api/users?offset=*&sort=* containing $1")!;
    expect(rule).toMatchObject({ held: 4, tested: 4 });
    expect(learner.acts(rule)).toBe(true);
    expect(learner.acts(learner.get("PATCH /api/users/:id -> /api/users?offset=*&sort=*")!)).toBe(
      false,
    );
    const write = { method: "PATCH", target: "/api/users/4" };
    expect(learner.plan(write, pages.keys(), copies).targets).toEqual([
      "/api/users?offset=2&sort=name",
    ]);
    // Sampling tells pages that hold the value from those that do not.
    expect(
      learner.sample({ method: "PATCH", target: "/api/users/9" }, pages.keys(), 5, () => 0, copies),
    ).toHaveLength(1);
    // Also where a field binds the page's values: the list the order was on (`$before.status`)
    // has pages that hold it and pages that do not, and each kind is asked.
    const lists = new Map([
      ["/api/orders?offset=0&status=paid", ["8", "9"]],
      ["/api/orders?offset=2&status=paid", ["10", "11"]],
    ]);
    const listed = holding(lists);
    const paid = {
      method: "PATCH",
      target: "/api/orders/9",
      fields: writeFields({}, { status: "paid" }),
    };
    expect(learner.sample(paid, lists.keys(), 5, () => 1, listed).sort()).toEqual([
      ...lists.keys(),
    ]);
    expect(checkRule("PATCH /api/users/:id", "/api/users?sort=* containing $1")).toBeUndefined();
    expect(checkRule("PATCH /api/users/:id", "/api/users?sort=* containing $2")).toMatch(
      /names no value/,
    );
  });
});
