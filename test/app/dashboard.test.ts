import { rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Hono } from "hono";
import { Kysely, SqliteDialect } from "kysely";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startServer } from "../../src/adapter/node/server/server.ts";
import { createTenantNode } from "../../src/adapter/node/tenants/dispatcher.ts";
import { openTenantState } from "../../src/adapter/node/tenants/state.ts";
import { createAdminApi } from "../../src/app/admin.ts";
import { randomId } from "../../src/core/random-id.ts";
import { kyselyCache } from "../../src/kysely/index.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { edgecache } from "../helpers/built-cli.ts";
import { until } from "../helpers/cluster.ts";
import { requireChromium, requireRedis } from "../helpers/services.ts";
import { type Harness, startEdgecache, tempDir } from "./harness.ts";
import { startOrigin, startProxy } from "./proxy/harness.ts";

// The dashboard in headless Chromium (the Debian package) against a real node: it loads
// without console errors, shows live figures after traffic, the recent invalidations with
// the planner's rule, the inspector shows a key's dependencies, and its button invalidates.

/** What the functions evaluated in the page use of its DOM (the tests have no DOM types). */
declare const document: {
  body: { dataset: Record<string, string | undefined> };
  getElementById(id: string): { textContent: string | null } | null;
};

const browserBinary = requireChromium();
const redis = await requireRedis();
const TOKEN = "dashboard-token";

