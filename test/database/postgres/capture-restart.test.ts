import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createNodeEdgecache } from "../../../src/adapter/node/modes/data-api.ts";
import { postgresSource } from "../../../src/sources/postgres.ts";
import { type PrivatePostgres, startPrivatePostgres } from "../../helpers/private-postgres.ts";
import { requirePostgresServer } from "../../helpers/services.ts";

// A node over PostgreSQL while the database restarts under load: the node never exits,
// answers hits from memory and everything else 503 E_SOURCE_UNAVAILABLE with Retry-After
// while the database is away, and afterwards serves misses and follows capture again. The
// database is a private cluster: the shared one is never stopped.

/** Each request's bound: a request still open after it counts as hung. */
const REQUEST_LIMIT_MS = 10_000;

interface Tally {
  statuses: Map<string, number>;
  unexpected: string[];
}

const server = await requirePostgresServer();
server.describe("a PostgreSQL restart under load", () => {
  let pg: PrivatePostgres;
  let admin: postgres.Sql;
  beforeAll(async () => {
    pg = await startPrivatePostgres();
    admin = postgres(pg.url, { max: 1, onnotice: () => {} });
  }, 60_000);
  afterAll(async () => {
    await admin?.end({ timeout: 1 }).catch(() => {});
    pg?.destroy();
  });

  // A fast stop ends each session with an error first (57P01); an immediate one drops them.
  it.each([
    ["without capture, a fast stop", false, "fast"],
    ["with capture installed, an immediate stop", true, "immediate"],
  ] as const)(
    "%s: the node survives, answers 503 with Retry-After while the database is away, then serves and follows capture again",
    async (_, capture, mode) => {
      const name = `restart_${capture ? "capture" : "plain"}`;
      await admin.unsafe(`CREATE DATABASE ${name}`);
      const url = new URL(pg.url);
      url.pathname = `/${name}`;
      const dir = mkdtempSync(join(tmpdir(), "edgecache-pg-restart-"));
      const node = await createNodeEdgecache({
        cwd: dir,
        demoDatabase: url.href,
        demo: { users: 40, orders: 80 },
        cacheFile: false,
        logLevel: "silent",
      });
      const { url: base, close: closeServer } = await node.listen();
      const direct = postgres(url.href, { max: 1, onnotice: () => {} });
      try {
        if (capture) {
          const source = await postgresSource({ url: url.href, max: 1 });
          await source.installCapture();
          await source.close();
          await until(() => node.capture?.installed === true);
        }
        const ids = (await direct.unsafe("SELECT id FROM users ORDER BY id")).map((r) =>
          String(r.id),
        );
        // Hits from memory through the outage: these users are read once before it.
        for (const id of ids.slice(0, 5)) await (await fetch(`${base}/v1/users/${id}`)).text();

        const tally: Tally = { statuses: new Map(), unexpected: [] };
        let running = true;
        const load = Array.from({ length: 4 }, (_, worker) =>
          (async () => {
            for (let i = 0; running; i++) await request(base, ids, worker, i, tally);
          })(),
        );
        await sleep(300);
        pg.stop(mode);
        await sleep(300);
        pg.start();
        const back = performance.now();
        // Until a miss is served again, then a little longer under load.
        let recoveredMs: number | undefined;
        while (recoveredMs === undefined && performance.now() - back < 30_000) {
          const r = await fetch(`${base}/v1/users?limit=${1 + Math.floor(Math.random() * 30)}`, {
            signal: AbortSignal.timeout(REQUEST_LIMIT_MS),
          }).catch(() => undefined);
          if (r?.status === 200) recoveredMs = performance.now() - back;
          await r?.body?.cancel();
          if (recoveredMs === undefined) await sleep(20);
        }
        await sleep(500);
        running = false;
        await Promise.all(load);
        console.log(
          `[pg restart ${capture ? "with" : "without"} capture] misses served again ${Math.round(recoveredMs ?? -1)} ms after the database was back; replies: ${JSON.stringify(Object.fromEntries(tally.statuses))}`,
        );
        expect(tally.unexpected).toEqual([]);
        expect(recoveredMs).toBeDefined();
        // The outage was seen: without it this test would prove nothing.
        expect(tally.statuses.get("503") ?? 0).toBeGreaterThan(0);
        expect(tally.statuses.get("200") ?? 0).toBeGreaterThan(0);

        if (capture) {
          // A write around edgecache after the restart reaches the node through capture, and
          // the change table drains.
          const id = ids[7]!;
          await (await fetch(`${base}/v1/users/${id}`)).text();
          await direct.unsafe(`UPDATE users SET "lastName" = 'AfterRestart' WHERE id = $1`, [id]);
          await until(async () => {
            const r = await fetch(`${base}/v1/users/${id}`);
            return ((await r.json()) as { lastName?: string }).lastName === "AfterRestart";
          });
          await until(async () => {
            const [row] = await direct.unsafe("SELECT count(*)::int AS n FROM edgecache.changes");
            return row?.n === 0;
          });
        }
      } finally {
        await direct.end({ timeout: 1 }).catch(() => {});
        await closeServer(100);
        await node.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
    90_000,
  );
});

/** One request of the load: reads of cached users, reads that miss, and writes. */
async function request(
  base: string,
  ids: string[],
  worker: number,
  i: number,
  tally: Tally,
): Promise<void> {
  const kind = i % 4;
  const id = ids[(worker * 7 + i) % ids.length];
  const [path, init]: [string, RequestInit] =
    kind === 0
      ? [`/v1/users/${ids[i % 5]}`, {}]
      : kind === 1
        ? [`/v1/orders?userId=${id}&limit=${1 + (i % 20)}`, {}]
        : kind === 2
          ? [
              `/v1/users/${id}`,
              {
                method: "PATCH",
                headers: { "content-type": "application/json" },
                body: JSON.stringify({ firstName: `W${worker}-${i}` }),
              },
            ]
          : [`/v1/users?offset=${i % 30}&limit=3`, {}];
  try {
    const r = await fetch(`${base}${path}`, {
      ...init,
      signal: AbortSignal.timeout(REQUEST_LIMIT_MS),
    });
    const text = await r.text();
    const status = String(r.status);
    tally.statuses.set(status, (tally.statuses.get(status) ?? 0) + 1);
    if (r.status === 503) {
      const code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
      if (code !== "E_SOURCE_UNAVAILABLE" || r.headers.get("retry-after") === null) {
        tally.unexpected.push(`${init.method ?? "GET"} ${path}: 503 ${code} ${text}`);
      }
    } else if (r.status !== 200 && r.status !== 304) {
      tally.unexpected.push(`${init.method ?? "GET"} ${path}: ${r.status} ${text}`);
    }
  } catch (error) {
    // A refused connection: the node is gone. A timeout: the request hung.
    tally.unexpected.push(`${init.method ?? "GET"} ${path}: ${String(error)}`);
    await sleep(50);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await sleep(25);
  }
}
