import { createClient } from "@libsql/client";
import Database from "better-sqlite3";
import pg from "pg";
import postgres from "postgres";
import type { CaptureFeed } from "../../src/core/capture-feed.ts";
import { clientCapture } from "../../src/database/drivers.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { type CaptureFeedFixture, captureFeedConformance } from "../../src/testing/index.ts";
import { requirePostgres } from "../helpers/services.ts";
import { postgresItems, sqliteItems } from "./items-fixture.ts";
import { plainSqliteDriver } from "./outside-driver.ts";

// Every built-in change table held to the capture-feed suite, through both ways a feed is
// had: a data API source's `captureFeed()`, and a query cache's capture installation
// (`clientCapture(client)`, what the Drizzle, Prisma, Kysely and raw SQL caches follow).

interface Opened {
  feed: CaptureFeed;
  close(): Promise<void>;
  /** `items` as the feed names it, where not `items`. */
  table?: string;
}

/** A SQLite file with `items` and the feed `feedOf` opens over it. */
async function sqliteFeed(feedOf: (path: string) => Promise<Opened>): Promise<CaptureFeedFixture> {
  const db = await sqliteItems(false);
  const { feed, close } = await feedOf(db.path);
  return {
    feed,
    table: "items",
    write: db.around,
    close: async () => {
      await feed.close();
      await close();
      db.close();
    },
  };
}

/**
 * The feed of the query cache's capture installation over `client` that captures `table`
 * (a shared PostgreSQL holds other tests' installations too).
 */
async function installedFeed(
  client: unknown,
  close: () => unknown,
  table = "items",
): Promise<Opened> {
  const capture = clientCapture(client);
  if (!capture) throw new Error("no capture for this client");
  const installation = (await capture.installations()).find((i) => i.tables.has(table));
  const feed = installation?.feed?.((t) => installation.tables.get(t));
  if (!feed) throw new Error(`no capture installation of ${table} with a feed`);
  return {
    table,
    feed,
    close: async () => {
      await capture.close?.();
      await close();
    },
  };
}

captureFeedConformance("SQLite, the data API's source", () =>
  sqliteFeed(async (path) => {
    const source = sqliteSource({ path });
    await source.schema();
    return { feed: source.captureFeed(), close: () => source.close() };
  }),
);

captureFeedConformance("SQLite, a query cache's installation (better-sqlite3)", () =>
  sqliteFeed((path) => {
    const client = new Database(path);
    return installedFeed(client, () => client.close());
  }),
);

captureFeedConformance("SQLite, a query cache's installation (libSQL)", () =>
  sqliteFeed((path) => {
    const client = createClient({ url: `file:${path}` });
    return installedFeed(client, () => client.close());
  }),
);

captureFeedConformance("SQLite, the source over a driver written outside edgecache", () =>
  sqliteFeed(async (path) => {
    const driver = plainSqliteDriver(path);
    const source = sqliteSource({ driver });
    await source.schema();
    return {
      feed: source.captureFeed(),
      close: async () => {
        await source.close();
        await driver.close();
      },
    };
  }),
);

const pgService = await requirePostgres();
if (pgService) {
  const { url } = pgService;
  /** A schema of its own with `items` and the feed `feedOf` opens over it. */
  const postgresFeed = async (
    feedOf: (schema: string) => Promise<Opened>,
  ): Promise<CaptureFeedFixture> => {
    const db = await postgresItems(url, false);
    const { feed, close, table = "items" } = await feedOf(db.schema);
    return {
      feed,
      table,
      write: db.around,
      close: async () => {
        await feed.close();
        await close();
        await db.close();
      },
    };
  };

  captureFeedConformance("PostgreSQL, the data API's source", () =>
    postgresFeed(async (schema) => {
      const source = await postgresSource({ url, schema, max: 2 });
      await source.schema();
      return { feed: source.captureFeed(), close: () => source.close() };
    }),
  );

  // Outside `public`, the query caches name a table with its schema.
  captureFeedConformance("PostgreSQL, a query cache's installation (node-postgres)", () =>
    postgresFeed(async (schema) => {
      const client = new pg.Pool({ connectionString: url, max: 2 });
      return installedFeed(client, () => client.end(), `${schema}.items`);
    }),
  );

  captureFeedConformance("PostgreSQL, a query cache's installation (postgres.js)", () =>
    postgresFeed(async (schema) => {
      const client = postgres(url, { max: 2, onnotice: () => {} });
      return installedFeed(client, () => client.end(), `${schema}.items`);
    }),
  );
}