browserBinary.describe("dashboard", () => {
  let browser: Browser;
  let open: Harness;
  let guarded: Harness;
  let ids: string[];
  const url = { open: "", guarded: "" };

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: browserBinary.url, args: ["--no-sandbox"] });
    open = await startEdgecache({ rehydrate: false, cacheFile: false });
    url.open = (await open.edgecache.listen()).url;
    guarded = await startEdgecache({ rehydrate: false, cacheFile: false, adminToken: TOKEN });
    url.guarded = (await guarded.edgecache.listen()).url;
    ids = open.fresh("SELECT id FROM users ORDER BY id LIMIT 2").map((r) => String(r.id));
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await open?.close();
    await guarded?.close();
  });

  /** A page that records console errors and uncaught exceptions. */
  async function page(): Promise<{ page: Page; errors: string[] }> {
    const p = await browser.newPage();
    const errors: string[] = [];
    p.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text());
    });
    p.on("pageerror", (e) => errors.push(String(e)));
    return { page: p, errors };
  }

  it("shows live figures, hit rates and the invalidations a write caused, without console errors", async () => {
    const base = url.open;
    const { page: p, errors } = await page();
    await p.goto(`${base}/_edgecache/`);
    await p.waitForFunction(() => Number(document.body.dataset.polls) >= 2);
    for (let i = 0; i < 5; i++) await fetch(`${base}/v1/users/${ids[0]}`).then((r) => r.text());
    await fetch(`${base}/v1/users?limit=5`).then((r) => r.text());
    const write = await fetch(`${base}/v1/users/${ids[0]}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ lastName: "Dashboard" }),
    });
    expect(write.status).toBe(200);

    // Reads per second rise above zero, and the hit rate is a percentage.
    await expect
      .poll(async () => Number(await p.textContent("#f-reads")), { timeout: 10_000 })
      .toBeGreaterThan(0);
    expect(await p.textContent("#f-hitrate")).toMatch(/^\d+\.\d%$/);
    // One line per tier and one for all reads in the hit-rate chart.
    await p.waitForSelector('#chart-hits path[data-series="memory"][d*="L"]', {
      state: "attached",
    });
    expect(await p.textContent("#legend-hits")).toMatch(/memory: \d+\.\d%/);
    // The write's invalidations, with the rule that chose them.
    await p.waitForSelector('#changes td:has-text("write: users update")');
    expect(await p.textContent("#changes")).toMatch(/row \d/);
    expect(errors).toEqual([]);
    await p.close();
  }, 60_000);

  it("the inspector shows a key's dependencies, and its button invalidates the key", async () => {
    const base = url.open;
    const key = `GET /v1/users/${ids[1]}`;
    await fetch(`${base}/v1/users/${ids[1]}`).then((r) => r.text());
    await fetch(`${base}/v1/users/${ids[1]}`).then((r) => r.text());
    const { page: p, errors } = await page();
    await p.goto(`${base}/_edgecache/`);
    // The top keys table lists it; a click opens it in the inspector.
    await p.locator("#top-keys td.key", { hasText: key }).first().click();
    await p.waitForSelector('#entry td[data-field="depends on"]');
    expect(await p.textContent('#entry td[data-field="depends on"]')).toContain(`users#${ids[1]}`);
    expect(await p.textContent('#entry td[data-field="tiers"]')).toContain("memory ✓");
    expect(open.edgecache.cache.peek(key)).toBeDefined();

    await p.click("#invalidate");
    await p.waitForSelector('#invalidated:text-is("invalidated 1")');
    expect(open.edgecache.cache.peek(key)).toBeUndefined();
    expect(errors).toEqual([]);
    await p.close();
  }, 60_000);

  it("behind a token: asks for it, then shows the node's figures", async () => {
    const base = url.guarded;
    const { page: p, errors } = await page();
    await p.goto(`${base}/_edgecache/`);
    await p.waitForSelector("#login", { state: "visible" });
    expect(await p.textContent("#f-keys")).toBe("-"); // nothing shown without the token
    await p.fill("#token", TOKEN);
    await p.click('#login button[type="submit"]');
    await p.waitForFunction(() => document.getElementById("f-keys")?.textContent !== "-");
    // The only errors: the browser's report of the first, refused request.
    expect(errors.every((e) => /status of 401/.test(e))).toBe(true);
    await p.close();
  }, 60_000);

  it("tenants: a tenant's key shows its own keys and changes, never another tenant's", async () => {
    const dir = tempDir("edgecache-dash-tenants-");
    const statePath = join(dir, "state.db");
    const state = await openTenantState(statePath);
    const key: Record<string, string> = {};
    for (const name of ["red", "blue"]) {
      const db = new Database(join(dir, `${name}.db`));
      db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
      db.prepare("INSERT INTO items (id, name) VALUES (1, ?), (2, ?)").run(
        `${name}-1`,
        `${name}-2`,
      );
      db.close();
      key[name] = (await state.create({ name, source: { database: join(dir, `${name}.db`) } })).key;
    }
    await state.close();
    const node = await createTenantNode({ state: statePath, port: 0, adminToken: TOKEN });
    try {
      const { url: base } = await node.listen();
      const as = (name: string, path: string, init: RequestInit = {}) =>
        fetch(`${base}${path}`, {
          ...init,
          headers: { "x-edgecache-key": key[name]!, ...(init.headers as object) },
        }).then((r) => r.text());
      await as("red", "/v1/items/1");
      await as("blue", "/v1/items/2");
      await as("blue", "/v1/items/2", {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "blue-2-new" }),
      });
      const { page: p, errors } = await page();
      await p.goto(`${base}/_edgecache/`);
      await p.waitForSelector("#login", { state: "visible" });
      await p.fill("#token", key.red!);
      await p.click('#login button[type="submit"]');
      await p.waitForSelector('#top-keys td.key:text-is("GET /v1/items/1")');
      expect(await p.textContent("#top-keys")).not.toContain("/v1/items/2");
      // Red's own change shows; blue's write, applied earlier, does not.
      await as("red", "/_edgecache/invalidate", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ tag: "red-tag" }),
      });
      await p.waitForSelector('#changes td:has-text("tag red-tag")');
      expect(await p.locator("#changes tr").count()).toBe(1);
      expect(await p.textContent("#changes")).not.toContain("write");
      expect(errors.every((e) => /status of 401/.test(e))).toBe(true);
      await p.close();

      // The operator's token: a hit rate per tenant, and no tenant's keys.
      const { page: o, errors: oErrors } = await page();
      await o.goto(`${base}/_edgecache/`);
      await o.fill("#token", TOKEN);
      await o.click('#login button[type="submit"]');
      for (let i = 0; i < 3; i++) {
        await as("red", "/v1/items/1");
        await as("blue", "/v1/items/2");
        await new Promise((done) => setTimeout(done, 700));
      }
      await o.waitForSelector('#chart-tenants path[data-series="blue"][d*="L"]', {
        state: "attached",
      });
      const legendText = await o.textContent("#legend-tenants");
      expect(legendText).toMatch(/red: \d+\.\d%/);
      expect(legendText).toMatch(/blue: \d+\.\d%/);
      expect(await o.locator("#top-keys tr").count()).toBe(0);
      expect(oErrors.every((e) => /status of 401/.test(e))).toBe(true);
      await o.close();
    } finally {
      await node.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
  it("shows a proxy's manifest: its progress, and the URLs not cached first", async () => {
    // Three URLs the origin keeps for ten minutes, one it refuses.
    const origin = await startOrigin((req, res) => {
      if (req.url === "/down") {
        res.writeHead(503).end("no");
        return;
      }
      res.writeHead(200, { "cache-control": "max-age=600" }).end(`item ${req.url}`);
    });
    const proxy = await startProxy(origin.url, {
      now: Date.now,
      manifest: ["/items/{1..3}", "/down"],
    });
    try {
      const { page: p, errors } = await page();
      await p.goto(`${proxy.url}/_edgecache/`);
      await p.waitForFunction(
        () => document.getElementById("manifest-progress")?.textContent?.includes("3 of 4 cached"),
        undefined,
        { timeout: 15_000 },
      );
      expect(await p.textContent("#manifest-progress")).toContain("1 failing");
      // The failing URL comes first.
      expect(await p.textContent("#manifest tr:first-child")).toContain("/down");
      expect(errors).toEqual([]);
      await p.close();
    } finally {
      await proxy.close();
      await origin.close();
    }
  }, 60_000);

  it("shows an application's query shapes: how exactly each is followed and why not finer, behind the token", async () => {
    // An application of its own: Kysely and raw SQL on one SQLite file with capture, each
    // cache on its own engine (a shared engine is followed by table), the admin API mounted
    // as a user mounts it (edgecache/node), with the Kysely cache's engine as its `cache`.
    const dir = tempDir("edgecache-dash-queries-");
    const path = join(dir, "app.db");
    const admin = new Database(path);
    admin.exec(`create table users (id integer primary key, name text not null);
      create table posts (id integer primary key, user_id integer not null references users (id), title text not null);
      insert into users values (1, 'Ann'), (2, 'Bo');
      insert into posts values (1, 1, 'hello'), (2, 2, 'again');`);
    const source = sqliteSource({ path });
    await source.installCapture();
    await source.close();
    const database = new Database(path);
    const dialect = kyselyCache(new SqliteDialect({ database }), {
      client: database,
      tiers: [memoryStore()],
    });
    // biome-ignore lint/suspicious/noExplicitAny: the tables are the test's, typed loosely.
    const db = new Kysely<any>({ dialect });
    const sql = sqlCache({ client: new Database(path), tiers: [memoryStore()] });
    const app = new Hono();
    app.route(
      "/_edgecache",
      createAdminApi({
        cache: dialect.cache.engine,
        token: TOKEN,
        queryCaches: { kysely: dialect.cache, sql },
      }),
    );
    const server = await startServer({ app, port: 0, hostname: "127.0.0.1" });
    try {
      // Capture's catalog read: before it, a first read is registered by its tables.
      await dialect.cache.catchUp();
      for (let i = 0; i < 2; i++) {
        await db.selectFrom("users").selectAll().where("id", "=", 1).execute();
        await db.selectFrom("users").selectAll().where("name", "=", "Bo").orderBy("id").execute();
        await sql.query(
          "select posts.id, posts.title, users.name from posts join users on users.id = posts.user_id where posts.id = ?",
          [1],
        );
        await sql.query("select name, count(*) as n from users group by name");
      }
      // The same auth as every admin route: nothing without the token.
      expect((await fetch(`${server.url}/_edgecache/queries`)).status).toBe(401);

      const { page: p, errors } = await page();
      await p.goto(`${server.url}/_edgecache`);
      await p.waitForSelector("#login", { state: "visible" });
      await p.fill("#token", TOKEN);
      await p.click('#login button[type="submit"]');
      await p.waitForSelector("#queries-card:not([hidden])", { timeout: 15_000 });
      // Each row's granularity and its cells' text.
      type Row = { dataset: { granularity: string }; cells: ArrayLike<{ textContent: string }> };
      const shown = await p.$$eval("#queries tr", (trs) =>
        (trs as unknown as Row[]).map((tr) => ({
          granularity: tr.dataset.granularity,
          cells: Array.from(tr.cells, (td) => td.textContent),
        })),
      );
      const row = (fragment: string) => shown.find((r) => r.cells[2]!.includes(fragment));
      expect(row('where "id" = ?')).toMatchObject({
        granularity: "row",
        cells: ["kysely", "row", expect.any(String), "-", expect.any(String)],
      });
      expect(row('where "name" = ?')).toMatchObject({
        granularity: "predicate",
        cells: ["kysely", "predicate and window", expect.any(String), "-", expect.any(String)],
      });
      // Along the join's keys, the joined table followed as a whole, and why: posts.user_id is not selected.
      expect(row("join users")).toMatchObject({
        granularity: "join",
        cells: ["sql", "join along keys", expect.any(String), "join, users: key-not-selected", "1"],
      });
      // Below row level, the reason: counts by a column other than the key go by table.
      expect(row("group by name")).toMatchObject({
        granularity: "table",
        cells: ["sql", "table", expect.any(String), "group-by", "1"],
      });
      expect(await p.textContent("#queries-summary")).toMatch(
        /^kysely: \d+ exact, \d+ widened, \d+ by table; writes by capture; sql: \d+ exact/,
      );
      expect(errors.every((e) => /status of 401/.test(e))).toBe(true);
      await p.close();
    } finally {
      await server.close(0);
      await db.destroy();
      await sql.close();
      admin.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it.skipIf(!redis.reachable)(
    "a node on Redis following capture: its node name, and the changes made around it it applied",
    async () => {
      const cwd = tempDir();
      const node = await startEdgecache(
        {
          rehydrate: false,
          cacheFile: false,
          redis: { url: redis.url, prefix: `dash:${randomId()}:` },
        },
        cwd,
      );
      try {
        const base = (await node.edgecache.listen()).url;
        const path = node.edgecache.databasePath;
        await edgecache(["capture", "install", "--db", path]);
        await until(() => node.edgecache.capture?.installed === true);
        const raw = new Database(path);
        raw
          .prepare("UPDATE users SET lastName = 'Around' WHERE id = (SELECT min(id) FROM users)")
          .run();
        raw.close();
        await until(() => (node.edgecache.capture?.stats().applied ?? 0) > 0);
        const { page: p, errors } = await page();
        await p.goto(`${base}/_edgecache/`);
        await p.waitForFunction(() => Number(document.body.dataset.polls) >= 1);
        const name = node.edgecache.cache.stats().log.node;
        expect(name).toBeTruthy();
        expect(await p.textContent("#node")).toContain(`node ${name}`);
        expect(await p.isVisible("#f-capture")).toBe(true);
        expect(Number(await p.textContent("#f-capture"))).toBeGreaterThan(0);
        expect(errors).toEqual([]);
        // The keys it lists come also from a scan of Redis, under a prefix the log's claims
        // and other keys that are not entries share: looking at those is no fault of the tier.
        const listed = await fetch(`${base}/_edgecache/keys`);
        expect(listed.status).toBe(200);
        const redisTier = node.edgecache.cache.stats().tiers.find((t) => t.name === "redis");
        expect(redisTier?.errors).toBe(0);
        await p.close();
      } finally {
        await node.close();
      }
    },
    60_000,
  );
});
