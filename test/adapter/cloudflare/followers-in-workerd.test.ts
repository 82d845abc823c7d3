import { afterAll, expect, it } from "vitest";
import type { Row } from "../../../src/core/data/query.ts";
import { HIT, type Reply, reply, requestInit } from "../../app/harness.ts";
import { until } from "../../helpers/cluster.ts";
import type { calls } from "./distance.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// Follower mode in workerd: two regions, each isolate 5 ms from its region's follower of the
// log; the far region 80 ms from the log's object (test/adapter/cloudflare/distance.ts).

// A follower renews its lease when an isolate syncs in the lease's second half: long
// enough that a loaded machine's gap between two reads (over 300 ms at load 13) leaves it
// trusted, or the next read asks the log's object.
const LEASE_MS = 2000;
const LIST = "/v1/users?limit=3&sort=id";

let w: EdgecacheWorkers | undefined;
afterAll(async () => {
  await w?.close();
});

async function read(name: string): Promise<{ r: Reply; first: Row; status: string }> {
  const r = await reply(await w!.fetch(name, LIST));
  expect(r.status).toBe(200);
  const first = (r.json as { data: Row[] }).data[0]!;
  return { r, first, status: r.headers.get("cache-status") ?? "" };
}

async function rename(id: unknown, lastName: string): Promise<void> {
  const res = await w!.fetch("hub", `/v1/users/${id}`, requestInit("PATCH", { lastName }));
  expect(res.status).toBe(200);
}

const callsOf = async (name: string) =>
  (await (await w!.fetch(name, "/_distance/calls")).json()) as typeof calls;

it("a region cut off from the log's object bypasses its cache (never stale) and rejoins", async () => {
  w = await startEdgecacheWorkers({
    names: ["hub", "far"],
    mode: "follower",
    leaseMs: LEASE_MS,
    regions: { hub: "near", far: "far" },
    distance: { hub: { object: 5, follower: 5 }, far: { object: 80, follower: 5 } },
    regionRtt: { near: 5, far: 80 },
    options: { warm: { hottest: 0 } },
  });
  // The far follower joins on its region's first sync (answering "unknown" until then).
  await until(async () => HIT.test((await read("far")).status), 20_000);
  const { first: user } = await read("far");

  // A hit in the far region asks its follower, never the log's object.
  const before = await callsOf("far");
  for (let i = 0; i < 3; i++) expect((await read("far")).status).toMatch(HIT);
  const after = await callsOf("far");
  expect(after.object - before.object).toBe(0);
  expect(after.follower - before.follower).toBe(3);

  // Partition: the far region's follower and isolate no longer reach the log's object.
  await w.fetch("hub", "/_distance/cut-region?region=far");
  await w.fetch("far", "/_distance/cut");
  // Acknowledged once the far follower's lease ran out (it cannot be reached to hold it).
  await rename(user.id, "CutOff");
  for (let i = 0; i < 4; i++) {
    const { first, status } = await read("far");
    expect(first.lastName).toBe("CutOff");
    expect(status).toContain("fwd=bypass");
  }
  expect((await read("hub")).first.lastName).toBe("CutOff");

  // Mended: the follower renews, catches up, and its region hits again, never stale.
  await w.fetch("hub", "/_distance/mend-region?region=far");
  await w.fetch("far", "/_distance/mend");
  await until(async () => {
    const { first, status } = await read("far");
    expect(first.lastName).toBe("CutOff");
    return HIT.test(status);
  }, 20_000);
  // And follows the log again: a write is in the far region's next read.
  await rename(user.id, "Rejoined");
  expect((await read("far")).first.lastName).toBe("Rejoined");
}, 90_000);
