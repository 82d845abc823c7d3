import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TAGS_UNCOUNTED } from "../../src/app/proxy/purge.ts";
import { type Harness, startEdgecache, tempDir } from "../app/harness.ts";
import { type Origin, type ProxyHarness, startOrigin, startProxy } from "../app/proxy/harness.ts";
import { cli, startOnce } from "./run-cli.ts";

// The admin commands run as the real binary against a real node listening on a port: what
// they print, what they change in the node's cache, and the exit codes scripts rely on.

const TOKEN = "cli-admin-token";
let h: Harness;
let url: string;
let ids: string[];
/** The flags that reach the node, the way a script would pass them. */
let env: Record<string, string>;

beforeAll(async () => {
  // No rehydration: an invalidated hot entry would be refetched at once, and these tests
  // look for the entries a command removed.
  h = await startEdgecache({ adminToken: TOKEN, rehydrate: false });
  ({ url } = await h.edgecache.listen());
  ids = h.fresh("SELECT id FROM users ORDER BY id LIMIT 3").map((r) => String(r.id));
  env = { EDGECACHE_URL: url, EDGECACHE_ADMIN_TOKEN: TOKEN };
});
afterAll(() => h.close());

const get = (path: string) => fetch(`${url}${path}`).then((r) => r.text());
const cached = (key: string) => h.edgecache.cache.peek(key) !== undefined;

/** One line on stderr, nothing on stdout: what every failure looks like. */
function expectOneLineError(r: { stdout: string; stderr: string }, pattern: RegExp) {
  expect(r.stdout).toBe("");
  expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(r.stderr.trimEnd()).toMatch(pattern);
}

describe("stats", () => {
  it("prints the node's counters as a table, and as the admin API's JSON with --json", async () => {
    await get(`/v1/users/${ids[0]}`);
    await get(`/v1/users/${ids[0]}`);
    const json = await cli(["stats", "--json"], { env });
    expect(json.code).toBe(0);
    const stats = JSON.parse(json.stdout);
    const now = h.edgecache.cache.stats();
    expect(stats.hits).toBe(now.hits);
    expect(stats.hits).toBeGreaterThanOrEqual(1);
    expect(stats.hitRate).toBe(now.hitRate);
    expect(stats.hitRate).toBeGreaterThan(0);
    expect(stats.tiers.map((t: { name: string }) => t.name)).toEqual(["memory", "sqlite"]);

    const text = await cli(["stats"], { env });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`reads\\s+${now.hits + now.misses}: ${now.hits} hits`));
    expect(text.stdout).toMatch(/ bypasses; hit rate \d+\.\d%$/m);
    expect(text.stdout).toMatch(/^TIER\s+HITS\s+MISSES\s+HIT RATE/m);
    expect(text.stdout).toMatch(/^memory\s+\d+/m);
  }, 30_000);
});

describe("keys", () => {
  it("lists cached keys with their dependencies, filtered by prefix or tag", async () => {
    await get(`/v1/users/${ids[1]}`);
    await get("/v1/users?limit=2");
    const all = await cli(["keys", "--json"], { env });
    expect(all.code).toBe(0);
    const listed = JSON.parse(all.stdout).keys.map((k: { key: string }) => k.key);
    expect(listed).toEqual(
      expect.arrayContaining([`GET /v1/users/${ids[1]}`, "GET /v1/users?limit=2"]),
    );

    const byTag = await cli(["keys", "--tag", `users#${ids[1]}`, "--json"], { env });
    const tagged = JSON.parse(byTag.stdout).keys.map((k: { key: string }) => k.key);
    // The row itself and the list whose first two rows include it.
    expect(tagged.sort()).toEqual([`GET /v1/users/${ids[1]}`, "GET /v1/users?limit=2"].sort());

    const table = await cli(["keys", "--prefix", "GET /v1/users?"], { env });
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^KEY\s+HITS\s+SIZE\s+AGE\s+TTL\s+DEPENDS ON$/m);
    expect(table.stdout).toContain("GET /v1/users?limit=2");
    expect(table.stdout).not.toContain(`GET /v1/users/${ids[1]}`);
  }, 30_000);

  it("inspects one key: the tiers holding it, its tags and its list window", async () => {
    await get("/v1/users?limit=2");
    const r = await cli(["keys", "GET /v1/users?limit=2"], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/tiers:\s+memory yes, sqlite yes/);
    expect(r.stdout).toContain(`users#${ids[0]}`);
    expect(r.stdout).toMatch(/list:\s+users, all rows, sorted by id, offset 0 limit 2 \(2 held\)/);
  }, 30_000);

  it("a key that is not cached: one line and exit 5", async () => {
    const r = await cli(["keys", "GET /v1/users/nobody-at-all"], { env });
    expect(r.code).toBe(5);
    expectOneLineError(r, /^edgecache keys: key "GET \/v1\/users\/nobody-at-all" is not cached$/);
  }, 30_000);
});

