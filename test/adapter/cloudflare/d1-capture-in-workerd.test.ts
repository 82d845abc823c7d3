import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CapturingSource } from "../../../src/core/capture-feed.ts";
import type { Row } from "../../../src/core/data/query.ts";
import {
  DEFAULT_LEASE_MS,
  LEASE_MARGIN_MS,
  STRICT_TRUST_MS,
} from "../../../src/log/durable-object.ts";
import type { D1DatabaseLike } from "../../../src/sources/d1.ts";
import type { Source } from "../../../src/sources/source.ts";
import { HIT, type Reply, reply, requestInit } from "../../app/harness.ts";
import { until } from "../../helpers/cluster.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// D1 change capture inside workerd: two isolates ("a", "b") of the edgecache Worker over
// one local D1 with capture installed, and writes made around them, straight into D1
// through a second Worker's binding (as `wrangler d1 execute`, the dashboard or another
// Worker would). The change log's Durable Object drains the change table on its alarm and
// after each write through the Worker; every read is compared with D1 itself.

interface Capture {
  applied: number;
  lagP50?: number;
  lagP99?: number;
}

async function start(captureMs: number, mode?: "lease", leaseMs?: number) {
  const w = await startEdgecacheWorkers({ names: ["a", "b"], captureMs, mode, leaseMs });
  const db = await w.fresh();
  const raw = await w.direct();
  return { w, db, raw };
}

