import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "../../cli/run-cli.ts";
import { startIsolates } from "../../helpers/workerd.ts";

// Tenants on Workers, inside workerd: two isolates ("a", "b") of one Worker of tenants
// (tenants-entry.ts) sharing the registry (TenantsObject), the change log, KV and a D1 per
// tenant. The operator's commands are the real `edgecache tenants ... --url --token` against
// a's port. The same checks as test/cli/tenants.test.ts makes of a Node node of tenants:
// identical URLs never meet, on any path; a rotated key is refused by every isolate when
// the command returns; a deleted tenant's key stops working and a new one starts empty.

const OPERATOR = "operator-token";
/** The isolates' lease on the tenant table: `rotate-key` returns after it. */
const LEASE_MS = 1500;
let mf: Miniflare;
let url: string;
let origin: Server;
let originAuth: string[] = [];
const keys: Record<string, string> = {};

/** Runs `edgecache tenants ...` against isolate a, as the operator. */
const tenants = (...args: string[]) =>
  cli(["tenants", ...args, "--url", url, "--json"], { env: { EDGECACHE_ADMIN_TOKEN: OPERATOR } });

async function createTenant(name: string, ...source: string[]): Promise<Record<string, string>> {
  const r = await tenants("create", name, ...source);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const created = JSON.parse(r.stdout);
  expect(created.key).toMatch(/^ek_[\w-]{43}$/);
  return created;
}

async function seed(binding: string, owner: string): Promise<void> {
  const db = (await mf.getD1Database(binding, "a")) as unknown as {
    prepare(sql: string): { run(): Promise<unknown> };
  };
  await db.prepare("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)").run();
  await db
    .prepare(
      `INSERT INTO items (id, name) VALUES (1, '${owner}-1'), (2, '${owner}-2'), (3, '${owner}-3')`,
    )
    .run();
}

beforeAll(async () => {
  origin = createServer((req, res) => {
    // Any spelling a CGI-style stack reads as X-Edgecache-Key (X_Edgecache_Key) is the key.
    const keyed = Object.keys(req.headers).some(
      (n) => n.replaceAll("_", "-") === "x-edgecache-key",
    );
    originAuth.push(`${req.headers.authorization ?? "none"}${keyed ? " +key" : ""}`);
    res.writeHead(200, { "cache-control": "max-age=600", "content-type": "text/plain" });
    res.end(
      `origin says ${req.url}${req.headers.authorization ? ` to ${req.headers.authorization}` : ""}`,
    );
  });
  await new Promise<void>((done) => origin.listen(0, "127.0.0.1", done));
  mf = await startIsolates(new URL("./tenants-entry.ts", import.meta.url), ["a", "b"], {
    d1Databases: { DB_ALPHA: "alpha", DB_BETA: "beta", DB_DELTA: "delta" },
    kvNamespaces: { CACHE: "tenants-kv" },
    objects: { TENANTS: "TenantsObject" },
    bindings: { EDGECACHE_ADMIN_TOKEN: OPERATOR, TENANTS_LEASE_MS: String(LEASE_MS) },
  });
  url = (await mf.ready).href.replace(/\/$/, "");
  await seed("DB_ALPHA", "alpha");
  await seed("DB_BETA", "beta");
  await seed("DB_DELTA", "delta");
  keys.alpha = (await createTenant("alpha", "--db", "DB_ALPHA")).key!;
  keys.beta = (await createTenant("beta", "--db", "DB_BETA", "--ttl", "60")).key!;
  const { port } = origin.address() as AddressInfo;
  keys.gamma = (await createTenant("gamma", "--origin", `http://127.0.0.1:${port}`)).key!;
  const delta = await createTenant(
    "delta",
    "--db",
    "DB_DELTA",
    "--read-key",
    "--public-host",
    "Public.Example",
  );
  keys.delta = delta.key!;
  keys.deltaRead = delta.readKey!;
}, 120_000);

afterAll(async () => {
  await mf?.dispose();
  await new Promise((done) => origin?.close(done));
});

/**
 * A request to one isolate, as a client on the Internet would send it; `host` is the URL's
 * (fetch sends no Host header of its own).
 */
