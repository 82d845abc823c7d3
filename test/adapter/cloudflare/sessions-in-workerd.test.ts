import { afterAll, describe, expect, it } from "vitest";
import type { Row } from "../../../src/core/data/query.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// Session mode inside workerd: two isolates of the edgecache Worker that sync with the log's
// object once per half `leaseMs` and hold no lease, over a local D1 primary and a second
// local D1 playing a replica that lags (test/adapter/cloudflare/distance.ts: it replays the primary's
// writes only when a session's bookmark demands it). A client carrying its session reads
// its writes through any isolate; one without it sees them within `leaseMs`.

const started: EdgecacheWorkers[] = [];
afterAll(async () => {
  await Promise.all(started.map((w) => w.close()));
});

const SESSION = "x-edgecache-session";

async function deployment(leaseMs: number, replicas = true) {
  const w = await startEdgecacheWorkers({
    names: ["a", "b", "c"],
    mode: "session",
    leaseMs,
    options: { readReplicas: replicas, warm: { hottest: 0 } },
    ...(replicas ? { replica: {} } : {}),
  });
  started.push(w);
  const list = (await (await w.fetch("b", "/v1/users?limit=2&sort=id")).json()) as {
    data: Row[];
  };
  const path = `/v1/users/${list.data[0]!.id}`;
  /** A row no test reads before it writes it: its first read is a miss. */
  const unread = `/v1/users/${list.data[1]!.id}`;
  const read = async (name: string, headers: Record<string, string> = {}, at = path) => {
    const res = await w.fetch(name, at, { headers });
    expect(res.status).toBe(200);
    const row = (await res.json()) as Row;
    return {
      lastName: row.lastName,
      cache: res.headers.get("cache-status") ?? "",
      session: res.headers.get(SESSION),
      cookie: res.headers.get("set-cookie"),
    };
  };
  const rename = async (name: string, lastName: string, at = path) => {
    const res = await w.fetch(name, at, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ lastName }),
    });
    expect(res.status).toBe(200);
    return { session: res.headers.get(SESSION)!, cookie: res.headers.get("set-cookie") ?? "" };
  };
  return { w, read, rename, unread };
}

describe("session mode (per-client sessions, inside workerd)", () => {
  it("a client reads its own write through another isolate; one without a session sees the old row until that isolate syncs", async () => {
    const { read, rename } = await deployment(60_000);
    const old = await read("b"); // cached in b, which will not sync again for 30 s
    const { session, cookie } = await rename("a", "Mine");
    expect(session).toMatch(/^[0-9a-f]+\.\d+$/);
    expect(cookie).toContain(`edgecache_session=${session}`);
    // Another client, no session: b serves what it holds (within the staleness bound).
    const other = await read("b");
    expect(other.lastName).toBe(old.lastName);
    expect(other.lastName).not.toBe("Mine");
    // The writer, through b with its session (header, or the cookie a browser sends back).
    const mine = await read("b", { [SESSION]: session });
    expect(mine.lastName).toBe("Mine");
    expect(Number(mine.session!.split(".")[1])).toBeGreaterThanOrEqual(
      Number(session.split(".")[1]),
    );
    expect((await read("b", { cookie: `theme=dark; edgecache_session=${session}` })).lastName).toBe(
      "Mine",
    );
  }, 60_000);

  it("a miss of a client's session loads D1 at or after its write's bookmark (the replica lags)", async () => {
    const { read, rename, unread } = await deployment(60_000);
    await read("b"); // b has synced, and will not again for 30 s
    const { session } = await rename("a", "Replicated", unread);
    const mine = await read("b", { [SESSION]: session }, unread);
    expect(mine.cache).toContain("miss");
    expect(mine.lastName).toBe("Replicated");
  }, 60_000);

  it("a client's reads never go back: a read through an isolate behind its session waits for it", async () => {
    const { read, rename } = await deployment(60_000);
    await read("a");
    await read("b"); // both cached, both synced now and not again for 30 s
    // Another client writes through a, then reads it there: its session is a's position.
    const { session: written } = await rename("a", "Newer");
    const seen = await read("a", { [SESSION]: written });
    expect(seen.lastName).toBe("Newer");
    // The same client's next read goes to b, which is behind: it syncs first.
    expect((await read("b", { [SESSION]: seen.session! })).lastName).toBe("Newer");
  }, 60_000);

  it("a client's reads never go back after a miss: the isolate that loads catches up first, so the session it hands out covers what the load showed", async () => {
    const { w, read, rename, unread } = await deployment(60_000, false);
    const LIST = "/v1/users?limit=1&sort=id"; // the written row, as a list page
    const listed = async (name: string, headers: Record<string, string> = {}) => {
      const res = await w.fetch(name, LIST, { headers });
      return ((await res.json()) as { data: Row[] }).data[0]!.lastName;
    };
    await read("a", {}, unread); // a has synced, and will not again for 30 s
    const old = await listed("b"); // b holds the page, and will not sync again either
    await rename("c", "SeenOnMiss"); // written through a third isolate
    // A client without a session reads the row through a: a miss, and D1 shows the write.
    const first = await read("a");
    expect(first.cache).toContain("miss");
    expect(first.lastName).toBe("SeenOnMiss");
    // Without its session, b still answers the old page (the bound for others)...
    expect(await listed("b")).toBe(old);
    // ...and with it, b catches up first: the client never sees the row go back.
    expect(await listed("b", { [SESSION]: first.session! })).toBe("SeenOnMiss");
  }, 60_000);

  it("a client without a session sees another's write once the isolate's last sync is leaseMs old", async () => {
    const { read, rename } = await deployment(800);
    await read("b");
    await rename("a", "Eventually");
    // b's trust lapses within leaseMs; the read after that syncs before it answers.
    await new Promise((r) => setTimeout(r, 800));
    expect((await read("b")).lastName).toBe("Eventually");
  }, 60_000);

  it("a malformed session header is a 400 naming it; a malformed cookie is replaced", async () => {
    const { w, read } = await deployment(60_000);
    const bad = await w.fetch("b", "/v1/users?limit=1", {
      headers: { [SESSION]: "not-a-session" },
    });
    expect(bad.status).toBe(400);
    const body = (await bad.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("E_BAD_HEADER");
    expect(body.error.message).toContain(SESSION);
    const replaced = await read("b", { cookie: "edgecache_session=garbage" });
    expect(replaced.session).toMatch(/^[0-9a-f]+\.\d+$/);
    expect(replaced.cookie).toContain(`edgecache_session=${replaced.session}`);
  }, 60_000);
});
