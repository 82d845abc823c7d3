/**
 * The app's Drizzle database, with edgecache or without, as docs/guides/drizzle.md's quick
 * start sets it up.
 */
import type { Client } from "@libsql/client";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql";
import {
  drizzleCache,
  type EdgecacheDrizzleCache,
  withTransactions,
} from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { countingClient, type StatementCounts } from "./counting.ts";
import { openDatabase } from "./migrate.ts";
import { schema } from "./schema.ts";

export type ConduitDb = LibSQLDatabase<typeof schema> & { $client: Client };

export interface ConduitDatabase {
  db: ConduitDb;
  /** edgecache's Drizzle cache, when cached. */
  cache: EdgecacheDrizzleCache | undefined;
  /** Statements sent through the app's client so far. */
  statements: StatementCounts;
  close(): Promise<void>;
}

export async function openConduitDb(options: {
  url: string;
  cached: boolean;
}): Promise<ConduitDatabase> {
  const raw = await openDatabase(options.url);
  // Uncached, the floor a perfect cache could reach is counted too (see StatementCounts).
  const statements: StatementCounts = {
    app: 0,
    edgecache: 0,
    ...(!options.cached && { floor: 0, seen: new Set<string>() }),
  };
  const client: Client = countingClient(raw, statements);
  if (!options.cached) {
    const db = drizzle(client, { schema });
    return { db, cache: undefined, statements, close: async () => raw.close() };
  }
  const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
  const db = withTransactions(drizzle(client, { schema, cache }));
  return {
    db,
    cache,
    statements,
    async close() {
      await cache.close();
      raw.close();
    },
  };
}
