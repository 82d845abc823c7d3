import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import type { NodeProxyOptions } from "../../../../src/adapter/node/modes/proxy.ts";
import { randomId } from "../../../../src/core/random-id.ts";
import { until } from "../../../helpers/cluster.ts";
import { startRedis } from "../../../helpers/redis-server.ts";
import { requireRedis, requireRedisServer } from "../../../helpers/services.ts";
import { cacheStatusOf, type ProxyHarness, raw, startOrigin, startProxy } from "../harness.ts";
import { usersAndTeams } from "./users-teams-origin.ts";

// Learned rules on proxy nodes that share Redis: evidence added up from every node,
// decisions seen by all, and rules that outlive the nodes (and a Redis restarted empty).

const redis = await requireRedis();
const server = await requireRedisServer();
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const READS = [
  ...[1, 2, 3, 4, 5, 6].flatMap((id) => [`/api/users/${id}`, `/api/users/${id}/profile`]),
  "/api/teams/1",
  "/api/teams/2",
];
const PROFILE = "PATCH /api/users/:id -> /api/users/$1/profile";
const ANY_PROFILE = "PATCH /api/users/:id -> /api/users/:id/profile";

async function deployment(url = redis.url) {
  const origin = await startOrigin(usersAndTeams().handler);
  cleanup.push(() => origin.close());
  const options: Partial<NodeProxyOptions> = {
    redis: { url, prefix: `test:${randomId()}:`, leaseMs: 1000 },
    learn: { minTests: 2, perWrite: 30 },
  };
  const prefix = (options.redis as { prefix: string }).prefix;
  cleanup.push(async () => {
    // The rules hash has no expiry (rules outlive nodes): a test's goes with it.
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    client.on("error", () => {});
    await client.del(`${prefix}learn:rules`).catch(() => {});
    client.disconnect();
  });
  const node = async () => {
    const p = await startProxy(origin.url, options);
    cleanup.push(() => p.close());
    await p.node.cache.writable();
    return p;
  };
  return { origin, node, prefix };
}

const learner = (p: ProxyHarness) => p.node.proxy.learn!.learner;

async function warmThenPatch(p: ProxyHarness, id: number) {
  for (const path of READS) expect((await raw(`${p.url}${path}`)).status).toBe(200);
  const r = await raw(`${p.url}/api/users/${id}`, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: `renamed ${id} ${randomId()}` }),
  });
  expect(r.status).toBe(200);
  await p.node.cache.drain();
}

async function decide(p: ProxyHarness, state: string) {
  const [write, read] = PROFILE.split(" -> ");
  const r = await raw(`${p.url}/_edgecache/rules`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ write, read, state }),
  });
  expect(r.status).toBe(200);
}

redis.describe("learned rules shared through Redis", () => {
  it("adds up every node's evidence, shows each node's decisions to all, and outlives the nodes", async () => {
    const { node } = await deployment();
    const a = await node();
    const b = await node();
    for (const id of [1, 2]) await warmThenPatch(a, id);
    expect(learner(a).acts(learner(a).get(PROFILE)!)).toBe(true);
    // B learned nothing itself, and has A's rules (notified, not waiting for its timer).
    await until(() => learner(b).get(PROFILE)?.tested === learner(a).get(PROFILE)!.tested);
    expect(learner(b).acts(learner(b).get(PROFILE)!)).toBe(true);

    // B's tests add to A's: the other-profile rule counts both nodes' evidence once.
    const before = learner(a).get(ANY_PROFILE)!.tested;
    await warmThenPatch(b, 3);
    const added = learner(b).get(ANY_PROFILE)!.tested - before;
    expect(added).toBeGreaterThan(0);
    await until(() => learner(a).get(ANY_PROFILE)!.tested === before + added);

    // An operator's decision on one node is every node's.
    await decide(b, "rejected");
    await until(() => learner(a).get(PROFILE)?.state === "rejected");
    expect(learner(a).acts(learner(a).get(PROFILE)!)).toBe(false);
    await decide(a, "pinned");
    await until(() => learner(b).get(PROFILE)?.state === "pinned");

    // A node that starts later has them all, and acts on them at once.
    const c = await node();
    expect(learner(c).get(PROFILE)).toMatchObject({ state: "pinned" });
    for (const path of READS) await raw(`${c.url}${path}`);
    expect(cacheStatusOf(await raw(`${c.url}/api/users/5/profile`))).toMatch(/hit/);
    await raw(`${c.url}/api/users/5`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "five" }),
    });
    const profile = await raw(`${c.url}/api/users/5/profile`);
    expect(JSON.parse(profile.text)).toMatchObject({ name: "five" });
    expect(c.node.proxy.learn!.stats.learnedInvalidations).toBeGreaterThan(0);

    // Forgotten on one node, gone from all.
    await decide(c, "forget");
    await until(
      () => learner(a).get(PROFILE) === undefined && learner(b).get(PROFILE) === undefined,
    );
  });
});

server.describe("learned rules on a Redis that fails", () => {
  it("keeps its rules while Redis is down, and seeds a Redis restarted empty with them", async () => {
    const own = await startRedis();
    cleanup.push(() => own.stop());
    const { node, prefix } = await deployment(own.url);
    const a = await node();
    for (const id of [1, 2]) await warmThenPatch(a, id);
    const learned = learner(a).get(PROFILE)!.tested;
    const client = new Redis(own.url);
    client.on("error", () => {}); // down on purpose below
    cleanup.push(() => client.disconnect());
    const shared = async (id: string) =>
      Number(await client.hget(`${prefix}learn:rules`, `t:${id}`));
    await until(async () => (await shared(PROFILE)) === learned);
    const general = learner(a).get(ANY_PROFILE)!.tested;

    await own.stop();
    await new Promise((r) => setTimeout(r, 1500)); // a sync or more fails meanwhile
    expect(learner(a).get(PROFILE)!.tested).toBe(learned);
    await own.restart(); // empty: the server saves nothing
    await until(async () => (await shared(PROFILE)) === learned, 15_000);
    expect(await shared(ANY_PROFILE)).toBe(general);
    expect(learner(a).acts(learner(a).get(PROFILE)!)).toBe(true);
  });
});
