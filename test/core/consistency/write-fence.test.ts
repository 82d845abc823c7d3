import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDataApi, type DataApi } from "../../../src/app/data-api.ts";
import { Cache } from "../../../src/core/cache/index.ts";
import { demoViews, seedDemo } from "../../../src/demo/seed.ts";
import type { Source } from "../../../src/sources/source.ts";
import { sqliteSource } from "../../../src/sources/sqlite.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { sqliteStore } from "../../../src/stores/sqlite.ts";

/**
 * Reads that began before a write must not put pre-write data back into the cache after
 * the write invalidated it. The source here is slow on the way back (the rows are read,
 * then held for a few ms, like a far database), so writes land in the middle of reads.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function slowOnReturn(source: Source): Source {
  const jitter = () => sleep(Math.random() * 6);
  return {
    ...source,
    name: source.name,
    schema: () => source.schema(),
    list: async (r, q) => {
      const rows = await source.list(r, q);
      await jitter();
      return rows;
    },
    get: async (r, id) => {
      const row = await source.get(r, id);
      await jitter();
      return row;
    },
    insert: (t, v) => source.insert(t, v),
    update: (t, id, v) => source.update(t, id, v),
    replace: (t, id, v) => source.replace(t, id, v),
    delete: (t, id) => source.delete(t, id),
    effects: (t, op) => source.effects(t, op),
    close: () => source.close(),
  };
}

let dir: string;
let db: Database.Database;
let api: DataApi;
let cache: Cache;

// With patches in place most entries a write changes are rewritten rather than reloaded;
// without, every one is reloaded, and the loads race the writes.
describe.each([
  ["reloads", false],
  ["patches in place", true],
])("write fence under concurrent reads and writes (%s)", (_name, patchInPlace) => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgecache-fence-"));
    db = new Database(join(dir, "demo.db"));
    seedDemo(db, { users: 30, orders: 100 });
    cache = new Cache({
      tiers: [memoryStore(), sqliteStore({ path: join(dir, "cache.db") })],
      rehydrate: { concurrency: 2, minHits: 1 },
    });
    api = await createDataApi({
      source: slowOnReturn(sqliteSource({ database: db, views: demoViews })),
      cache,
      patchInPlace,
    });
  });

  afterAll(async () => {
    await cache?.drain();
    db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("no read that starts after a write is acknowledged shows an older version", async () => {
    const ids = (
      db.prepare("SELECT id FROM users ORDER BY id LIMIT 4").all() as { id: string }[]
    ).map((r) => r.id);
    const acked = new Map<string, number>(ids.map((id) => [id, 0]));
    const version = (lastName: unknown) => Number(String(lastName).replace(/^v/, "")) || 0;
    let stale = 0;
    let reads = 0;
    let writing = true;

    const writer = async () => {
      for (let n = 1; n <= 150; n++) {
        const id = ids[n % ids.length]!;
        const res = await api.app.request(`/v1/users/${id}`, {
          method: "PATCH",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ lastName: `v${n}` }),
        });
        expect(res.status).toBe(200);
        acked.set(id, n);
        await sleep(Math.random() * 3);
      }
      writing = false;
    };

    const reader = async (k: number) => {
      let i = k;
      while (writing) {
        const id = ids[i++ % ids.length]!;
        const floor = acked.get(id)!;
        const paths = [
          `/v1/users/${id}`,
          `/v1/usersWithOrders/${id}`,
          `/v1/users?id=${encodeURIComponent(id)}`,
          `/v1/usersWithOrders?id=${encodeURIComponent(id)}`,
        ];
        const path = paths[i % paths.length]!;
        const body = (await (await api.app.request(path)).json()) as {
          lastName?: string;
          data?: { lastName: string }[];
        };
        const seen = version(body.data ? body.data[0]?.lastName : body.lastName);
        reads++;
        if (seen < floor) stale++;
        // Hits resolve in microtasks only: yield so the writer's timers run.
        await new Promise((r) => setImmediate(r));
      }
    };

    await Promise.all([writer(), ...Array.from({ length: 12 }, (_, k) => reader(k))]);
    await cache.drain();

    // After the dust settles, everything still cached is what the database holds.
    for (const id of ids) {
      const want = db.prepare("SELECT lastName FROM users WHERE id = ?").get(id) as {
        lastName: string;
      };
      for (const path of [`/v1/users/${id}`, `/v1/usersWithOrders/${id}`]) {
        const body = (await (await api.app.request(path)).json()) as { lastName: string };
        expect(body.lastName, path).toBe(want.lastName);
      }
    }
    const { fenced, patches } = cache.stats();
    console.log(`[fence] reads=${reads} stale=${stale} fenced=${fenced} patched=${patches}`);
    expect(reads).toBeGreaterThan(300);
    expect(stale).toBe(0);
    if (patchInPlace) expect(patches).toBeGreaterThan(0);
    else expect(fenced).toBeGreaterThan(0);
  }, 60_000);
});