async function send(
  isolate: string,
  path: string,
  init: RequestInit = {},
  host = "127.0.0.1:8787",
): Promise<Response> {
  const worker = (await mf.getWorker(isolate)) as unknown as { fetch: typeof fetch };
  return worker.fetch(`http://${host}${path}`, init);
}
const PUBLIC = "public.example";
/** A request with a tenant's key. */
const as = (tenant: string, path: string, init: RequestInit = {}, isolate = "a") =>
  send(isolate, path, {
    ...init,
    headers: { authorization: `Bearer ${keys[tenant]}`, ...(init.headers as object) },
  });
const body = async (tenant: string, path: string, isolate = "a") => {
  const r = await as(tenant, path, {}, isolate);
  return { status: r.status, text: await r.text(), cache: r.headers.get("cache-status") };
};
/**
 * The operator's API of isolate a, as `edgecache tenants --url` calls it: sent straight
 * from here, so the other isolate can be made to hold a fresh table just before.
 */
async function operator(method: string, path: string, value?: unknown) {
  const r = await send("a", `/_edgecache/tenants${path}`, {
    method,
    headers: { authorization: `Bearer ${OPERATOR}`, "content-type": "application/json" },
    ...(value !== undefined && { body: JSON.stringify(value) }),
  });
  expect(r.status).toBe(200);
  return (await r.json()) as Record<string, string>;
}
const json = (value: unknown): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(value),
});

describe("identifying the tenant", () => {
  it("no key or a wrong one: 401 with WWW-Authenticate, on data and admin paths alike", async () => {
    for (const path of ["/v1/items/1", "/_edgecache/stats", "/_edgecache/keys"]) {
      const none = await send("a", path);
      expect(none.status, path).toBe(401);
      expect(none.headers.get("www-authenticate")).toBe('Bearer realm="edgecache"');
      expect(((await none.json()) as { error: { code: string } }).error.code).toBe(
        "E_UNAUTHORIZED",
      );
      const wrong = await send("b", path, { headers: { "x-edgecache-key": "ek_nope" } });
      expect(wrong.status, path).toBe(401);
    }
  });
});

describe("what needs no key (as on Node and a single Worker)", () => {
  it("health answers a load balancer 200 with the isolate's own check, whatever credentials it sends", async () => {
    const credentials: Record<string, Record<string, string>> = {
      none: {},
      wrong: { authorization: "Bearer ek_nope" },
      operator: { authorization: `Bearer ${OPERATOR}` },
      tenant: { authorization: `Bearer ${keys.alpha}` },
      "tenant by header": { "x-edgecache-key": keys.beta! },
    };
    for (const [who, headers] of Object.entries(credentials)) {
      for (const isolate of ["a", "b"]) {
        // A probe from elsewhere, naming a host no tenant has.
        const r = await send(
          isolate,
          "/_edgecache/health",
          { headers: { ...headers, "cf-connecting-ip": "203.0.113.9" } },
          "lb.example",
        );
        expect(r.status, `${who} via ${isolate}`).toBe(200);
        expect(r.headers.get("cache-control")).toBe("no-store");
        const text = await r.text();
        expect(JSON.parse(text)).toEqual({ status: "ok", checks: { state: { ok: true } } });
        expect(text).not.toMatch(/alpha|beta|ek_/);
      }
      const head = await send("a", "/_edgecache/health", { method: "HEAD", headers });
      expect(head.status, `HEAD, ${who}`).toBe(200);
      for (const path of ["/_edgecache/", "/_edgecache"]) {
        const page = await send("b", path, { headers });
        expect(page.status, `${path}, ${who}`).toBe(200);
        expect(page.headers.get("content-type")).toMatch(/^text\/html/);
        await page.text();
      }
    }
    // The rest of the admin API still needs a tenant's key.
    expect((await send("a", "/_edgecache/stats", {}, "lb.example")).status).toBe(401);
  });
});

