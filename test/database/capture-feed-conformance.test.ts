import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
import { plainSqliteDriver } from "./outside-driver.ts";

// Every built-in change table held to the capture-feed suite, through both ways a feed is
// had: a data API source's `captureFeed()`, and a query cache's capture installation
// (`clientCapture(client)`, what the Drizzle, Prisma, Kysely and raw SQL caches follow).

const ITEMS = "create table items (id integer primary key, name text)";

/** A SQLite file with `items`, capture installed by the source, and writes on a connection of their own. */
async function sqliteFile(
  feedOf: (path: string) => Promise<{ feed: CaptureFeed; close(): Promise<void> }>,
): Promise<CaptureFeedFixture> {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-feed-"));
  const path = join(dir, "db.sqlite");
  const around = new Database(path);
  around.exec(`PRAGMA journal_mode = WAL; ${ITEMS}`);
  const installer = sqliteSource({ path });
  await installer.installCapture();
  await installer.close();
  const { feed, close } = await feedOf(path);
  return {
    feed,
    table: "items",
    write: async (op, id, name) => {
      if (op === "insert") around.prepare("insert into items values (?, ?)").run(id, name);
      else if (op === "update")
        around.prepare("update items set name = ? where id = ?").run(name, id);
      else around.prepare("delete from items where id = ?").run(id);
    },
    close: async () => {
      await feed.close();
      await close();
      around.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The feed of a query cache's capture installation over `client` (the first one). */
async function installedFeed(
  client: unknown,
): Promise<{ feed: CaptureFeed; close(): Promise<void> }> {
  const capture = clientCapture(client);
  if (!capture) throw new Error("no capture for this client");
  const [installation] = await capture.installations();
  const feed = installation?.feed?.((t) => installation.tables.get(t));
  if (!feed) throw new Error("no capture installation with a feed");
  return { feed, close: async () => void (await capture.close?.()) };
}

captureFeedConformance("SQLite, the data API's source", () =>
  sqliteFile(async (path) => {
    const source = sqliteSource({ path });
    await source.schema();
    return { feed: source.captureFeed(), close: () => source.close() };
  }),
);

captureFeedConformance("SQLite, a query cache's installation (better-sqlite3)", () =>
  sqliteFile(async (path) => {
    const client = new Database(path);
    const { feed, close } = await installedFeed(client);
    return {
      feed,
      close: async () => {
        await close();
        client.close();
      },
    };
  }),
);

captureFeedConformance("SQLite, a query cache's installation (libSQL)", () =>
  sqliteFile(async (path) => {
    const client = createClient({ url: `file:${path}` });
    const { feed, close } = await installedFeed(client);
    return {
      feed,
      close: async () => {
        await close();
        client.close();
      },
    };
  }),
);

captureFeedConformance("SQLite, the source over a driver written outside edgecache", () =>
  sqliteFile(async (path) => {
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
  /** A schema of its own with `items`, capture installed by the source, and writes on another connection. */
  const postgresSchema = async (
    feedOf: (
      schema: string,
    ) => Promise<{ feed: CaptureFeed; close(): Promise<void>; table?: string }>,
  ): Promise<CaptureFeedFixture> => {
    const schema = `ec_feed_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`;
    const admin = postgres(pgService.url, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create schema ${schema}; ${ITEMS.replace("items", `${schema}.items`)}`);
    const installer = await postgresSource({ url: pgService.url, schema, max: 1 });
    await installer.installCapture();
    await installer.close();
    const { feed, close, table = "items" } = await feedOf(schema);
    const t = `${schema}.items`;
    return {
      feed,
      table,
      write: async (op, id, name) => {
        if (op === "insert") await admin.unsafe(`insert into ${t} values ($1, $2)`, [id, name!]);
        else if (op === "update")
          await admin.unsafe(`update ${t} set name = $1 where id = $2`, [name!, id]);
        else await admin.unsafe(`delete from ${t} where id = $1`, [id]);
      },
      close: async () => {
        await feed.close();
        await close();
        await admin.unsafe(`drop schema if exists ${schema} cascade`);
        await admin.unsafe(`drop schema if exists edgecache_${schema} cascade`);
        await admin.end();
      },
    };
  };

  captureFeedConformance("PostgreSQL, the data API's source", () =>
    postgresSchema(async (schema) => {
      const source = await postgresSource({ url: pgService.url, schema, max: 2 });
      await source.schema();
      return { feed: source.captureFeed(), close: () => source.close() };
    }),
  );

  captureFeedConformance("PostgreSQL, a query cache's installation (node-postgres)", () =>
    postgresSchema(async (schema) => {
      const client = new pg.Pool({ connectionString: pgService.url, max: 2 });
      const { feed, close } = await installedFeed(client);
      return {
        feed,
        table: `${schema}.items`,
        close: async () => {
          await close();
          await client.end();
        },
      };
    }),
  );

  captureFeedConformance("PostgreSQL, a query cache's installation (postgres.js)", () =>
    postgresSchema(async (schema) => {
      const client = postgres(pgService.url, { max: 2, onnotice: () => {} });
      const { feed, close } = await installedFeed(client);
      return {
        feed,
        // Outside `public`, the query caches name a table with its schema.
        table: `${schema}.items`,
        close: async () => {
          await close();
          await client.end();
        },
      };
    }),
  );
}
