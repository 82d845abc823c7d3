import postgres from "postgres";
import { expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import {
  type CapturedChange,
  type CarryingFeed,
  followCapture,
} from "../../../src/core/capture-feed.ts";
import { localChangeLog } from "../../../src/core/change-log/in-process.ts";
import type { WriteEvent } from "../../../src/core/deps/planner.ts";
import { postgresSource } from "../../../src/sources/postgres.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { quiet, until } from "../../helpers/cluster.ts";
import { withPostgresDatabase } from "../../helpers/postgres.ts";
import { requirePostgres } from "../../helpers/services.ts";

// PostgreSQL capture's NOTIFY carries the change: the consumer applies it without reading
// the change table, which stays the source of truth (a change that does not fit, or whose
// notification is lost, is read from it), and each change is applied once.

const pg = await requirePostgres();

/** A database with one captured table `items` (id, name), rows 1..3, and raw SQL on it. */
async function withCaptured(
  use: (db: { raw: postgres.Sql; feed: CarryingFeed; backlog(): Promise<number> }) => Promise<void>,
) {
  await withPostgresDatabase(pg.url, "ec_carry", async (url, drop) => {
    const raw = postgres(url, { max: 1, onnotice: () => {} });
    await raw.unsafe("CREATE TABLE items (id text PRIMARY KEY, name text NOT NULL)");
    await raw.unsafe("INSERT INTO items VALUES ('1', 'a'), ('2', 'b'), ('3', 'c')");
    const source = await postgresSource({ url, max: 2 });
    await source.installCapture();
    const feed = source.captureFeed() as CarryingFeed;
    try {
      await use({
        raw,
        feed,
        backlog: async () =>
          Number((await raw`SELECT count(*)::int AS n FROM edgecache.changes`)[0]?.n),
      });
    } finally {
      await feed.close();
      await source.close();
      await raw.end();
      await drop();
    }
  });
}

/** A cache whose applied write events are kept, in order. */
function recordingCache(): { cache: Cache; events: WriteEvent[] } {
  const cache = new Cache({ tiers: [memoryStore()], log: localChangeLog(), logger: quiet });
  const events: WriteEvent[] = [];
  const applyWrite = cache.applyWrite.bind(cache);
  cache.applyWrite = (written, options) => {
    events.push(...(Array.isArray(written) ? written : [written as WriteEvent]));
    return applyWrite(written, options);
  };
  return { cache, events };
}

pg.describe("PostgreSQL capture: changes carried by NOTIFY", () => {
  it("a change's NOTIFY carries it exactly as the change table holds it", async () => {
    await withCaptured(async ({ raw, feed }) => {
      const carried: CapturedChange[] = [];
      feed.carry((changes) => carried.push(...changes));
      expect(await feed.read(10)).toEqual([]); // starts listening
      await raw`UPDATE items SET name = 'z' WHERE id = '2'`;
      await raw`INSERT INTO items VALUES ('4', 'd')`;
      await raw`TRUNCATE items`;
      await until(() => carried.length === 3);
      expect(carried).toEqual(await feed.read(10));
      expect(carried.map((c) => c.event)).toEqual([
        { table: "items", op: "update", old: { id: "2", name: "b" }, new: { id: "2", name: "z" } },
        { table: "items", op: "insert", new: { id: "4", name: "d" } },
        { table: "items", op: "update" },
      ]);
    });
  });

  it("a change is recorded at its transaction's commit, not at its statement", async () => {
    await withCaptured(async ({ raw, feed }) => {
      let afterStatement = 0;
      await raw.begin(async (tx) => {
        await tx`UPDATE items SET name = 'late' WHERE id = '1'`;
        const [row] =
          await tx`SELECT pg_sleep(0.05), (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS t`;
        afterStatement = Number(row?.t);
      });
      const [change] = await feed.read(10);
      expect(change?.event).toMatchObject({ op: "update", new: { name: "late" } });
      expect(change!.at).toBeGreaterThan(afterStatement);
    });
  });

  it("a change too large for a payload, or past a transaction's carried ones, wakes a read of the table instead", async () => {
    await withCaptured(async ({ raw, feed }) => {
      const carried: CapturedChange[] = [];
      feed.carry((changes) => carried.push(...changes));
      await feed.read(10);
      const woken = feed.wait(60_000);
      const long = "x".repeat(9000);
      await raw`UPDATE items SET name = ${long} WHERE id = '1'`;
      await woken;
      const [read] = await feed.read(10);
      expect(read?.event).toMatchObject({ op: "update", new: { id: "1", name: long } });
      expect(carried).toEqual([]);
      await feed.consume([read!]);

      // One statement over 150 rows: the first 100 are carried, all 150 are in the table.
      await raw`INSERT INTO items SELECT 'n' || i, 'bulk' FROM generate_series(1, 150) i`;
      await feed.wait(60_000);
      await until(() => carried.length === 100);
      const all = await feed.read(500);
      expect(all).toHaveLength(150);
      expect(all.slice(0, 100)).toEqual(carried);
    });
  });

  it("a change whose notification was lost is caught up from the change table", async () => {
    await withCaptured(async ({ raw, feed, backlog }) => {
      const { cache, events } = recordingCache();
      let lose = 1;
      const lossy: CarryingFeed = {
        ...feed,
        carry: (apply) =>
          feed.carry((changes) => {
            if (lose-- > 0) return;
            apply(changes);
          }),
      };
      const follower = followCapture(cache, lossy, quiet);
      try {
        await follower.caughtUp;
        await until(() => follower.leading);
        await raw`UPDATE items SET name = 'lost' WHERE id = '3'`;
        await until(async () => (await backlog()) === 0);
        expect(events).toEqual([
          {
            table: "items",
            op: "update",
            old: { id: "3", name: "c" },
            new: { id: "3", name: "lost" },
          },
        ]);
        expect(follower.stats().applied).toBe(1);
      } finally {
        await follower.close();
      }
    });
  });

  it("each change is applied once, whether its notification or a read of the table brings it first", async () => {
    await withCaptured(async ({ raw, feed, backlog }) => {
      const { cache, events } = recordingCache();
      const follower = followCapture(cache, feed, quiet);
      try {
        await follower.caughtUp;
        await until(() => follower.leading);
        const syncs: Promise<boolean>[] = [];
        for (let i = 0; i < 40; i++) {
          await raw`UPDATE items SET name = ${`v${i}`} WHERE id = ${String((i % 3) + 1)}`;
          // Each sync reads the table, racing the notifications of the writes before it.
          syncs.push(follower.sync());
        }
        expect(await Promise.all(syncs)).toEqual(syncs.map(() => true));
        await until(async () => (await backlog()) === 0);
        expect(events.map((e) => e.new?.name)).toHaveLength(40);
        expect(new Set(events.map((e) => e.new?.name)).size).toBe(40);
        expect(follower.stats().applied).toBe(40);
      } finally {
        await follower.close();
      }
    });
  });
});