describe("two tenants, identical URLs", () => {
  it("each reads its own D1 and its own cache, in every isolate", async () => {
    for (const isolate of ["a", "b"]) {
      expect((await body("alpha", "/v1/items/1", isolate)).text).toContain('"alpha-1"');
      expect((await body("beta", "/v1/items/1", isolate)).text).toContain('"beta-1"');
    }
    const hit = await body("alpha", "/v1/items/1");
    expect(hit.cache).toMatch(/^edgecache; hit/);
    expect(hit.text).toContain('"alpha-1"');
    // By the other header too.
    const r = await send("b", "/v1/items/1", { headers: { "x-edgecache-key": keys.beta! } });
    expect(await r.text()).toContain('"beta-1"');
  });

  it("a write through one tenant changes only its D1 and its entries, in every isolate", async () => {
    for (const isolate of ["a", "b"]) {
      await body("alpha", "/v1/items?limit=10", isolate);
      await body("beta", "/v1/items?limit=10", isolate);
    }
    const w = await as("alpha", "/v1/items/2", {
      ...json({ name: "alpha-2-new" }),
      method: "PATCH",
    });
    expect(w.status).toBe(200);
    expect((await body("alpha", "/v1/items?limit=10", "b")).text).toContain("alpha-2-new");
    for (const isolate of ["a", "b"]) {
      const beta = await body("beta", "/v1/items?limit=10", isolate);
      expect(beta.text).toContain('"beta-2"');
      expect(beta.cache).toMatch(/^edgecache; hit/); // untouched by alpha's write
    }
  });

  it("the admin API and the CLI see, count and invalidate one tenant's entries only", async () => {
    await body("alpha", "/v1/items/3");
    await body("beta", "/v1/items/3");
    const listed = (await (await as("beta", "/_edgecache/keys")).json()) as {
      keys: { key: string }[];
    };
    const betaKeys = listed.keys.map((k) => k.key);
    expect(betaKeys).toContain("GET /v1/items/3");
    const stats = (await (await as("beta", "/_edgecache/stats")).json()) as { writes: number };
    expect(stats.writes).toBe(0); // alpha's write is not counted here
    // Its own TTL (60 s), not alpha's default.
    const one = await as("beta", `/_edgecache/keys/${encodeURIComponent("GET /v1/items/3")}`);
    expect(((await one.json()) as { ttlSeconds: number }).ttlSeconds).toBeLessThanOrEqual(60);

    // The CLI with a tenant's key, as against a Node node of tenants.
    const cliKeys = await cli(["keys", "--json", "--url", url, "--token", keys.beta!]);
    expect(cliKeys.code).toBe(0);
    expect(
      JSON.parse(cliKeys.stdout)
        .keys.map((k: { key: string }) => k.key)
        .sort(),
    ).toEqual([...betaKeys].sort());

    const inv = await as("beta", "/_edgecache/invalidate", json({ prefix: "GET /v1/items" }));
    expect(inv.status).toBe(200);
    expect((await body("beta", "/v1/items/3")).cache).toMatch(/fwd=miss/);
    expect((await body("alpha", "/v1/items/3")).cache).toMatch(/^edgecache; hit/);
    expect((await body("alpha", "/v1/items/3", "b")).text).toContain('"alpha-3"');
  }, 30_000);

  it("the tenants API is the operator's: a tenant's key learns nothing there", async () => {
    for (const path of ["/_edgecache/tenants", "/_edgecache/tenants/beta/rotate-key"]) {
      const r = await as("alpha", path, path.endsWith("key") ? json({}) : {});
      expect(r.status, path).toBe(401);
      expect(await r.text()).not.toContain("beta");
    }
  });

  it("an origin tenant: cached per tenant, and its key never reaches the origin", async () => {
    originAuth = [];
    expect((await body("gamma", "/v1/items/1")).text).toBe("origin says /v1/items/1");
    const again = await body("gamma", "/v1/items/1");
    expect(again.cache).toMatch(/^edgecache; hit/);
    expect(originAuth).toEqual(["none"]);
    // Same URL, another tenant: its own database, not gamma's cached response.
    expect((await body("alpha", "/v1/items/1")).text).toContain('"alpha-1"');
  });
  it("with X-Edgecache-Key, Authorization is the client's: it reaches the origin, the key does not", async () => {
    const both = async (path: string, credential: string, key = keys.gamma!) => {
      const r = await send("a", path, {
        headers: { "x-edgecache-key": key, authorization: `Bearer ${credential}` },
      });
      return { status: r.status, text: await r.text() };
    };
    originAuth = [];
    expect(await both("/private/a", "client-a")).toEqual({
      status: 200,
      text: "origin says /private/a to Bearer client-a",
    });
    // RFC 9111 3.5: an answer to credentials the origin did not mark shared is not stored,
    // and one stored for no credential is not served to one.
    expect((await both("/private/a", "client-b")).text).toBe(
      "origin says /private/a to Bearer client-b",
    );
    await body("gamma", "/shared/b");
    expect((await body("gamma", "/shared/b")).cache).toMatch(/^edgecache; hit/);
    expect((await both("/shared/b", "client-a")).text).toBe(
      "origin says /shared/b to Bearer client-a",
    );
    expect(originAuth).toEqual(["Bearer client-a", "Bearer client-b", "none", "Bearer client-a"]);
    // The key comes from X-Edgecache-Key alone: a tenant's key in Authorization beside a
    // wrong one opens nothing.
    expect((await both("/private/a", keys.gamma!, "ek_nope")).status).toBe(401);
    // The admin API is the tenant's with either way of sending the key.
    const stats = await send("a", "/_edgecache/stats", {
      headers: { "x-edgecache-key": keys.gamma!, authorization: "Bearer client-a" },
    });
    expect(stats.status).toBe(200);
  });

  it("no credential of edgecache's reaches the origin: admin look-alike paths, key spellings, keys in Authorization", async () => {
    /** What gamma's origin got for one request with these fields. */
    const sent = async (path: string, headers: Record<string, string>, method = "GET") => {
      originAuth = [];
      const r = await send("a", path, { method, headers });
      expect(r.status).toBe(200);
      return originAuth;
    };
    // Not the admin API (isAdminPath): the tenant app's own token must not replace the key.
    for (const path of ["/_edgecache_x", "/_edgecache.json", "/_edgecache%e0%80%af"]) {
      expect(await sent(path, { authorization: `Bearer ${keys.gamma}` })).toEqual(["none"]);
      expect(await sent(`${path}?h`, { "x-edgecache-key": keys.gamma! })).toEqual(["none"]);
    }
    for (const name of ["X_Edgecache_Key", "x_EDGECACHE-key"]) {
      const both = { authorization: `Bearer ${keys.gamma}`, [name]: keys.gamma! };
      expect(await sent("/spelling", both, "POST")).toEqual(["none"]);
      const twice = { "x-edgecache-key": keys.gamma!, [name]: keys.gamma! };
      expect(await sent("/spelling", twice, "POST")).toEqual(["none"]);
    }
    // Beside X-Edgecache-Key, Authorization holding a tenant's key (any, read-only too) is a key.
    for (const token of [keys.gamma!, keys.alpha!, keys.deltaRead!]) {
      const both = { "x-edgecache-key": keys.gamma!, authorization: `bearer  ${token}` };
      expect(await sent("/both", both, "POST")).toEqual(["none"]);
    }
    const client = { "x-edgecache-key": keys.gamma!, authorization: "Bearer client-a" };
    expect(await sent("/both", client, "POST")).toEqual(["Bearer client-a"]);
  });

  it("two origin tenants of one origin: a purge through one leaves the other's entries", async () => {
    const { port } = origin.address() as AddressInfo;
    keys.eta = (
      await operator("POST", "", { name: "eta", source: { origin: `http://127.0.0.1:${port}` } })
    ).key!;
    for (const tenant of ["gamma", "eta"]) {
      await body(tenant, "/shared/page");
      expect((await body(tenant, "/shared/page")).cache).toMatch(/^edgecache; hit/);
    }
    const purge = await as("eta", "/_edgecache/purge", json({ prefix: "/shared" }));
    expect(purge.status).toBe(200);
    expect((await body("eta", "/shared/page")).cache).not.toMatch(/^edgecache; hit/);
    for (const isolate of ["a", "b"]) {
      expect((await body("gamma", "/shared/page", isolate)).cache).toMatch(/^edgecache; hit/);
    }
    // A data-API tenant has no purge; its key reaches no proxy's.
    expect((await as("alpha", "/_edgecache/purge", json({ prefix: "/shared" }))).status).toBe(404);
  });
});

