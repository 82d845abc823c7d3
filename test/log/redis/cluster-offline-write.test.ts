import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, expect, it } from "vitest";
import { createNodeEdgecache } from "../../../src/adapter/node/modes/data-api.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { until } from "../../helpers/cluster.ts";
import { requireRedis } from "../../helpers/services.ts";

/**
 * README "Limits" says writes made while edgecache is stopped are safe (a
 * stamp of the database decides whether the log resumes). With `--redis` the stamp is not
 * taken at all (`takeStamp` is skipped for a cluster) and the Redis log simply goes on: an
 * entry in the cache file or in the Redis tier validates against a log that never heard of
 * the offline write. Stop the node(s), fix a row with sqlite3 (a migration, a backfill, a
 * restore), start again: the old row is served as a hit.
 */

const shared = await requireRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

shared.describe("writes made while every node is stopped", () => {
  it("are not served stale from the cache file or the Redis tier after a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgecache-offline-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const options = {
      cwd: dir,
      demo: { users: 5, orders: 5 },
      redis: { url: shared.url, prefix: `test:${randomId()}:`, leaseMs: 600 },
      cacheFile: join(dir, "a.cache.db"),
    };
    let ec = await createNodeEdgecache(options);
    await until(() => ec.cache.trusted);
    const list = (await (await ec.app.request("/v1/users?limit=1")).json()) as {
      data: { id: string; firstName: string }[];
    };
    const id = list.data[0]!.id;
    const path = `/v1/users/${encodeURIComponent(id)}`;
    await ec.app.request(path); // cached: memory, cache file, Redis
    await ec.cache.drain();
    await ec.close();

    // While it is stopped, another program writes the row.
    const db = new Database(ec.databasePath);
    db.prepare("UPDATE users SET firstName = 'Offline' WHERE id = ?").run(id);
    db.close();

    ec = await createNodeEdgecache(options);
    cleanup.push(() => ec.close());
    await until(() => ec.cache.trusted);
    const res = await ec.app.request(path);
    const body = (await res.json()) as { firstName: string };
    expect({ firstName: body.firstName, cache: res.headers.get("cache-status") }).toEqual({
      firstName: "Offline",
      cache: expect.any(String),
    });
  });
});
