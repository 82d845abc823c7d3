import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { describeRule } from "../../../src/app/proxy/learn/admin-report.ts";
import { type Origin, startOrigin } from "../../app/proxy/harness.ts";
import { usersAndTeams } from "../../app/proxy/learn/users-teams-origin.ts";
import { cli } from "../../cli/run-cli.ts";
import { until } from "../../helpers/cluster.ts";
import { bundle, COMPATIBILITY_DATE } from "../../helpers/workerd.ts";

// Learned rules in the proxy Worker, inside workerd: two Workers (two isolates, each with
// its own memory and learner) in front of one origin, sharing KV, the change log and the
// rules object (`edgecache:rules` in CHANGE_LOG's namespace, see learn-entry.ts).

const TOKEN = "rules-test-token";
let origin: Origin;
let mf: Miniflare;
let url: string;

beforeAll(async () => {
  origin = await startOrigin(usersAndTeams().handler);
  const script = await bundle(new URL("./learn-entry.ts", import.meta.url));
  mf = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    workers: ["a", "b"].map((name) => ({
      name,
      modules: true,
      script,
      compatibilityDate: COMPATIBILITY_DATE,
      kvNamespaces: { CACHE: "learn-kv" },
      durableObjects: {
        CHANGE_LOG: { className: "ChangeLogObject", scriptName: "a", useSQLite: true },
      },
      bindings: { ORIGIN: origin.url, EDGECACHE_ADMIN_TOKEN: TOKEN },
    })),
  });
  url = (await mf.ready).href.replace(/\/$/, "");
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
  await origin?.close();
});

async function send(isolate: string, path: string, init: RequestInit = {}) {
  const worker = (await mf.getWorker(isolate)) as unknown as { fetch: typeof fetch };
  const res = await worker.fetch(`http://127.0.0.1${path}`, init);
  return {
    status: res.headers.get("cache-status") ?? "",
    body: await res.text(),
    code: res.status,
  };
}

const patch = (isolate: string, id: number, name: string) =>
  send(isolate, `/api/users/${id}`, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });

type RuleView = ReturnType<typeof describeRule>;

async function rules(isolate: string): Promise<RuleView[]> {
  const r = await send(isolate, "/_edgecache/rules", {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  expect(r.code).toBe(200);
  return (JSON.parse(r.body) as { rules: RuleView[] }).rules;
}
const rule = async (isolate: string, id: string) => (await rules(isolate)).find((r) => r.id === id);

async function stats(isolate: string) {
  const r = await send(isolate, "/_edgecache/stats", {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  return JSON.parse(r.body) as {
    learn: { learnedInvalidations: number; learningRequests: number };
  };
}

const PROFILE = "PATCH /api/users/:id -> /api/users/$1/profile";
const ANY_PROFILE = "PATCH /api/users/:id -> /api/users/:id/profile";
const TEAM = "PATCH /api/users/:id -> /api/teams/:id";

describe("learned rules shared by the proxy Worker's isolates", () => {
  it("adds up evidence counted in two isolates: neither alone has enough for the rule to act, together they do", async () => {
    // Each isolate caches one user's profile and sees a write of that user: one test each.
    // One after the other: a's learning, after its answer, must not find b's write.
    await send("a", "/api/users/1/profile");
    await send("b", "/api/users/2/profile");
    await patch("a", 1, "one");
    await until(async () => (await stats("a")).learn.learningRequests >= 1);
    await patch("b", 2, "two");
    // minTests is 2: the rule acts only with both isolates' tests, in each of them.
    for (const isolate of ["a", "b"]) {
      await until(async () => ((await rule(isolate, PROFILE))?.tested ?? 0) >= 2, 10_000);
      const shared = await rule(isolate, PROFILE);
      expect(shared).toMatchObject({ acts: true, held: shared!.tested });
    }
  });

  it("a write through one isolate removes a read cached in the other by a learned rule", async () => {
    // Cached in both: the write's isolate finds the read among those it holds.
    for (const isolate of ["b", "a", "b"]) await send(isolate, "/api/users/4/profile");
    expect((await send("b", "/api/users/4/profile")).status).toMatch(/^edgecache; hit/);
    const before = (await stats("a")).learn.learnedInvalidations;
    await patch("a", 4, "four");
    expect((await stats("a")).learn.learnedInvalidations).toBe(before + 1);
    const after = await send("b", "/api/users/4/profile");
    expect(after.status).not.toMatch(/^edgecache; hit/);
    expect(JSON.parse(after.body)).toMatchObject({ name: "four" });
    // The Worker's /metrics carries the learning counters, as /stats does.
    const metrics = await send("a", "/_edgecache/metrics", {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(metrics.body).toContain(`edgecache_learned_invalidations_total ${before + 1}`);
    expect(metrics.body).toMatch(/^edgecache_learning_requests_total [1-9]/m);
  });

  it("a rule that names its read outright removes it through the log though only the other isolate holds it", async () => {
    // /api/users/$1/profile is bound by the write alone: a need not hold the read to name it.
    await send("b", "/api/users/5/profile");
    expect((await send("b", "/api/users/5/profile")).status).toMatch(/^edgecache; hit/);
    await patch("a", 5, "five");
    const after = await send("b", "/api/users/5/profile");
    expect(after.status).not.toMatch(/^edgecache; hit/);
    expect(JSON.parse(after.body)).toMatchObject({ name: "five" });
  });

  it("`edgecache rules pin` through one isolate's URL: the other acts on it at its next write", async () => {
    // Team pages never change: learning alone would never make this rule act.
    await send("b", "/api/teams/1");
    expect((await send("b", "/api/teams/1")).status).toMatch(/^edgecache; hit/);
    const env = { EDGECACHE_ADMIN_TOKEN: TOKEN };
    const pin = await cli(
      ["rules", "pin", "PATCH /api/users/:id", "/api/teams/:id", "--url", url],
      {
        env,
      },
    );
    expect(pin).toMatchObject({ code: 0, stdout: `pinned ${TEAM}\n` });
    // At once: the command answers once every isolate's next write acts on it.
    await patch("b", 5, "five");
    expect((await send("b", "/api/teams/1")).status).not.toMatch(/^edgecache; hit/);

    const list = await cli(["rules", "--url", url], { env });
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(`acts  pinned      0/0    ${TEAM}`);
    expect(list.stdout).toMatch(
      /acts {2}learned +\d+\/\d+ +PATCH \/api\/users\/:id -> \/api\/users\/\$1\/profile/,
    );
  });

  it("a rule rejected through one isolate's admin API stops acting in the other", async () => {
    const decide = async (isolate: string, id: string, state: string) => {
      const [write, read] = id.split(" -> ");
      const r = await send(isolate, "/_edgecache/rules", {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ write, read, state }),
      });
      expect(r.code).toBe(200);
    };
    // Any user's profile may have held every time it was tested too (when the others'
    // were gone before a sample): rejected here, so only PROFILE could remove user 6's.
    await decide("a", ANY_PROFILE, "rejected");
    await decide("b", PROFILE, "rejected");
    await send("a", "/api/users/6/profile");
    expect((await send("a", "/api/users/6/profile")).status).toMatch(/^edgecache; hit/);
    await patch("a", 6, "six");
    // Rejected, the rule no longer removes the profile: it is stale until it expires.
    const after = await send("a", "/api/users/6/profile");
    expect(after.status).toMatch(/^edgecache; hit/);
    expect(JSON.parse(after.body)).toMatchObject({ name: "user 6" });
  });
});