describe("scopes and public reads", () => {
  it("a read-only key reads, and is refused writes and invalidations (403)", async () => {
    expect((await body("deltaRead", "/v1/items/1")).text).toContain('"delta-1"');
    expect((await as("deltaRead", "/_edgecache/stats")).status).toBe(200);
    const write = await as("deltaRead", "/v1/items/1", { ...json({ name: "x" }), method: "PATCH" });
    expect(write.status).toBe(403);
    expect(((await write.json()) as { error: { message: string } }).error.message).toMatch(
      /may only read/,
    );
    const invalidate = await as("deltaRead", "/_edgecache/invalidate", json({ prefix: "GET /" }));
    expect(invalidate.status).toBe(403);
    const ok = await as("delta", "/v1/items/1", {
      ...json({ name: "delta-1-new" }),
      method: "PATCH",
    });
    expect(ok.status).toBe(200);
  });

  it("without a key, reads naming the public host are that tenant's; nothing else is", async () => {
    const first = await send("b", "/v1/items/2", {}, PUBLIC);
    expect(first.status).toBe(200);
    expect(await first.text()).toContain('"delta-2"');
    const again = await send("a", "/v1/items/2", {}, `${PUBLIC}:443`);
    expect(await again.text()).toContain('"delta-2"');
    const patch = await send(
      "b",
      "/v1/items/2",
      { ...json({ name: "x" }), method: "PATCH" },
      PUBLIC,
    );
    expect(patch.status).toBe(403);
    expect((await send("b", "/_edgecache/stats", {}, PUBLIC)).status).toBe(401);
    expect((await send("b", "/v1/items/2")).status).toBe(401);
    const wrong = await send(
      "b",
      "/v1/items/2",
      { headers: { "x-edgecache-key": "ek_wrong" } },
      PUBLIC,
    );
    expect(wrong.status).toBe(401);
  });

  it("the admin prefix percent-encoded is a 404, with a key, without, and on the public host", async () => {
    for (const path of ["/%5fedgecache/stats", "/_%65dgecache/keys", "/%5Fedgecache/tenants"]) {
      expect((await send("a", path)).status, path).toBe(404);
      expect((await as("alpha", path)).status, path).toBe(404);
      expect((await send("a", path, { headers: { host: "public.example" } })).status, path).toBe(
        404,
      );
    }
  });

  it("the operator's token reaches no tenant's entries", async () => {
    const operator = { authorization: `Bearer ${OPERATOR}` };
    const invalidate = await send("a", "/_edgecache/invalidate", {
      ...json({ prefix: "GET /" }),
      headers: { ...operator, "content-type": "application/json" },
    });
    expect(invalidate.status).toBe(401);
    expect((await send("a", "/v1/items/1", { headers: operator })).status).toBe(401);
    expect((await send("a", "/_edgecache/keys", { headers: operator })).status).toBe(401);
  });
});

