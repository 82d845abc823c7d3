import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { promisify } from "node:util";
import { describe, it } from "vitest";

const execFileAsync = promisify(execFile);
/** How long one probe waits for a service's answer. */
const PROBE_TIMEOUT_MS = 1000;
/**
 * How long a service that does not answer in time is asked again before it is called
 * unreachable: on a loaded machine a first connection can take seconds (the suite at its
 * busiest, beside other work). One that refuses the connection is unreachable at once.
 */
const PROBE_DEADLINE_MS = 20_000;

/** CI sets CI=true (or 1): there a missing service is a failure, never a skip. */
export const inCi = /^(1|true)$/i.test(process.env.CI ?? "");

export interface RequiredService {
  url: string;
  reachable: boolean;
  /**
   * `describe` when the service answers. When it does not: in CI a suite with one failing
   * test that says so, elsewhere a skipped suite whose name says how to start it.
   */
  describe: (name: string, body: () => void) => void;
}

/**
 * A Redis store's commandTimeout in tests of anything but that timeout. The default (500 ms)
 * is a fault a loaded machine causes now and then (load 13 on 2 cores: a Cluster's setMany
 * got no reply within it), which a conformance case would report as the store's.
 */
export const UNHURRIED_COMMAND_MS = 10_000;

/**
 * Probes the shared Redis once, at module top level (`await requireRedis()`), so the tests
 * that need it are skipped or failed honestly instead of timing out.
 *
 * @example
 * ```ts
 * const redis = await requireRedis();
 * redis.describe("redis store", () => { ... redis.url ... });
 * ```
 */
export async function requireRedis(url = "redis://127.0.0.1:6379"): Promise<RequiredService> {
  const problem = await patiently(() => pingRedis(url));
  const start = 'redis-server --daemonize yes --port 6379 --save "" --appendonly no';
  return required(
    url,
    problem,
    `Redis at ${url} is not reachable (${problem}); start it: ${start}`,
  );
}

/**
 * Probes the shared PostgreSQL once (`await requirePostgres()`), like `requireRedis`: in CI
 * an unreachable server fails the suite, elsewhere it is skipped with how to start it.
 */
export async function requirePostgres(
  url = process.env.EDGECACHE_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/test",
): Promise<RequiredService> {
  const problem = await patiently(() => pingPostgres(url));
  const start = "service postgresql start (trust auth for 127.0.0.1, a database named test)";
  return required(
    url,
    problem,
    `PostgreSQL at ${url} is not reachable (${problem}); start it: ${start}`,
  );
}

/** `ping`'s answer, asked again while it only ran out of time, up to PROBE_DEADLINE_MS. */
async function patiently(ping: () => Promise<string | undefined>): Promise<string | undefined> {
  const deadline = Date.now() + PROBE_DEADLINE_MS;
  for (;;) {
    const problem = await ping();
    if (problem === undefined || !/timeout|timed out|no reply/i.test(problem)) return problem;
    if (Date.now() >= deadline) return problem;
  }
}

/** Runs `select 1`; resolves undefined when it answers, else what went wrong. */
async function pingPostgres(url: string): Promise<string | undefined> {
  const { default: pg } = await import("pg");
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: PROBE_TIMEOUT_MS,
  });
  try {
    await client.connect();
    await client.query("select 1");
    return undefined;
  } catch (error) {
    return (error as Error).message || String(error);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Checks that `redis-server` can be run, for tests that start servers of their own. */
export async function requireRedisServer(): Promise<RequiredService> {
  const problem = await execFileAsync("redis-server", ["--version"]).then(
    () => undefined,
    (error: Error) => error.message,
  );
  const install = "apt-get install -y redis-server";
  return required("", problem, `redis-server cannot be run (${problem}); install it: ${install}`);
}

/** Checks that a PostgreSQL cluster of a test's own can be made (initdb), for fault tests. */
export async function requirePostgresServer(): Promise<RequiredService> {
  const { postgresBin } = await import("./private-postgres.ts");
  const problem = postgresBin() ? undefined : "no initdb under /usr/lib/postgresql";
  const install = "apt-get install -y postgresql";
  return required("", problem, `initdb cannot be run (${problem}); install it: ${install}`);
}

/** The Debian `chromium` binary (or CHROMIUM_PATH), for the dashboard's browser test. */
export function requireChromium(
  path = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
): RequiredService {
  const problem = existsSync(path) ? undefined : `no ${path}`;
  const install = "apt-get install -y chromium";
  return required(path, problem, `Chromium cannot be run (${problem}); install it: ${install}`);
}

/**
 * The built package (dist/), for tests that import edgecache by its package name, as a user
 * does: `npm test` builds it first (`npm run check`), a lone `vitest run` may not have.
 */
export function requireBuild(
  file = new URL("../../dist/testing/index.js", import.meta.url),
): RequiredService {
  const problem = existsSync(file) ? undefined : `no ${file.pathname}`;
  const build = "npm run build (npm test does)";
  return required("", problem, `the package is not built (${problem}); build it: ${build}`);
}

/** Sends PING over a raw socket; resolves undefined on PONG, else what went wrong. */
export function pingRedis(url: string): Promise<string | undefined> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname || "127.0.0.1", port: Number(port || 6379) });
    let reply = "";
    const done = (problem: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(problem);
    };
    const timer = setTimeout(
      () => done(`no reply within ${PROBE_TIMEOUT_MS} ms`),
      PROBE_TIMEOUT_MS,
    );
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1");
      if (reply.includes("\r\n")) {
        done(reply.startsWith("+PONG") ? undefined : `replied ${JSON.stringify(reply.trim())}`);
      }
    });
    socket.on("error", (error) => done(error.message));
  });
}

function required(url: string, problem: string | undefined, message: string): RequiredService {
  if (problem === undefined) return { url, reachable: true, describe };
  if (inCi) {
    return {
      url,
      reachable: false,
      describe: (name) =>
        describe(name, () => {
          it("needs its service", () => {
            throw new Error(message);
          });
        }),
    };
  }
  console.warn(`[skipped] ${message}`);
  return {
    url,
    reachable: false,
    describe: (name, body) => describe.skip(`${name} (skipped: ${message})`, body),
  };
}