describe("invalidate", () => {
  it("--row table:id removes the entries holding that row and nothing else", async () => {
    const [a, b] = [ids[0]!, ids[1]!];
    await get(`/v1/users/${a}`);
    await get(`/v1/users/${b}`);
    expect(cached(`GET /v1/users/${a}`)).toBe(true);
    const r = await cli(["invalidate", "--row", `users:${a}`], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^invalidated [1-9]\d* entr(y|ies)\n$/);
    expect(cached(`GET /v1/users/${a}`)).toBe(false);
    expect(cached(`GET /v1/users/${b}`)).toBe(true);
  }, 30_000);

  it("--key (repeated), --tag, --prefix and --table, each counted in --json", async () => {
    const paths = [`/v1/users/${ids[0]}`, `/v1/users/${ids[1]}`, `/v1/users/${ids[2]}`];
    for (const p of [...paths, "/v1/orders?limit=1", "/v1/users?limit=1"]) await get(p);
    const keys = await cli(
      ["invalidate", "--key", `GET ${paths[0]}`, "--key", `GET ${paths[1]}`, "--json"],
      { env },
    );
    expect(JSON.parse(keys.stdout)).toEqual({ invalidated: 2 });
    expect(cached(`GET ${paths[2]}`)).toBe(true);

    const tag = await cli(["invalidate", "--tag", `users#${ids[2]}`, "--json"], { env });
    expect(JSON.parse(tag.stdout).invalidated).toBeGreaterThanOrEqual(1);
    expect(cached(`GET ${paths[2]}`)).toBe(false);

    // The users page keeps the rows after its window (for patches): a tag of one of them
    // dropped it too. Cached again, it must outlive the orders table's invalidation.
    await get("/v1/users?limit=1");
    expect(cached("GET /v1/users?limit=1")).toBe(true);
    const table = await cli(["invalidate", "--table", "orders", "--json"], { env });
    expect(JSON.parse(table.stdout).invalidated).toBeGreaterThanOrEqual(1);
    expect(cached("GET /v1/orders?limit=1")).toBe(false);
    expect(cached("GET /v1/users?limit=1")).toBe(true);

    const prefix = await cli(["invalidate", "--prefix", "GET /v1/users?", "--json"], { env });
    expect(JSON.parse(prefix.stdout).invalidated).toBeGreaterThanOrEqual(1);
    expect(cached("GET /v1/users?limit=1")).toBe(false);
  }, 60_000);

  it("usage errors exit 2 with one line and send nothing", async () => {
    await get(`/v1/users/${ids[0]}`);
    const none = await cli(["invalidate"], { env });
    expect(none.code).toBe(2);
    expectOneLineError(none, /^edgecache invalidate: expected one of --key, --prefix, --tag/);
    const typo = await cli(["invalidate", "--prefx", "GET /"], { env });
    expect(typo.code).toBe(2);
    expectOneLineError(
      typo,
      /^edgecache invalidate: unknown option --prefx \(did you mean --prefix\?\)$/,
    );
    const row = await cli(["invalidate", "--row", "users"], { env });
    expect(row.code).toBe(2);
    expectOneLineError(row, /--row: expected table:id such as users:123, got "users"/);
    expect(cached(`GET /v1/users/${ids[0]}`)).toBe(true);
  }, 30_000);
});