const send = async (
  w: EdgecacheWorkers,
  isolate: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Reply> => reply(await w.fetch(isolate, path, requestInit(method, body)));

async function sql(raw: D1DatabaseLike, text: string, ...params: unknown[]): Promise<Row[]> {
  const statement = raw.prepare(text);
  return (await (params.length > 0 ? statement.bind(...params) : statement).all()).results as Row[];
}

/** The change log's Durable Object. */
async function logObject(w: EdgecacheWorkers) {
  const ns = (await w.mf.getDurableObjectNamespace("CHANGE_LOG", "a")) as unknown as {
    idFromName(name: string): unknown;
    get(id: unknown): { fetch(url: string, init: RequestInit): Promise<Response> };
  };
  return ns.get(ns.idFromName("edgecache"));
}

/** The drain's counters, from the change log's Durable Object. */
async function drained(w: EdgecacheWorkers): Promise<Capture> {
  const stub = await logObject(w);
  const res = await stub.fetch("https://change-log/capture", { method: "POST", body: "{}" });
  return (await res.json()) as Capture;
}

/** Resets the log's object (see edgecache-entry.ts): the next call makes a new instance. */
async function restartLogObject(w: EdgecacheWorkers): Promise<void> {
  const stub = await logObject(w);
  await stub.fetch("https://change-log/_test/restart", { method: "POST", body: "{}" }).then(
    () => {
      throw new Error("the log's object did not restart");
    },
    () => {}, // the call that resets it fails
  );
}

/**
 * A change straight in D1, drained into the log before isolate a's next request, patches a
 * cached list at that request, after each of the quiet spells `quiets` (ms). One longer than
 * the isolate's trust from its last sync: the record reaches the isolate with the sync of that
 * request, before it renews the trust; the patch was refused as a load would be, and the list
 * reloaded (patched 0, a miss).
 */
async function patchesAfterQuiet(w: EdgecacheWorkers, raw: D1DatabaseLike, quiets: number[]) {
  const list = "/v1/users?limit=5";
  const stats = async () => (await send(w, "a", "GET", "/_edgecache/stats")).json;
  await send(w, "a", "GET", list);
  for (const quiet of quiets) {
    const before = await stats();
    const requested = Date.now();
    // The second row: another test cached the first on its own, which would patch too.
    const [, row] = (await send(w, "a", "GET", list)).json.data as Row[];
    const name = `Quiet${quiet}`;
    const { applied } = await drained(w);
    await sql(raw, "UPDATE users SET lastName = ? WHERE id = ?", name, row!.id);
    // The log's object has the change in the log before the isolate's next request.
    await until(async () => (await drained(w)).applied > applied);
    // No request to the isolate meanwhile: the quiet spell is the clock's.
    await new Promise((resolve) => setTimeout(resolve, requested + quiet - Date.now()));
    const read = await send(w, "a", "GET", list);
    expect((read.json.data as Row[])[1]!.lastName, `quiet ${quiet} ms`).toBe(name);
    expect(read.headers.get("cache-status"), `quiet ${quiet} ms`).toMatch(HIT);
    const after = await stats();
    expect(after.patches - before.patches, `quiet ${quiet} ms`).toBe(1);
    expect(after.misses - before.misses, `quiet ${quiet} ms`).toBe(0);
  }
}

describe("D1 change capture on Workers", () => {
  let w: EdgecacheWorkers;
  let db: Source & CapturingSource;
  let raw: D1DatabaseLike;

  beforeAll(async () => {
    ({ w, db, raw } = await start(200));
    const status = await db.installCapture();
    expect(status).toMatchObject({ installed: true, tables: ["orders", "users"], missing: [] });
  }, 60_000);

  afterAll(async () => {
    await w?.close();
  });

  it("a row updated straight in D1 is seen by the next cached read after the drain, in every isolate", async () => {
    const [user] = await sql(raw, "SELECT id, lastName FROM users ORDER BY id LIMIT 1");
    const path = `/v1/users/${user!.id}`;
    const list = `/v1/users?lastName=${encodeURIComponent(String(user!.lastName))}&limit=50`;
    for (const isolate of ["a", "b"]) {
      await send(w, isolate, "GET", path);
      await send(w, isolate, "GET", list);
      expect((await send(w, isolate, "GET", path)).headers.get("cache-status")).toMatch(HIT);
    }
    await sql(raw, "UPDATE users SET lastName = 'Outside' WHERE id = ?", user!.id);
    await until(async () => (await send(w, "a", "GET", path)).json.lastName === "Outside", 10_000);
    // No stale read after the drain: each isolate, the row and the list it left.
    for (const isolate of ["a", "b"]) {
      const [row] = await sql(raw, "SELECT * FROM users WHERE id = ?", user!.id);
      expect((await send(w, isolate, "GET", path)).json).toEqual(row);
      const rows = (await send(w, isolate, "GET", list)).json.data as Row[];
      expect(rows.map((r) => r.id)).not.toContain(user!.id);
    }
    expect((await db.captureStatus()).backlog).toBe(0);
    // Each isolate counts the change it applied in its stats, though neither asked the drain.
    for (const isolate of ["a", "b"]) {
      const stats = (await send(w, isolate, "GET", "/_edgecache/stats")).json;
      expect(stats.capture, isolate).toEqual({ applied: 1 });
    }
  });

  it("a change drained during a quiet spell patches a cached list at the next request, as it does within one (issue 42)", async () => {
    await patchesAfterQuiet(w, raw, [0, STRICT_TRUST_MS + 200]);
  }, 30_000);

  it("a change made while the log's object restarts (evicted after idling) patches a cached list: the new object's first drain knows its order (issue 42)", async () => {
    const list = "/v1/users?limit=5";
    await send(w, "a", "GET", list);
    const before = (await send(w, "a", "GET", "/_edgecache/stats")).json;
    const [, , row] = (await send(w, "a", "GET", list)).json.data as Row[];
    await restartLogObject(w);
    await sql(raw, "UPDATE users SET lastName = 'Restarted' WHERE id = ?", row!.id);
    // The new object drains it (as a Drizzle mutation asks), with the mark it kept.
    const stub = await logObject(w);
    const res = await stub.fetch("https://change-log/drain", { method: "POST", body: "{}" });
    expect(((await res.json()) as { capture: Capture }).capture.applied).toBe(1);
    const read = await send(w, "a", "GET", list);
    expect((read.json.data as Row[])[2]!.lastName).toBe("Restarted");
    expect(read.headers.get("cache-status")).toMatch(HIT);
    const after = (await send(w, "a", "GET", "/_edgecache/stats")).json;
    expect(after.patches - before.patches).toBe(1);
    expect(after.misses - before.misses).toBe(0);
  });

  it("a row inserted straight in D1 joins a cached list", async () => {
    const list = "/v1/users?firstName=Capture&limit=10";
    expect((await send(w, "b", "GET", list)).json.data).toEqual([]);
    expect((await send(w, "b", "GET", list)).headers.get("cache-status")).toMatch(HIT);
    await sql(
      raw,
      "INSERT INTO users (id, firstName, lastName, email, createdAt) VALUES ('zz-capture', 'Capture', 'Me', 'capture@example.com', '2026-01-01')",
    );
    await until(async () => ((await send(w, "b", "GET", list)).json.data as Row[]).length === 1);
    const rows = (await send(w, "a", "GET", list)).json.data as Row[];
    expect(rows.map((r) => r.id)).toEqual(["zz-capture"]);
  });

  it("the data API's own writes are recorded once: their captured rows are deleted, not applied again", async () => {
    const before = await drained(w);
    const [user] = await sql(raw, "SELECT id FROM users ORDER BY id LIMIT 1 OFFSET 3");
    const path = `/v1/users/${user!.id}`;
    await send(w, "a", "GET", path);
    const patched = await send(w, "a", "PATCH", path, { lastName: "Inside" });
    expect(patched.status).toBe(200);
    // Patched in place: still a hit, and not invalidated by a second, captured record.
    await until(async () => (await db.captureStatus()).backlog === 0);
    await new Promise((resolve) => setTimeout(resolve, 600));
    const read = await send(w, "a", "GET", path);
    expect(read.json.lastName).toBe("Inside");
    expect(read.headers.get("cache-status")).toMatch(HIT);
    expect((await drained(w)).applied).toBe(before.applied);
  });

  it("writes around the Worker and through it, interleaved with cached reads: after the drain no read is stale", async () => {
    const users = (await sql(raw, "SELECT id FROM users ORDER BY id LIMIT 12")).map((r) => r.id);
    const paths = [
      ...users.map((id) => `/v1/users/${id}`),
      "/v1/users?limit=20",
      "/v1/users?sort=lastName&limit=10",
    ];
    // A fixed sequence (seeded), so a failure replays.
    let seed = 7;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let step = 0; step < 40; step++) {
      const id = users[next(users.length)];
      const name = `R${step}`;
      if (next(2) === 0) await sql(raw, "UPDATE users SET lastName = ? WHERE id = ?", name, id);
      else await send(w, ["a", "b"][next(2)]!, "PATCH", `/v1/users/${id}`, { lastName: name });
      await send(w, ["a", "b"][next(2)]!, "GET", paths[next(paths.length)]!);
    }
    await until(async () => (await db.captureStatus()).backlog === 0);
    await new Promise((resolve) => setTimeout(resolve, 600));
    for (const isolate of ["a", "b"]) {
      for (const id of users) {
        const [row] = await sql(raw, "SELECT * FROM users WHERE id = ?", id);
        expect((await send(w, isolate, "GET", `/v1/users/${id}`)).json).toEqual(row);
      }
      const first = await sql(raw, "SELECT * FROM users ORDER BY id LIMIT 20");
      expect((await send(w, isolate, "GET", "/v1/users?limit=20")).json.data).toEqual(first);
    }
  });

  it("rows a REPLACE deletes straight in D1 (which fires no delete trigger) leave cached reads: on the key, on a unique column, several at once, UPDATE OR REPLACE; an upsert and OR IGNORE delete nothing", async () => {
    const users = await sql(raw, "SELECT * FROM users ORDER BY id LIMIT 8 OFFSET 20");
    const [a, b, c, d, e, f, g, h] = users as (Row & { id: string; email: string })[];
    const paths = [
      ...users.map((u) => `/v1/users/${u.id}`),
      ...users.map((u) => `/v1/users?lastName=${encodeURIComponent(String(u.lastName))}&limit=50`),
      "/v1/users?limit=50&offset=15",
      "/v1/users?sort=lastName&limit=30",
    ];
    for (const isolate of ["a", "b"]) {
      for (const path of paths) await send(w, isolate, "GET", path);
    }
    const columns = "(id, firstName, lastName, email, createdAt)";
    for (const [text, ...params] of [
      // The primary key: the row is replaced by one of another last name.
      [
        `INSERT OR REPLACE INTO users ${columns} VALUES (?, 'Re', 'Placed', 'pk@x', '2026-01-01')`,
        a!.id,
      ],
      // The unique email, with a new id: b's row goes.
      [
        `REPLACE INTO users ${columns} VALUES ('zz-replace', 'Re', 'Mail', ?, '2026-01-01')`,
        b!.email,
      ],
      // Both at once: c's id and d's email.
      [`REPLACE INTO users ${columns} VALUES (?, 'Two', 'Gone', ?, '2026-01-01')`, c!.id, d!.email],
      [`UPDATE OR REPLACE users SET email = ? WHERE id = ?`, f!.email, e!.id],
      [
        `INSERT INTO users ${columns} VALUES (?, 'Up', 'Sert', 'up@x', '2026-01-01') ON CONFLICT (id) DO UPDATE SET lastName = 'Upserted'`,
        g!.id,
      ],
      [
        `INSERT OR IGNORE INTO users ${columns} VALUES ('zz-ignored', 'No', 'Pe', ?, '2026-01-01')`,
        h!.email,
      ],
    ] as [string, ...unknown[]][]) {
      await sql(raw, text, ...params);
    }
    // Every cached read, in each isolate, comes to equal D1 once the drain has applied them.
    const stale = async () => {
      for (const isolate of ["a", "b"]) {
        for (const u of users) {
          const [row] = await sql(raw, "SELECT * FROM users WHERE id = ?", u.id);
          const read = await send(w, isolate, "GET", `/v1/users/${u.id}`);
          if (row ? JSON.stringify(read.json) !== JSON.stringify(row) : read.status !== 404) {
            return `${isolate} /v1/users/${u.id}`;
          }
        }
        for (const path of paths.filter((p) => p.includes("?"))) {
          const query = new URLSearchParams(path.split("?")[1]);
          const lastName = query.get("lastName");
          const expected = lastName
            ? await sql(
                raw,
                "SELECT * FROM users WHERE lastName = ? ORDER BY id LIMIT 50",
                lastName,
              )
            : query.get("sort")
              ? await sql(raw, "SELECT * FROM users ORDER BY lastName, id LIMIT 30")
              : await sql(raw, "SELECT * FROM users ORDER BY id LIMIT 50 OFFSET 15");
          const read = await send(w, isolate, "GET", path);
          if (JSON.stringify(read.json.data) !== JSON.stringify(expected))
            return `${isolate} ${path}`;
        }
      }
      return undefined;
    };
    let last: string | undefined;
    const fresh = async () => {
      last = await stale();
      return last === undefined;
    };
    await until(fresh, 10_000).catch(() => {
      throw new Error(`still stale: ${last}`);
    });
  });

  it("installs on a database of more tables than D1 allows terms in a compound SELECT (5)", async () => {
    const extra = Array.from({ length: 6 }, (_, i) => `extra${i}`);
    await raw.batch(
      extra.map((t) => raw.prepare(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, code TEXT UNIQUE)`)),
    );
    try {
      const status = await db.installCapture();
      expect(status.tables).toEqual([...extra, "orders", "users"]);
      // One batch (one transaction): the log's drain, every 200 ms, cannot take the changes
      // between the writes and the read of its table.
      const [, , read] = await raw.batch([
        raw.prepare("INSERT INTO extra5 VALUES (1, 'a')"),
        raw.prepare("REPLACE INTO extra5 VALUES (2, 'a')"),
        raw.prepare("SELECT op FROM _edgecache_changes WHERE tbl = 'extra5' ORDER BY seq"),
      ]);
      const ops = (read as { results: Row[] }).results;
      expect(ops.map((r) => r.op)).toEqual(["insert", "delete", "insert"]);
    } finally {
      await raw.batch(extra.map((t) => raw.prepare(`DROP TABLE ${t}`)));
    }
  });

  it("status names a table created after the install", async () => {
    await sql(raw, "CREATE TABLE later (id TEXT PRIMARY KEY, note TEXT)");
    expect((await db.captureStatus()).missing).toEqual(["later"]);
    await sql(raw, "DROP TABLE later");
  });
});

describe("D1 change capture: drained on each write through the Worker", () => {
  let w: EdgecacheWorkers;
  let raw: D1DatabaseLike;
  let db: Source & CapturingSource;

  beforeAll(async () => {
    // An alarm too slow to matter here: what drains is the write through the Worker.
    ({ w, db, raw } = await start(120_000));
    await db.installCapture();
  }, 60_000);

  afterAll(async () => {
    await w?.close();
  });

  it("a write through the Worker drains the changes other writers made before it", async () => {
    const [one, two] = await sql(raw, "SELECT id FROM users ORDER BY id LIMIT 2");
    const path = `/v1/users/${one!.id}`;
    await send(w, "a", "GET", path);
    await sql(raw, "UPDATE users SET lastName = 'Around' WHERE id = ?", one!.id);
    await send(w, "b", "PATCH", `/v1/users/${two!.id}`, { lastName: "Through" });
    await until(async () => (await send(w, "a", "GET", path)).json.lastName === "Around", 5_000);
    expect((await drained(w)).applied).toBe(1);
  });
});

describe("D1 change capture in lease mode", () => {
  let w: EdgecacheWorkers;
  let raw: D1DatabaseLike;

  beforeAll(async () => {
    // The default lease: a shorter one can lapse again before a loaded machine reads.
    ({ w, raw } = await start(200, "lease", DEFAULT_LEASE_MS));
    await (await w.fresh()).installCapture();
  }, 60_000);

  afterAll(async () => {
    await w?.close();
  });

  it("a change drained while an isolate's lease lapsed patches a cached list at its next request (issue 42)", async () => {
    // Lease mode serves from memory within the lease without a sync: only a lapsed one here.
    await patchesAfterQuiet(w, raw, [DEFAULT_LEASE_MS - LEASE_MARGIN_MS + 200]);
  });
});
