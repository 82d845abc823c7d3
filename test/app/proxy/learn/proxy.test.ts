import { describe, expect, it } from "vitest";
import { cachedCopies } from "../../../../src/app/proxy/learn/bodies.ts";
import { type Ctx, URL_TAG } from "../../../../src/app/proxy/types.ts";
import { cacheStatusOf, type OriginHandler, proxied, raw } from "../harness.ts";
import { usersAndTeams } from "./users-teams-origin.ts";

const READS = [
  ...[1, 2, 3, 4, 5, 6].flatMap((id) => [`/api/users/${id}`, `/api/users/${id}/profile`]),
  "/api/users?team=1",
  "/api/users?team=2",
  "/api/users",
  "/api/teams/1",
  "/api/teams/2",
  "/api/teams/1/members",
  "/api/teams/2/members",
];

async function setup(learn: object | false) {
  const api = usersAndTeams();
  const h = await proxied(api.handler, learn === false ? {} : { learn: learn });
  const patch = async (id: number, body: object, headers: Record<string, string> = {}) => {
    const r = await raw(`${h.proxy.url}/api/users/${id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
    expect(r.status).toBe(200);
    // Learning runs after the response, through the cache's background hook.
    await h.proxy.node.cache.drain();
    h.proxy.clock.advance(1000);
  };
  const warm = async () => {
    for (const path of READS) expect((await h.get(path)).status).toBe(200);
  };
  return { ...h, api, patch, warm };
}

/** What the origin's handler answers a request, kept to be sent later. */
async function answered(handler: OriginHandler, req: Parameters<OriginHandler>[0]) {
  const reply = {
    status: 500,
    headers: {} as Record<string, string>,
    body: undefined as string | undefined,
  };
  const capture = {
    writeHead: (status: number, headers: Record<string, string>) => {
      Object.assign(reply, { status, headers });
      return capture;
    },
    end: (body?: string) => {
      reply.body = body;
    },
  };
  await handler(req, capture as never);
  return reply;
}

describe("learned invalidation (proxy mode)", () => {
  it("learns which reads a PATCH changes from the origin's answers, then invalidates them before answering", async () => {
    const { proxy, patch, warm, get } = await setup({ minTests: 2, threshold: 0.9, perWrite: 30 });
    const learn = proxy.node.proxy.learn!;
    // Learning: each write, then every read cached again so each is tested.
    for (const id of [1, 2, 3, 4]) {
      await warm();
      await patch(id, { name: `renamed ${id}` });
    }
    const rules = new Map(learn.learner.rules().map((r) => [`${r.write} -> ${r.read}`, r]));
    const profile = rules.get("PATCH /api/users/:id -> /api/users/$1/profile")!;
    expect(profile).toMatchObject({ state: "learned" });
    expect(profile.held).toBe(profile.tested);
    expect(learn.learner.acts(profile)).toBe(true);
    expect(learn.learner.acts(rules.get("PATCH /api/users/:id -> /api/users")!)).toBe(true);
    // Other users' profiles and the team pages did not change: those rules never act.
    const others = rules.get("PATCH /api/users/:id -> /api/users/:id/profile")!;
    expect(others.tested).toBeGreaterThan(others.held);
    expect(learn.learner.acts(others)).toBe(false);
    expect(rules.get("PATCH /api/users/:id -> /api/teams/:id")!.held).toBe(0);
    expect(learn.stats.learningRequests).toBeGreaterThan(0);

    // Acting: user 5's profile and the list of all users are fresh right after the write,
    // while a team page stays a hit.
    await warm();
    expect(cacheStatusOf(await get("/api/users/5/profile"))).toMatch(/hit/);
    const before = learn.stats.learnedInvalidations;
    const requestsBefore = learn.stats.learningRequests;
    const r = await raw(`${proxy.url}/api/users/5`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "five" }),
    });
    expect(r.status).toBe(200);
    const after = await get("/api/users/5/profile");
    expect(JSON.parse(after.text)).toMatchObject({ name: "five" });
    expect(cacheStatusOf(after)).not.toMatch(/hit/);
    expect(
      JSON.parse((await get("/api/users")).text).map((u: { name: string }) => u.name),
    ).toContain("five");
    expect(cacheStatusOf(await get("/api/teams/1"))).toMatch(/hit/);
    expect(cacheStatusOf(await get("/api/users/6/profile"))).toMatch(/hit/);
    expect(learn.stats.learnedInvalidations).toBeGreaterThan(before);
    await proxy.node.cache.drain();
    // Covered reads are not sampled again: this write's learning cost is what is left.
    expect(learn.stats.learningRequests - requestsBefore).toBeLessThan(READS.length - 3);
  });

  it("binds rules to fields of the write's answer and of the copy cached before it", async () => {
    const { proxy, patch, warm, get } = await setup({ minTests: 2, perWrite: 30 });
    const learn = proxy.node.proxy.learn!;
    const warmAll = async () => {
      await warm();
      for (const path of ["/api/teams/3", "/api/teams/3/members", "/api/users?team=3"]) {
        expect((await get(path)).status).toBe(200);
      }
    };
    // Users 3, 4 and 5 move to team 3: its pages and their old team's change, the third
    // team's do not.
    for (const id of [3, 4, 5]) {
      await warmAll();
      await patch(id, { team: 3 });
    }
    const acting = learn.learner
      .rules()
      .filter((r) => learn.learner.acts(r))
      .map((r) => r.read);
    expect(acting).toEqual(
      expect.arrayContaining([
        "/api/teams/$team/members",
        "/api/teams/$before.team/members",
        "/api/users?team=$team",
        "/api/users?team=$before.team",
      ]),
    );
    expect(acting).not.toContain("/api/teams/:id/members");
    expect(acting.filter((r) => /^\/api\/teams\/[^/]+$/.test(r))).toEqual([]);

    // User 6 moves from team 1 to team 2: both member lists are fresh right after the
    // answer, and team 3's list and a team page are still hits.
    await warmAll();
    const r = await raw(`${proxy.url}/api/users/6`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ team: 2 }),
    });
    expect(JSON.parse(r.text)).toMatchObject({ id: 6, team: 2 });
    expect(JSON.parse((await get("/api/teams/1/members")).text)).not.toContain("user 6");
    expect(JSON.parse((await get("/api/teams/2/members")).text)).toContain("user 6");
    const team2 = JSON.parse((await get("/api/users?team=2")).text) as { id: number }[];
    expect(team2.map((u) => u.id)).toContain(6);
    expect(cacheStatusOf(await get("/api/teams/3/members"))).toMatch(/hit/);
    expect(cacheStatusOf(await get("/api/teams/1"))).toMatch(/hit/);
  });

  it("revalidates instead, when configured: the matched entry is asked again before the answer, and the next read is a fresh hit", async () => {
    const rules = [
      { write: "PATCH /api/users/:id", read: "/api/users/$1/profile" },
      { write: "PATCH /api/users/:id", read: "/api/teams/:id/members" },
    ];
    const { proxy, warm, get, origin } = await setup({
      action: "revalidate",
      revalidatePerWrite: 2,
      revalidatePerSecond: 3,
      perWrite: 0,
      rules,
    });
    const learn = proxy.node.proxy.learn!;
    await warm();
    // User 5's team's member list is the most read of what the rules match.
    for (let i = 0; i < 3; i++) await get("/api/teams/2/members");
    const seen = origin.requests.length;
    const r = await raw(`${proxy.url}/api/users/5`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "five" }),
    });
    expect(r.status).toBe(200);
    // Fetched again before the answer: the write's own URL first, then what the rules
    // match, the most read first, up to revalidatePerWrite.
    const asked = origin.requests.slice(seen).filter((q) => q.method === "GET");
    expect(asked.map((q) => q.url)).toEqual(["/api/users/5", "/api/teams/2/members"]);
    const own = await get("/api/users/5");
    expect(cacheStatusOf(own)).toMatch(/hit/);
    expect(JSON.parse(own.text)).toMatchObject({ name: "five" });
    const members = await get("/api/teams/2/members");
    expect(cacheStatusOf(members)).toMatch(/hit/);
    expect(JSON.parse(members.text)).toContain("five");
    // Past revalidatePerWrite the matched entries are removed, as with invalidate.
    expect(cacheStatusOf(await get("/api/users/5/profile"))).not.toMatch(/hit/);
    expect(cacheStatusOf(await get("/api/teams/1/members"))).not.toMatch(/hit/);
    expect(learn.stats).toMatchObject({ revalidations: 2, learnedInvalidations: 3 });

    // Within the same second, revalidatePerSecond (3) leaves one refetch: the own URL;
    // the profile is only removed.
    await raw(`${proxy.url}/api/users/5`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "cinq" }),
    });
    expect(learn.stats.revalidations).toBe(3);
    expect(cacheStatusOf(await get("/api/users/5"))).toMatch(/hit/);
    const profile = await get("/api/users/5/profile");
    expect(cacheStatusOf(profile)).not.toMatch(/hit/);
    expect(JSON.parse(profile.text)).toMatchObject({ name: "cinq" });
    // The next second, the budget is back.
    proxy.clock.advance(1000);
    await raw(`${proxy.url}/api/users/5`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "cinque" }),
    });
    expect(learn.stats.revalidations).toBe(5);
  });

  it.each([
    ["revalidate", true, "/api/users/$1/profile"],
    ["revalidate", false, "/api/users/$1/profile"],
    ["invalidate", false, "/api/users/$1/profile"],
    // With no copy yet, there is nothing to look in: a condition cannot rule the load out.
    ["invalidate", false, "/api/users/:id/profile containing $1"],
  ] as const)(
    "with %s (profile cached before: %s, rule -> %s), a load begun before the write never stores what it brought back",
    async (action, cachedBefore, read) => {
      const rules = [{ write: "PATCH /api/users/:id", read }];
      const { proxy, warm, get, origin, api } = await setup({ action, perWrite: 0, rules });
      if (cachedBefore) await warm();
      // A read of the profile reaches the origin before the write and is answered after it,
      // with what it read before. Not cached before, it is only on its way when the write's
      // rules run: they must reach it all the same.
      let release!: () => void;
      const gate = new Promise<void>((done) => {
        release = done;
      });
      let hold = true;
      origin.handle(async (req, res) => {
        if (!hold || req.url !== "/api/users/5/profile") return api.handler(req, res);
        hold = false;
        const reply = await answered(api.handler, req);
        await gate;
        res.writeHead(reply.status, reply.headers).end(reply.body);
      });
      const early = get(
        "/api/users/5/profile",
        cachedBefore ? { "cache-control": "no-cache" } : {},
      );
      while (hold) await new Promise((r) => setTimeout(r, 5));
      const r = await raw(`${proxy.url}/api/users/5`, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "five" }),
      });
      expect(r.status).toBe(200);
      release();
      expect(JSON.parse((await early).text)).toMatchObject({ name: "user 5" });
      await proxy.node.cache.drain();
      const after = await get("/api/users/5/profile");
      expect(JSON.parse(after.text)).toMatchObject({ name: "five" });
      if (action === "revalidate") expect(cacheStatusOf(after)).toMatch(/hit/);
    },
  );

  it("takes as evidence only copies stored before the write was sent: one loaded since may show it already", async () => {
    const { proxy, warm, get, origin, api } = await setup({ perWrite: 30 });
    await warm();
    const learn = proxy.node.proxy.learn!;
    // The write is done at the origin; before its answer is back, user 5's profile is
    // reloaded (its copy was purged) and stored as the write left it.
    origin.handle(async (req, res) => {
      if (req.method !== "PATCH") return api.handler(req, res);
      const reply = await answered(api.handler, req);
      proxy.clock.advance(1000);
      await proxy.node.cache.invalidate({ tags: [`${URL_TAG}/api/users/5/profile`] });
      expect(JSON.parse((await get("/api/users/5/profile")).text)).toMatchObject({ name: "five" });
      res.writeHead(reply.status, reply.headers).end(reply.body);
    });
    const r = await raw(`${proxy.url}/api/users/5`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "five" }),
    });
    expect(r.status).toBe(200);
    await proxy.node.cache.drain();
    // Other profiles were asked again; user 5's copy, unchanged since it was stored after
    // the write, is no evidence that the write left it alone.
    expect(
      learn.learner.get("PATCH /api/users/:id -> /api/users/:id/profile")?.tested,
    ).toBeGreaterThan(0);
    expect(learn.learner.get("PATCH /api/users/:id -> /api/users/$1/profile")).toBeUndefined();
  });

  it("looks in cached JSON for a written id (as a string, or a number under an id's name) and for a list's rows", async () => {
    const { proxy, get } = await proxied(
      (req, res) => {
        const bodies: Record<string, unknown> = {
          "/a": [{ id: 7, team: 3 }],
          "/b": [{ id: 8, team: 7 }],
          "/c": { rows: [{ userId: 70, ownerId: 7 }] },
          "/d": [{ id: "o-7" }],
          "/e": { total: 2, data: [{ id: 1 }, { id: 2 }] },
        };
        res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=60" });
        res.end(JSON.stringify(bodies[req.url!]));
      },
      { learn: true },
    );
    for (const path of ["/a", "/b", "/c", "/d", "/e"]) await get(path);
    const { holds, rows } = cachedCopies(proxy.node.cache, { host: proxy.hostname } as Ctx);
    expect(["/a", "/b", "/c", "/d"].filter((t) => holds(t, "7"))).toEqual(["/a", "/c"]);
    expect(["/a", "/b", "/c", "/d"].filter((t) => holds(t, "o-7"))).toEqual(["/d"]);
    expect(holds("/nothing-cached", "7")).toBe(false);
    // A list's rows: the body's array of objects, or its first property that is one.
    expect(rows("/a")).toEqual([{ id: 7, team: 3 }]);
    expect(rows("/c")).toEqual([{ userId: 70, ownerId: 7 }]);
    expect(rows("/e")).toEqual([{ id: 1 }, { id: 2 }]);
    expect(rows("/nothing-cached")).toBeUndefined();
  });

  it("audits acting rules: a rule learned from coincidences is checked after it acts, loses confidence and stops", async () => {
    const wrong = "PATCH /api/users/:id -> /api/teams/:id";
    const initial = [
      {
        write: "PATCH /api/users/:id",
        read: "/api/teams/:id",
        held: 3,
        tested: 3,
        lastSeen: 1,
        state: "learned" as const,
      },
    ];
    const { proxy, patch, warm, get } = await setup({ initial, audit: 1, minTests: 3 });
    const learn = proxy.node.proxy.learn!;
    expect(learn.learner.acts(learn.learner.get(wrong)!)).toBe(true);
    await warm();
    await patch(1, { name: "one" });
    // The team pages were removed before the answer (nothing stale can be served), then
    // one was asked again and found unchanged: the rule failed its audit.
    expect(learn.stats).toMatchObject({ audits: 1, auditsFailed: 1 });
    expect(learn.learner.get(wrong)).toMatchObject({ held: 3, tested: 4 });
    expect(learn.learner.acts(learn.learner.get(wrong)!)).toBe(false);
    // The same counts in the Prometheus metrics.
    const metrics = (await raw(`${proxy.url}/_edgecache/metrics`)).text;
    expect(metrics).toMatch(/^edgecache_learning_audits_failed_total 1$/m);
    expect(metrics).toMatch(/^edgecache_learning_audits_total 1$/m);
    const requests = Number(/^edgecache_learning_requests_total (\d+)$/m.exec(metrics)?.[1]);
    expect(requests).toBe(learn.stats.learningRequests);
    expect(requests).toBeGreaterThan(0);
    expect(metrics).toMatch(/^edgecache_learned_invalidations_total [1-9]\d*$/m);
    await warm();
    await patch(3, { name: "three" });
    expect(cacheStatusOf(await get("/api/teams/1"))).toMatch(/hit/);
    expect(cacheStatusOf(await get("/api/teams/2"))).toMatch(/hit/);
  });

  it("without learning, the same write leaves the profile stale (the problem it solves)", async () => {
    const { patch, warm, get } = await setup(false);
    await warm();
    await patch(5, { name: "five" });
    const after = await get("/api/users/5/profile");
    expect(cacheStatusOf(after)).toMatch(/hit/);
    expect(JSON.parse(after.text)).toMatchObject({ name: "user 5" });
  });

  it("learning requests carry no client credentials, reach only the origin, and keep to the per-write cap", async () => {
    const { origin, patch, warm } = await setup({ perWrite: 3 });
    await warm();
    const seen = origin.requests.length;
    await patch(2, { name: "two" }, { authorization: "Bearer secret", cookie: "session=abc" });
    const learning = origin.requests.slice(seen).filter((q) => q.headers["edgecache-learning"]);
    expect(learning).toHaveLength(3);
    for (const q of learning) {
      expect(q.method).toBe("GET");
      expect(q.headers.authorization).toBeUndefined();
      expect(q.headers.cookie).toBeUndefined();
      // Conditional: the stored validators go along, so an unchanged read costs a 304.
      expect(q.headers["if-none-match"]).toMatch(/^"/);
    }
  });

  it("keeps to the per-second budget across writes", async () => {
    const { origin, proxy, warm } = await setup({ perWrite: 10, perSecond: 4 });
    await warm();
    const seen = origin.requests.length;
    for (const id of [1, 2, 3]) {
      await raw(`${proxy.url}/api/users/${id}`, { method: "PATCH", body: "{}" });
      await proxy.node.cache.drain();
    }
    const learning = origin.requests.slice(seen).filter((q) => q.headers["edgecache-learning"]);
    expect(learning).toHaveLength(4);
  });

  it("does not sample entries stored per Authorization (Vary)", async () => {
    const api = usersAndTeams();
    const { origin, proxy, get } = await proxied(
      (req, res) => {
        if (req.url === "/private/1") {
          res.writeHead(200, { "cache-control": "public, max-age=300", vary: "authorization" });
          res.end(String(req.headers.authorization));
          return;
        }
        return api.handler(req, res);
      },
      { learn: { perWrite: 50 } },
    );
    await get("/private/1", { authorization: "Bearer a" });
    await get("/api/teams/1");
    const seen = origin.requests.length;
    await raw(`${proxy.url}/api/users/1`, { method: "PATCH", body: "{}" });
    await proxy.node.cache.drain();
    const learning = origin.requests.slice(seen).filter((q) => q.headers["edgecache-learning"]);
    expect(learning.map((q) => q.url)).toEqual(["/api/teams/1"]);
  });
});
