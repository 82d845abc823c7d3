import { afterAll, describe, expect, it } from "vitest";
import type { Row } from "../../../src/core/data/query.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// D1 read replication inside workerd: two isolates of the edgecache Worker with
// `readReplicas` on, over a local D1 primary and a second local D1 playing a replica that
// lags (test/adapter/cloudflare/distance.ts: it replays the primary's writes only when a session's
// bookmark demands it). A write through one isolate, then a read of the same row through
// the other: its load must read at or after the write's bookmark.

const started: EdgecacheWorkers[] = [];
afterAll(async () => {
  await Promise.all(started.map((w) => w.close()));
});

async function scenario(
  mode: "strict" | "lease",
  ignoreBookmarks = false,
): Promise<{ before: Row; after: Row; written: string }> {
  const w = await startEdgecacheWorkers({
    names: ["a", "b"],
    mode,
    leaseMs: 400,
    options: { readReplicas: true },
    replica: { ignoreBookmarks },
  });
  started.push(w);
  const list = (await (await w.fetch("b", "/v1/users?limit=1&sort=id")).json()) as {
    data: Row[];
  };
  const id = String(list.data[0]!.id);
  // Read (and cached) through the writer only: the reader's read after the write is a miss,
  // which loads from the replica (a cached entry would be patched by the write's record).
  const before = (await (await w.fetch("a", `/v1/users/${id}`)).json()) as Row;
  const written = `Replica${mode}${ignoreBookmarks}`;
  const patched = await w.fetch("a", `/v1/users/${id}`, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ lastName: written }),
  });
  expect(patched.status).toBe(200);
  const read = await w.fetch("b", `/v1/users/${id}`);
  expect(read.headers.get("cache-status")).toContain("miss");
  const after = (await read.json()) as Row;
  return { before, after, written };
}

describe("D1 read replication (a replica that lags, inside workerd)", () => {
  for (const mode of ["strict", "lease"] as const) {
    it(`${mode}: a read after an acknowledged write reads a replica at or after the write's bookmark`, async () => {
      const { before, after, written } = await scenario(mode);
      expect(before.lastName).not.toBe(written);
      expect(after.lastName).toBe(written);
    }, 60_000);
  }

  it("control: a replica read without the bookmark serves the old row (the lag is real)", async () => {
    const { before, after, written } = await scenario("strict", true);
    expect(after.lastName).toBe(before.lastName);
    expect(after.lastName).not.toBe(written);
  }, 60_000);

  it("an isolate cut off from the change log reads D1's primary: it cannot know the newest bookmark", async () => {
    const w = await startEdgecacheWorkers({
      names: ["a", "b"],
      options: { readReplicas: true },
      replica: {},
    });
    started.push(w);
    const list = (await (await w.fetch("b", "/v1/users?limit=1&sort=id")).json()) as {
      data: Row[];
    };
    const id = String(list.data[0]!.id);
    await w.fetch("b", "/_distance/cut");
    const patched = await w.fetch("a", `/v1/users/${id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ lastName: "WhileCut" }),
    });
    expect(patched.status).toBe(200);
    const read = await w.fetch("b", `/v1/users/${id}`);
    expect(((await read.json()) as Row).lastName).toBe("WhileCut");
  }, 60_000);
});
