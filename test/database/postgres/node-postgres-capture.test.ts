import pg from "pg";
import postgres from "postgres";
import { expect, it } from "vitest";
import type { CapturedChange, CarryingFeed } from "../../../src/core/capture-feed.ts";
import { postgresCaptureFeed } from "../../../src/database/postgres/change-table.ts";
import { nodePostgresCapturePort } from "../../../src/database/postgres/node-postgres-capture.ts";
import { postgresSource } from "../../../src/sources/postgres.ts";
import { until } from "../../helpers/cluster.ts";
import { withPostgresDatabase } from "../../helpers/postgres.ts";
import { requirePostgres } from "../../helpers/services.ts";

// PostgreSQL's capture feed on an application's node-postgres Pool or Client: capture's
// LISTEN and the consumer's lock on connections of its own, opened again after a break.

const server = await requirePostgres();

/** A database with a captured table `items` (id, name) and a feed on a node-postgres client. */
async function withFeed(
  on: "pool" | "client",
  use: (db: { raw: postgres.Sql; feed: CarryingFeed }) => Promise<void>,
) {
  await withPostgresDatabase(server.url, "ec_nodepg", async (url, drop) => {
    const raw = postgres(url, { max: 1, onnotice: () => {} });
    await raw.unsafe("CREATE TABLE items (id text PRIMARY KEY, name text NOT NULL)");
    const source = await postgresSource({ url, max: 1 });
    await source.installCapture();
    await source.close();
    const app =
      on === "pool"
        ? new pg.Pool({ connectionString: url, max: 2 })
        : new pg.Client({ connectionString: url });
    // As an application does: a terminated session is reported, not thrown.
    (app as pg.Client).on("error", () => {});
    if (app instanceof pg.Client) await app.connect();
    const feed = postgresCaptureFeed(nodePostgresCapturePort(app), "public", () => ["id", "name"]);
    try {
      await use({ raw, feed: feed as CarryingFeed });
    } finally {
      await feed.close();
      await app.end();
      await raw.end();
      await drop();
    }
  });
}

for (const on of ["pool", "client"] as const) {
  server.describe(`PostgreSQL capture on a node-postgres ${on}`, () => {
    it("leads, and a change's NOTIFY carries it as the change table holds it", async () => {
      await withFeed(on, async ({ raw, feed }) => {
        const carried: CapturedChange[] = [];
        feed.carry((changes) => carried.push(...changes));
        expect(await feed.installed()).toBe(true);
        expect(await feed.lead()).toBe(true);
        expect(await feed.read(10)).toEqual([]); // starts listening
        await raw`INSERT INTO items VALUES ('1', 'a')`;
        await raw`UPDATE items SET name = 'b' WHERE id = '1'`;
        await until(() => carried.length === 2);
        expect(carried).toEqual(await feed.read(10));
        expect(carried.map((c) => c.event)).toEqual([
          { table: "items", op: "insert", new: { id: "1", name: "a" } },
          {
            table: "items",
            op: "update",
            old: { id: "1", name: "a" },
            new: { id: "1", name: "b" },
          },
        ]);
        await feed.consume(carried);
        expect(await feed.pending()).toBe(false);
      });
    });

    it("its own connections terminated: it listens and leads again, and misses no change", async () => {
      await withFeed(on, async ({ raw, feed }) => {
        const carried: CapturedChange[] = [];
        feed.carry((changes) => carried.push(...changes));
        expect(await feed.lead()).toBe(true);
        await feed.read(10);
        // Every other session of this database: the LISTEN's, the lock's, the app's.
        await raw`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()`;
        // Committed while nobody listens: only in the change table.
        await raw`INSERT INTO items VALUES ('2', 'lost')`;
        await until(async () => (await feed.lead().catch(() => false)) === true);
        const [read] = await until2(() => feed.read(10).catch(() => [] as CapturedChange[]));
        expect(read?.event).toEqual({
          table: "items",
          op: "insert",
          new: { id: "2", name: "lost" },
        });
        await feed.consume([read!]);
        // Listening again: once a read found the table caught up, a later change is carried.
        await until(async () => {
          await feed.consume(await feed.read(10));
          await raw`UPDATE items SET name = 'found' WHERE id = '2'`;
          await new Promise((r) => setTimeout(r, 100));
          return carried.some((c) => c.event.new?.name === "found");
        });
      });
    });
  });
}

/** Calls `read` until it returns some changes. */
async function until2<T>(read: () => Promise<T[]>): Promise<T[]> {
  let got: T[] = [];
  await until(async () => {
    got = await read();
    return got.length > 0;
  });
  return got;
}

server.describe("capture's own connection on node-postgres", () => {
  it("sends capture's own statements one at a time", async () => {
    // node-postgres queues a query sent while its Client runs one, and deprecates doing so
    // (a DeprecationWarning in the application's output): the consumer's statements come
    // from several callers at once, so its connection must take them in turns.
    let running = 0;
    let most = 0;
    class Counting extends pg.Client {
      // biome-ignore lint/suspicious/noExplicitAny: pg's query has many overloads
      override query(...args: any[]): any {
        running++;
        most = Math.max(most, running);
        // biome-ignore lint/suspicious/noExplicitAny: as above
        const done = (super.query as any)(...args) as Promise<unknown>;
        return done.finally(() => running--);
      }
    }
    const pool = new pg.Pool({ connectionString: server.url, max: 2, Client: Counting });
    const own = nodePostgresCapturePort(pool).own!();
    try {
      const answers = await Promise.all(
        [1, 2, 3, 4].map((n) => own.query("SELECT $1::int AS n, pg_sleep(0.01)", [n])),
      );
      expect(answers.map((rows) => rows[0]!.n)).toEqual([1, 2, 3, 4]);
      expect(most).toBe(1);
    } finally {
      await own.end();
      await pool.end();
    }
  });
});
