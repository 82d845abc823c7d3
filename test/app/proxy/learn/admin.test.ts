import { rmSync } from "node:fs";
import { describe, expect, it, onTestFinished } from "vitest";
import { tempDir } from "../../harness.ts";
import { raw, startOrigin, startProxy } from "../harness.ts";
import { usersAndTeams } from "./users-teams-origin.ts";

const json = (body: object) => ({
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body),
});

describe("operators and learned rules (admin API, restarts)", () => {
  it("lists rules with their evidence, takes hand-written ones, and keeps them across a restart", async () => {
    const api = usersAndTeams();
    const origin = await startOrigin(api.handler);
    onTestFinished(() => origin.close());
    const cwd = tempDir("edgecache-learn-");
    onTestFinished(() => rmSync(cwd, { recursive: true, force: true }));
    const options = { learn: { minTests: 1, perWrite: 20 }, cacheFile: "proxy.db" };

    const first = await startProxy(origin.url, options, cwd);
    await raw(`${first.url}/api/users/1/profile`);
    await raw(`${first.url}/api/teams/1`);
    await raw(`${first.url}/api/users/1`, { ...json({ name: "one" }), method: "PATCH" });
    await first.node.cache.drain();
    const bad = await raw(
      `${first.url}/_edgecache/rules`,
      json({ write: "PATCH /x/:name", read: "/y", state: "manual" }),
    );
    expect(bad.status).toBe(400);
    expect(bad.text).toMatch(/route template/);
    const made = await raw(
      `${first.url}/_edgecache/rules`,
      json({
        write: "POST /api/teams/:id/members",
        read: "/api/teams/$1/members",
        state: "manual",
      }),
    );
    expect(made.status).toBe(200);
    const listed = JSON.parse((await raw(`${first.url}/_edgecache/rules`)).text);
    const ids = listed.rules.map((r: { id: string }) => r.id);
    expect(ids).toContain("PATCH /api/users/:id -> /api/users/$1/profile");
    expect(ids).toContain("POST /api/teams/:id/members -> /api/teams/$1/members");
    const profile = listed.rules.find((r: { id: string }) => r.id.endsWith("$1/profile"));
    expect(profile).toMatchObject({
      held: 1,
      tested: 1,
      confidence: 1,
      acts: true,
      state: "learned",
    });
    expect(typeof profile.lastSeen).toBe("string");
    expect(listed.stats.learningRequests).toBe(2);
    const stats = JSON.parse((await raw(`${first.url}/_edgecache/stats`)).text);
    expect(stats.learn).toMatchObject({ learningRequests: 2, learningChanged: 1 });
    await first.node.close();

    const second = await startProxy(origin.url, options, cwd);
    onTestFinished(() => second.close());
    const again = JSON.parse((await raw(`${second.url}/_edgecache/rules`)).text);
    expect(again.rules.map((r: { id: string }) => r.id).sort()).toEqual([...ids].sort());
    // Rejected: it stops acting at once, and stays rejected.
    const rejected = await raw(
      `${second.url}/_edgecache/rules`,
      json({ write: "PATCH /api/users/:id", read: "/api/users/$1/profile", state: "rejected" }),
    );
    expect(JSON.parse(rejected.text).rule).toMatchObject({ state: "rejected", acts: false });
  });
});
