import { unref } from "../../core/capture-feed.ts";
import { Turns } from "../../core/turns.ts";
import type { PgCapturePort } from "./change-table.ts";
import type { NodePostgresLike } from "./node-postgres-driver.ts";

/** How long the listening connection waits before it connects again after a break, ms. */
const RELISTEN_MS = 250;

/** A node-postgres `Client` as far as capture uses one. */
interface PgClient {
  connect(): Promise<unknown>;
  query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  end(): Promise<void>;
  on(event: "notification", f: (n: { channel: string; payload?: string }) => void): unknown;
  on(event: "error" | "end", f: () => void): unknown;
}

type PgClientClass = new (config: unknown) => PgClient;

/**
 * node-postgres (`pg`) as the capture feed's client: statements on the application's
 * `Pool` or `Client`, and two connections of capture's own, made by the application's
 * `pg` with its settings (a Pool's `options`, a Client's connection parameters): one that
 * LISTENs (a pool's connections come and go, so a LISTEN on one is lost), and the
 * consumer's, which holds its lock. Both are opened again after a break.
 */
export function nodePostgresCapturePort(pg: NodePostgresLike): PgCapturePort {
  const app = pg as unknown as {
    Client?: PgClientClass;
    options?: object;
    connectionParameters?: object;
    constructor: PgClientClass;
  };
  const pool = "totalCount" in pg;
  const Client = pool ? app.Client! : app.constructor;
  const config = pool ? app.options : app.connectionParameters;
  const open = async (): Promise<PgClient> => {
    const client = new Client(config);
    // A broken connection is noticed by its next query, or by "end".
    client.on("error", () => {});
    await client.connect();
    return client;
  };
  return {
    async query(sql, params = []) {
      const result = await pg.query(sql, [...params]);
      return (Array.isArray(result) ? result.at(-1)! : result).rows;
    },

    async listen(channel, onPayload, onListen) {
      let current: PgClient | undefined;
      let stopped = false;
      const start = async (): Promise<void> => {
        const client = await open();
        client.on("notification", (n) => {
          if (n.channel === channel) onPayload(n.payload ?? "");
        });
        client.on("end", () => {
          if (stopped || current !== client) return;
          current = undefined;
          // Until it listens again, changes are found by the feed's reads of the table.
          const again = () => {
            if (stopped) return;
            start().catch(() => unref(setTimeout(again, RELISTEN_MS)));
          };
          unref(setTimeout(again, RELISTEN_MS));
        });
        await client.query(`LISTEN "${channel.replaceAll('"', '""')}"`);
        if (stopped) {
          await client.end().catch(() => {});
          return;
        }
        current = client;
        onListen();
      };
      await start();
      return {
        async unlisten() {
          stopped = true;
          await current?.end().catch(() => {});
          current = undefined;
        },
      };
    },

    own() {
      let client: Promise<PgClient> | undefined;
      const connection = () => {
        if (client) return client;
        const opening = open().then((c) => {
          // The lock went with the connection: the next use opens another.
          c.on("end", () => {
            if (client === opening) client = undefined;
          });
          return c;
        });
        client = opening;
        opening.catch(() => {
          if (client === opening) client = undefined;
        });
        return opening;
      };
      // One statement at a time: the consumer's reads, deletes and its lock's checks come
      // from several callers at once, and node-postgres deprecates queueing on one Client
      // (its warning would land in the application's output).
      const turns = new Turns();
      return {
        query(sql, params = []) {
          return turns.run(async () => (await (await connection()).query(sql, [...params])).rows);
        },
        async end() {
          const c = await client?.catch(() => undefined);
          client = undefined;
          await c?.end();
        },
      };
    },
  };
}