describe("managing tenants while the Worker runs", () => {
  it("rotate-key: the old key is refused by every isolate when the change returns; the cache stays", async () => {
    // Both isolates hold the table with the old key (b just fetched or trusts it), and alpha's entry.
    for (const isolate of ["a", "b"]) {
      expect((await body("alpha", "/v1/items/1", isolate)).status).toBe(200);
    }
    const old = keys.alpha!;
    const rotated = await operator("POST", "/alpha/rotate-key", { scope: "write" });
    keys.alpha = rotated.key!;
    expect(keys.alpha).toMatch(/^ek_[\w-]{43}$/);
    for (const isolate of ["b", "a"]) {
      const refused = await send(isolate, "/v1/items/1", {
        headers: { authorization: `Bearer ${old}` },
      });
      expect(refused.status, isolate).toBe(401);
    }
    expect(Number(rotated.settledMs)).toBeGreaterThanOrEqual(LEASE_MS);
    const hit = await body("alpha", "/v1/items/1", "b");
    expect(hit.status).toBe(200);
    expect(hit.cache).toMatch(/^edgecache; hit/);
  });

  it("rotate-key --read replaces the read-only key and keeps the full one", async () => {
    const old = keys.deltaRead!;
    await body("deltaRead", "/v1/items/1", "b");
    const r = await tenants("rotate-key", "delta", "--read");
    expect(r.code).toBe(0);
    keys.deltaRead = JSON.parse(r.stdout).key;
    expect((await send("b", "/v1/items/1", { headers: { "x-edgecache-key": old } })).status).toBe(
      401,
    );
    expect((await body("deltaRead", "/v1/items/1", "b")).status).toBe(200);
    expect((await body("delta", "/v1/items/1", "b")).status).toBe(200);
  }, 30_000);

  it("delete: the key stops working in every isolate; a new tenant of that name starts empty", async () => {
    for (const isolate of ["a", "b"]) {
      await body("beta", "/v1/items/1", isolate);
      expect((await body("beta", "/v1/items/1", isolate)).cache).toMatch(/^edgecache; hit/);
    }
    expect(await operator("DELETE", "/beta")).toMatchObject({ deleted: "beta" });
    for (const isolate of ["b", "a"]) {
      expect((await body("beta", "/v1/items/1", isolate)).status).toBe(401);
    }
    // A new tenant's key works in every isolate as soon as it is made.
    keys.beta = (await operator("POST", "", { name: "beta", source: { database: "DB_BETA" } }))
      .key!;
    for (const isolate of ["b", "a"]) {
      const fresh = await body("beta", "/v1/items/1", isolate);
      expect(fresh.text).toContain('"beta-1"');
      if (isolate === "b") expect(fresh.cache).toMatch(/fwd=miss/);
    }
  });

  it("the CLI deletes too", async () => {
    await createTenant("zeta", "--db", "DB_ALPHA");
    const r = await tenants("delete", "zeta");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ deleted: "zeta" });
  }, 30_000);

  it("list shows names and sources, never keys; mistakes exit with their codes", async () => {
    const r = await cli(["tenants", "list", "--url", url, "--token", OPERATOR]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^NAME\s+SOURCE/);
    for (const name of ["alpha", "beta", "gamma", "delta"]) expect(r.stdout).toContain(name);
    expect(r.stdout).toMatch(/^alpha\s+DB_ALPHA\s/m);
    expect(r.stdout).toMatch(/^delta\s.*\syes\s+public\.example\s/m);
    expect(r.stdout).not.toContain("ek_");

    expect((await tenants("create", "alpha", "--db", "DB_ALPHA")).code).toBe(1);
    expect((await tenants("rotate-key", "nobody")).code).toBe(5);
    const unbound = await tenants("create", "omega", "--db", "DB_NONE");
    expect(unbound.code).toBe(1);
    expect(unbound.stderr).toMatch(/DB_NONE/);
    const bad = await send("a", "/_edgecache/tenants", {
      method: "POST",
      headers: { authorization: `Bearer ${OPERATOR}`, "content-type": "application/json" },
      body: "{not json",
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("E_BAD_BODY");
    // Crafted bodies: each field is checked by the route's schema, so none reaches the code
    // as a value it did not expect (a string source threw in `in`; String() of
    // {"toString": 1} throws), and the message says what was sent.
    for (const [path, crafted, said] of [
      ["", { name: "omega", source: "DB_ALPHA" }, "source"],
      [
        "",
        { name: "omega", source: { database: "DB_ALPHA" }, publicHost: { toString: 1 } },
        "publicHost: expected a host name (such as shop.example.com), got an object",
      ],
      [
        "",
        { name: "omega", source: { database: "DB_ALPHA" }, ttl: "60" },
        'ttl: expected a whole number >= 1, got "60"',
      ],
      [
        "",
        { name: "omega", source: { database: "DB_ALPHA" }, readkey: true },
        'unknown field "readkey"',
      ],
      [
        "/alpha/rotate-key",
        { scope: { toString: 1 } },
        "scope: expected one of write, read, got an object",
      ],
    ] as const) {
      const r = await send("a", `/_edgecache/tenants${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${OPERATOR}`, "content-type": "application/json" },
        body: JSON.stringify(crafted),
      });
      expect(r.status, said).toBe(400);
      const { error } = (await r.json()) as { error: { code: string; message: string } };
      expect(error.code, said).toBe("E_BAD_BODY");
      expect(error.message, said).toContain(said);
    }
    const refused = await cli(["tenants", "list", "--url", url, "--token", "not-it"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/refused the admin token/);
  }, 60_000);
});
