import { afterAll, describe, expect, it } from "vitest";
import type { Row } from "../../../src/core/data/query.ts";
import type { D1DatabaseLike } from "../../../src/sources/d1.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// D1 change capture with read replication inside workerd: two isolates with `readReplicas`
// over a local D1 primary with capture installed and a second local D1 playing a replica
// that lags (test/adapter/cloudflare/distance.ts). A row is updated straight in the primary, around
// the Worker; the change log's object drains it; then a read through an isolate that never
// cached the row loads it from the replica. That load must read at or after the captured
// write, which only the bookmark of the drain's read of the change table can tell it.

const started: EdgecacheWorkers[] = [];
afterAll(async () => {
  await Promise.all(started.map((w) => w.close()));
});

async function sql(raw: D1DatabaseLike, text: string, ...params: unknown[]): Promise<Row[]> {
  const statement = raw.prepare(text);
  return (await (params.length > 0 ? statement.bind(...params) : statement).all()).results as Row[];
}

/** Drains the change table now, from the change log's object; answers the drain's counters. */
async function drain(w: EdgecacheWorkers): Promise<{ applied: number }> {
  const ns = (await w.mf.getDurableObjectNamespace("CHANGE_LOG", "a")) as unknown as {
    idFromName(name: string): unknown;
    get(id: unknown): { fetch(url: string, init: RequestInit): Promise<Response> };
  };
  const stub = ns.get(ns.idFromName("edgecache"));
  const res = await stub.fetch("https://change-log/drain", { method: "POST", body: "{}" });
  return ((await res.json()) as { capture: { applied: number } }).capture;
}

async function scenario(ignoreBookmarks = false) {
  const w = await startEdgecacheWorkers({
    names: ["a", "b"],
    options: { readReplicas: true },
    replica: { ignoreBookmarks },
    // The alarm never fires during the test: the drain runs when the test asks.
    captureMs: 120_000,
  });
  started.push(w);
  // Each isolate catches the replica up when it opens (the seed is old news): open the
  // reader before the write, so that catching up is not what brings the write over.
  expect((await w.fetch("b", "/_edgecache/stats")).ok).toBe(true);
  // Straight at the primary, through the replicated binding (the replica gets the install
  // and the update when a bookmark asks for them).
  const raw = await w.direct();
  const status = await (await w.fresh()).installCapture();
  expect(status).toMatchObject({ installed: true, tables: ["orders", "users"] });
  const [user] = await sql(raw, "SELECT id, lastName FROM users ORDER BY id LIMIT 1");
  const written = `Captured${ignoreBookmarks}`;
  await sql(raw, "UPDATE users SET lastName = ? WHERE id = ?", written, user!.id);
  expect((await drain(w)).applied).toBe(1);
  // Never read through either isolate before: a miss, loaded from the replica (a cached
  // entry would be patched or removed by the captured record instead).
  const read = await w.fetch("b", `/v1/users/${user!.id}`);
  expect(read.headers.get("cache-status")).toContain("miss");
  const after = (await read.json()) as Row;
  return { before: user!, after, written };
}

describe("D1 change capture with read replication (a replica that lags, inside workerd)", () => {
  it("a load after a drained write made straight in D1 reads a replica at or after it", async () => {
    const { before, after, written } = await scenario();
    expect(before.lastName).not.toBe(written);
    expect(after.lastName).toBe(written);
  }, 60_000);

  it("control: a replica read without the drain's bookmark serves the old row (the lag is real)", async () => {
    const { before, after, written } = await scenario(true);
    expect(after.lastName).toBe(before.lastName);
    expect(after.lastName).not.toBe(written);
  }, 60_000);
});
