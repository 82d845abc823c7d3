import type postgres from "postgres";
import { importPeer } from "../../core/errors.ts";
import { reconnectBackoff } from "./driver.ts";

/** postgres.js, an optional peer dependency, loaded and connected as edgecache's pools want it. */

const COMPONENT = "postgres";

/** Connections the source opens by default when it opens its own pool. */
export const DEFAULT_MAX_CONNECTIONS = 10;

/** Seconds to wait for a connection before the source reports the database unavailable. */
const CONNECT_TIMEOUT_S = 5;

/**
 * A postgres.js pool as the source wants one: bounded connect time, notices off, no type
 * fetching (rows come back as plain objects; every conversion is in the select list).
 */
export async function connectPostgres(
  url: string,
  max = DEFAULT_MAX_CONNECTIONS,
): Promise<postgres.Sql> {
  const postgres = await loadPostgres();
  return postgres(url, {
    max,
    connect_timeout: CONNECT_TIMEOUT_S,
    backoff: reconnectBackoff,
    onnotice: () => {},
    fetch_types: false,
  });
}

/** Loads postgres.js, which is an optional peer dependency. */
export async function loadPostgres(): Promise<typeof postgres> {
  const loaded = await importPeer(
    () => import("postgres"),
    COMPONENT,
    "install postgres.js to use a PostgreSQL database: npm install postgres",
  );
  return loaded.default;
}