describe("warm", () => {
  it("fetches URLs from arguments and a file, then summarizes; a failed URL makes exit 1", async () => {
    const dir = tempDir();
    try {
      const file = join(dir, "urls.txt");
      writeFileSync(file, `# hot lists\n/v1/users?limit=7\n\n/v1/orders?limit=7\n`);
      const fresh = ["GET /v1/users?limit=7", "GET /v1/orders?limit=7", `GET /v1/users/${ids[2]}`];
      await cli(["invalidate", ...fresh.flatMap((k) => ["--key", k])], { env });
      expect(fresh.map(cached)).toEqual([false, false, false]);

      const r = await cli(["warm", `/v1/users/${ids[2]}`, "--file", file], { env });
      expect(r.code).toBe(0);
      expect(fresh.map(cached)).toEqual([true, true, true]);
      expect(r.stdout).toMatch(
        /^warmed 3 URLs in [\d.]+ s: 3 stored, 0 already cached, 0 not stored, 0 failed$/m,
      );
      expect(r.stderr).toContain("warming: 3/3"); // progress, not on a terminal: lines

      const again = await cli(["warm", "/v1/users?limit=7", "/v1/nope", "--json"], { env });
      expect(again.code).toBe(1);
      const summary = JSON.parse(again.stdout);
      expect(summary).toMatchObject({ urls: 2, stored: 0, cached: 1, failed: 1 });
      expect(summary.results[1]).toMatchObject({ url: "/v1/nope", status: 404, outcome: "failed" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("reads URLs from standard input with --file -", async () => {
    await cli(["invalidate", "--key", "GET /v1/users?limit=9"], { env });
    const r = await cli(["warm", "--file", "-"], { env, input: "/v1/users?limit=9\n" });
    expect(r.code).toBe(0);
    expect(cached("GET /v1/users?limit=9")).toBe(true);
  }, 30_000);
});

describe("reaching the node", () => {
  it("--url and --token work as the environment does", async () => {
    const r = await cli(["stats", "--json", "--url", url, "--token", TOKEN]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).tiers).toHaveLength(2);
  }, 30_000);

  it("no token: exit 4 saying how to give one; a wrong token: exit 4", async () => {
    const none = await cli(["stats", "--url", url]);
    expect(none.code).toBe(4);
    expectOneLineError(none, /needs an admin token: pass --token or set EDGECACHE_ADMIN_TOKEN$/);
    const wrong = await cli(["stats", "--url", url, "--token", "nope"]);
    expect(wrong.code).toBe(4);
    expectOneLineError(wrong, /refused the admin token/);
  }, 30_000);

  it("nothing listening: exit 3 saying how to start one", async () => {
    const closed = await startEdgecache({ cacheFile: false });
    const { url: gone } = await closed.edgecache.listen();
    await closed.close();
    const r = await cli(["keys", "--url", gone]);
    expect(r.code).toBe(3);
    expectOneLineError(
      r,
      /^edgecache keys: cannot reach .*ECONNREFUSED.*edgecache serve.*EDGECACHE_URL$/,
    );
  }, 30_000);

  it("a malformed --url is a usage error", async () => {
    const r = await cli(["stats", "--url", "localhost:8787"]);
    expect(r.code).toBe(2);
    expectOneLineError(r, /--url: expected an http\(s\) URL/);
  }, 30_000);
});

describe("--help", () => {
  it("every command describes its flags and exits 0; an unknown command exits 2", async () => {
    const top = await cli(["--help"]);
    expect(top.code).toBe(0);
    for (const name of ["serve", "proxy", "invalidate", "keys", "stats", "warm", "purge", "init"]) {
      expect(top.stdout).toContain(name);
    }
    const flags: Record<string, string[]> = {
      invalidate: ["--key", "--prefix", "--tag", "--table", "--row", "--url", "--token"],
      keys: ["KEY", "--prefix", "--tag", "--json"],
      stats: ["--json", "--url"],
      warm: ["URLS", "--file", "--concurrency"],
      purge: ["URLS", "--tag", "--prefix"],
      init: ["--db", "--origin", "--ttl", "--force"],
    };
    for (const [name, expected] of Object.entries(flags)) {
      const r = await cli([name, "--help"]);
      expect(r.code).toBe(0);
      for (const flag of expected) expect(r.stdout).toContain(flag);
    }
    const unknown = await cli(["bogus"]);
    expect(unknown.code).toBe(2);
    expectOneLineError(unknown, /Unknown command bogus; see edgecache --help/);
  }, 60_000);
});

describe("purge (proxy mode)", () => {
  let origin: Origin;
  let proxy: ProxyHarness;
  beforeAll(async () => {
    origin = await startOrigin((req, res) => {
      const tag = req.url!.startsWith("/a/") ? "group-a" : "group-b";
      res.writeHead(200, { "cache-control": "max-age=600", "surrogate-key": tag });
      res.end(req.url);
    });
    proxy = await startProxy(origin.url, { adminToken: TOKEN, cacheFile: "purge.db" });
  });
  afterAll(async () => {
    await proxy.close();
    await origin.close();
  });
  const hit = async (path: string) =>
    /^edgecache; hit/.test((await fetch(`${proxy.url}${path}`)).headers.get("cache-status") ?? "");
  const penv = () => ({ EDGECACHE_URL: proxy.url, EDGECACHE_ADMIN_TOKEN: TOKEN });

  it("by URL, by origin tag and by prefix, each counted", async () => {
    for (const p of ["/a/1", "/a/2", "/b/1", "/b/2"]) await fetch(`${proxy.url}${p}`);
    const byUrl = await cli(["purge", "/a/1"], { env: penv() });
    expect(byUrl.code).toBe(0);
    expect(byUrl.stdout).toBe("purged 1 response\n");
    expect(await hit("/a/2")).toBe(true);
    const byTag = await cli(["purge", "--tag", "group-b", "--json"], { env: penv() });
    expect(JSON.parse(byTag.stdout)).toEqual({ purged: 2, uncounted: TAGS_UNCOUNTED });
    const byPrefix = await cli(["purge", "--prefix", "/a/", "--json"], { env: penv() });
    // /a/2 only: /a/1 went by URL.
    expect(JSON.parse(byPrefix.stdout)).toEqual({ purged: 1 });
    expect(await hit("/b/1")).toBe(false);
  }, 60_000);

  it("against a data API node: exit 2, pointing at invalidate", async () => {
    const r = await cli(["purge", "/v1/users"], { env });
    expect(r.code).toBe(2);
    expectOneLineError(
      r,
      /is not a proxy \(edgecache proxy\); for the data API use edgecache invalidate$/,
    );
  }, 30_000);
});

describe("rules (proxy mode with learning)", () => {
  it("lists, pins, adds, rejects and forgets rules; bad input exits 2; a node without learning exits 2", async () => {
    const origin = await startOrigin((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=600" });
      res.end(req.url);
    });
    const proxy = await startProxy(origin.url, { adminToken: TOKEN, learn: true });
    const plain = await startProxy(origin.url, { adminToken: TOKEN });
    const penv = (p: ProxyHarness) => ({ EDGECACHE_URL: p.url, EDGECACHE_ADMIN_TOKEN: TOKEN });
    try {
      const empty = await cli(["rules"], { env: penv(proxy) });
      expect(empty.code).toBe(0);
      expect(empty.stdout).toBe("no rules yet\n");
      const pin = await cli(["rules", "pin", "PATCH /api/users/:id", "/api/users/$1/profile"], {
        env: penv(proxy),
      });
      expect(pin.code).toBe(0);
      expect(pin.stdout).toBe("pinned PATCH /api/users/:id -> /api/users/$1/profile\n");
      const add = await cli(
        ["rules", "add", "POST /api/teams/:id/members", "/api/teams/$1", "--json"],
        {
          env: penv(proxy),
        },
      );
      expect(JSON.parse(add.stdout).rule).toMatchObject({ state: "manual", acts: true });
      const reject = await cli(
        ["rules", "reject", "POST /api/teams/:id/members", "/api/teams/$1"],
        {
          env: penv(proxy),
        },
      );
      expect(reject.stdout).toBe("rejected POST /api/teams/:id/members -> /api/teams/$1\n");
      const list = await cli(["rules", "list", "--json"], { env: penv(proxy) });
      const states = Object.fromEntries(
        JSON.parse(list.stdout).rules.map((r: { id: string; state: string; acts: boolean }) => [
          r.id,
          [r.state, r.acts],
        ]),
      );
      expect(states).toEqual({
        "PATCH /api/users/:id -> /api/users/$1/profile": ["pinned", true],
        "POST /api/teams/:id/members -> /api/teams/$1": ["rejected", false],
      });
      const text = await cli(["rules"], { env: penv(proxy) });
      expect(text.stdout).toMatch(
        /^acts {2}pinned .*PATCH \/api\/users\/:id -> \/api\/users\/\$1\/profile$/m,
      );
      const forget = await cli(
        ["rules", "forget", "POST /api/teams/:id/members", "/api/teams/$1"],
        {
          env: penv(proxy),
        },
      );
      expect(forget.stdout).toBe("forgotten\n");
      // Usage errors: exit 2, one line.
      const bad = await cli(["rules", "pin", "PATCH /api/users/:id", "/api/users/$3"], {
        env: penv(proxy),
      });
      expect(bad.code).toBe(2);
      expectOneLineError(bad, /\$3 names no value of the write/);
      const missing = await cli(["rules", "pin"], { env: penv(proxy) });
      expect(missing.code).toBe(2);
      expectOneLineError(missing, /pin: expected a write and a read/);
      const unknown = await cli(["rules", "bless"], { env: penv(proxy) });
      expect(unknown.code).toBe(2);
      expectOneLineError(unknown, /expected an action: list, pin, reject, add/);
      const off = await cli(["rules"], { env: penv(plain) });
      expect(off.code).toBe(2);
      expectOneLineError(
        off,
        /does not learn rules \(start it with edgecache proxy --learn; a Worker with edgecacheProxyWorker\(\{ learn \}\)\)$/,
      );
    } finally {
      await proxy.close();
      await plain.close();
      await origin.close();
    }
  }, 60_000);
});

describe("init", () => {
  it("--db writes a commented config that `serve` starts with; an existing file needs --force", async () => {
    const dir = tempDir();
    try {
      const db = join(dir, "app.db");
      writeFileSync(db, readFileSync(h.edgecache.databasePath));
      const r = await cli(["init", "--db", "app.db", "--ttl", "120"], { cwd: dir });
      expect(r.code).toBe(0);
      const text = readFileSync(join(dir, "edgecache.config.json"), "utf8");
      expect(text).toMatch(/^\s*\/\/ /m);
      expect(text).toContain('"database": "app.db"');
      expect(text).toContain('"ttl": 120');

      const again = await cli(["init", "--db", "app.db"], { cwd: dir });
      expect(again.code).toBe(1);
      expectOneLineError(again, /edgecache\.config\.json exists: pass --force to overwrite it$/);
      expect((await cli(["init", "--db", "app.db", "--force"], { cwd: dir })).code).toBe(0);

      const missing = await cli(["init", "--db", "nope.db", "--config", "other.json"], {
        cwd: dir,
      });
      expect(missing.code).toBe(2);
      expect(existsSync(join(dir, "other.json"))).toBe(false);

      const served = await serveOnce(dir, ["serve", "--port", "0", "--no-cache-file"]);
      expect(served.out).toContain(`config: ${join(dir, "edgecache.config.json")}`);
      expect(served.out).toContain("your database");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("--origin writes a proxy section that `proxy` starts with", async () => {
    const dir = tempDir();
    try {
      const r = await cli(["init", "--origin", "http://127.0.0.1:3999/ignored"], { cwd: dir });
      expect(r.code).toBe(0);
      const text = readFileSync(join(dir, "edgecache.config.json"), "utf8");
      expect(text).toContain('"origin": "http://127.0.0.1:3999"');
      const served = await startOnce(["proxy", "--port", "0", "--no-cache-file"], {
        cwd: dir,
        until: /clients:/,
      });
      expect(served.out).toContain("edgecache proxy in front of http://127.0.0.1:3999");
      // Clients' reloads reach the origin by default: the start says so, and how not to.
      expect(served.out).toMatch(/clients: +reloads .* revalidate .*--client-directives ignore/);
      const ignoring = await startOnce(
        [
          "proxy",
          "--port",
          "0",
          "--no-cache-file",
          "--origin",
          "http://127.0.0.1:3999",
          "--client-directives",
          "ignore",
        ],
        { cwd: dir, until: /clients:/ },
      );
      expect(ignoring.out).toMatch(/clients: +reloads .* served from cache/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("neither or both of --db and --origin: exit 2", async () => {
    const r = await cli(["init"]);
    expect(r.code).toBe(2);
    expectOneLineError(r, /expected either --db <sqlite file> or --origin <url>$/);
  }, 30_000);
});

/** Starts the binary in `dir` until it says where it listens, then stops it. */
const serveOnce = (dir: string, args: string[]) => startOnce(args, { cwd: dir });
