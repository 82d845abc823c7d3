import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exchange } from "../adapter/node/raw-client.ts";
import { tempDir } from "../app/harness.ts";
import { type Origin, startOrigin } from "../app/proxy/harness.ts";
import { cli, serveTenants } from "./run-cli.ts";

// Tenants on the real binary: two tenants whose URLs are identical never see each other's
// entries on any path (the app, raw-socket hits, the admin API and its CLI), a rotated key
// is refused at once, a deleted tenant's entries are gone.

let dir: string;
let state: string;
let node: { url: string; stop(): Promise<void> };
let url: string;
let port: number;
let origin: Origin;
/** What each origin request carried: its Authorization and whether a tenant key came along. */
let atOrigin: string[] = [];
const keys: Record<string, string> = {};
const OPERATOR = "operator-token";

/** A database of one's own: `items` whose names say which tenant it belongs to. */
function database(file: string, owner: string): string {
  const path = join(dir, file);
  const db = new Database(path);
  db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
  const insert = db.prepare("INSERT INTO items (id, name) VALUES (?, ?)");
  for (let i = 1; i <= 3; i++) insert.run(i, `${owner}-${i}`);
  db.close();
  return path;
}

async function createTenant(name: string, source: string[]): Promise<string> {
  const r = await cli(["tenants", "create", name, ...source, "--json", "--state", state]);
  expect(r.code).toBe(0);
  const created = JSON.parse(r.stdout);
  expect(created.key).toMatch(/^ek_[\w-]{43}$/);
  return created.key;
}

beforeAll(async () => {
  dir = tempDir("edgecache-tenants-");
  state = join(dir, "state.db");
  origin = await startOrigin((req, res) => {
    // Any spelling a CGI-style stack reads as X-Edgecache-Key (X_Edgecache_Key) is the key.
    const keyed = Object.keys(req.headers).some(
      (n) => n.replaceAll("_", "-") === "x-edgecache-key",
    );
    atOrigin.push(`${req.headers.authorization ?? "none"}${keyed ? " +key" : ""}`);
    res.writeHead(200, { "cache-control": "max-age=600", "content-type": "text/plain" });
    res.end(`origin says ${req.url} (auth: ${req.headers.authorization ?? "none"})`);
  });
  keys.alpha = await createTenant("alpha", ["--db", database("a.db", "alpha")]);
  keys.beta = await createTenant("beta", ["--db", database("b.db", "beta"), "--ttl", "60"]);
  keys.gamma = await createTenant("gamma", ["--origin", origin.url]);
  const delta = await cli([
    "tenants",
    "create",
    "delta",
    "--db",
    database("d.db", "delta"),
    "--read-key",
    "--public-host",
    "Public.Example",
    "--json",
    "--state",
    state,
  ]);
  ({ key: keys.delta, readKey: keys.deltaRead } = JSON.parse(delta.stdout));
  node = await serveTenants(state, { cwd: dir, env: { EDGECACHE_ADMIN_TOKEN: OPERATOR } });
  url = node.url;
  port = Number(new URL(url).port);
}, 60_000);

afterAll(async () => {
  await node?.stop();
  await origin?.close();
  rmSync(dir, { recursive: true, force: true });
});

const as = (tenant: string, path: string, init: RequestInit = {}) =>
  fetch(`${url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${keys[tenant]}`, ...(init.headers as object) },
  });
const body = async (tenant: string, path: string) => {
  const r = await as(tenant, path);
  return { status: r.status, text: await r.text(), cache: r.headers.get("cache-status") };
};
const rawGet = (path: string, key: string, by: "bearer" | "header" = "bearer") =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${
    by === "bearer" ? `Authorization: Bearer ${key}` : `X-Edgecache-Key: ${key}`
  }\r\n\r\n`;

describe("identifying the tenant", () => {
  it("no key or a wrong one: 401 with WWW-Authenticate, on data and admin paths alike", async () => {
    for (const path of ["/v1/items/1", "/_edgecache/stats"]) {
      const none = await fetch(`${url}${path}`);
      expect(none.status).toBe(401);
      expect(none.headers.get("www-authenticate")).toBe('Bearer realm="edgecache"');
      expect(((await none.json()) as { error: { code: string } }).error.code).toBe(
        "E_UNAUTHORIZED",
      );
      const wrong = await fetch(`${url}${path}`, { headers: { "x-edgecache-key": "ek_nope" } });
      expect(wrong.status).toBe(401);
    }
  });
});

describe("two tenants, identical URLs", () => {
  it("each reads its own database and its own cache, through the app and the raw path", async () => {
    expect((await body("alpha", "/v1/items/1")).text).toContain('"alpha-1"');
    expect((await body("beta", "/v1/items/1")).text).toContain('"beta-1"');
    // Both cached now; pipelined on one keep-alive connection, hits go the raw path.
    const pipelined = await exchange(
      port,
      rawGet("/v1/items/1", keys.alpha!) +
        rawGet("/v1/items/1", keys.beta!, "header") +
        rawGet("/v1/items/1", keys.alpha!, "header") +
        rawGet("/v1/items/1", "ek_not-a-key"),
      ["GET", "GET", "GET", "GET"],
    );
    const [a1, b1, a2, none] = pipelined.replies;
    expect(a1!.body.toString()).toContain('"alpha-1"');
    expect(b1!.body.toString()).toContain('"beta-1"');
    expect(a2!.body.toString()).toContain('"alpha-1"');
    for (const hit of [a1!, b1!, a2!])
      expect(hit.header("cache-status")).toMatch(/^edgecache; hit/);
    expect(none!.status).toBe(401);
  });

  it("a write through one tenant changes only its database and its entries", async () => {
    await body("alpha", "/v1/items?limit=10");
    await body("beta", "/v1/items?limit=10");
    const w = await as("alpha", "/v1/items/2", {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "alpha-2-new" }),
    });
    expect(w.status).toBe(200);
    expect((await body("alpha", "/v1/items?limit=10")).text).toContain("alpha-2-new");
    const beta = await body("beta", "/v1/items?limit=10");
    expect(beta.text).toContain('"beta-2"');
    expect(beta.cache).toMatch(/^edgecache; hit/); // untouched by alpha's write
  });

  it("the admin API and the CLI see, count and invalidate one tenant's entries only", async () => {
    await body("alpha", "/v1/items/3");
    await body("beta", "/v1/items/3");
    const env = { EDGECACHE_URL: url };
    const listed = await cli(["keys", "--json", "--token", keys.beta!], { env });
    expect(listed.code).toBe(0);
    const betaKeys = JSON.parse(listed.stdout).keys.map((k: { key: string }) => k.key);
    expect(betaKeys).toContain("GET /v1/items/3");
    const stats = JSON.parse(
      (await cli(["stats", "--json", "--token", keys.beta!], { env })).stdout,
    );
    expect(stats.writes).toBe(0); // alpha's write is not counted here

    const inv = await cli(
      ["invalidate", "--prefix", "GET /v1/items", "--json", "--token", keys.beta!],
      {
        env,
      },
    );
    expect(JSON.parse(inv.stdout).invalidated).toBe(betaKeys.length);
    expect((await body("beta", "/v1/items/3")).cache).toMatch(/fwd=miss/);
    expect((await body("alpha", "/v1/items/3")).cache).toMatch(/^edgecache; hit/);
  }, 60_000);

  it("warm --key fills the key's tenant's cache only", async () => {
    await cli(["invalidate", "--prefix", "GET /v1/items", "--token", keys.alpha!, "--url", url]);
    await cli(["invalidate", "--prefix", "GET /v1/items", "--token", keys.beta!, "--url", url]);
    const r = await cli(["warm", "/v1/items?limit=2", "--key", keys.alpha!, "--url", url]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/1 stored/);
    expect((await body("alpha", "/v1/items?limit=2")).cache).toMatch(/^edgecache; hit/);
    expect((await body("beta", "/v1/items?limit=2")).cache).toMatch(/fwd=miss/);
    const none = await cli(["warm", "/v1/items?limit=2", "--url", url]);
    expect(none.code).toBe(1); // 401 for each URL: no key
    expect(none.stdout).toMatch(/failed: \/v1\/items\?limit=2: HTTP 401/);
  }, 60_000);

  it("an origin tenant: cached per tenant, and its key never reaches the origin", async () => {
    const first = await body("gamma", "/v1/items/1");
    expect(first.text).toBe("origin says /v1/items/1 (auth: none)");
    const again = await exchange(port, rawGet("/v1/items/1", keys.gamma!), ["GET"]);
    expect(again.replies[0]!.header("cache-status")).toMatch(/^edgecache; hit/);
    expect(again.replies[0]!.body.toString()).toBe("origin says /v1/items/1 (auth: none)");
    // Same URL, another tenant: its own database, not gamma's cached response.
    expect((await body("alpha", "/v1/items/1")).text).toContain('"alpha-1"');
  });
});

describe("an origin tenant whose clients send their own Authorization", () => {
  const both = (path: string, credential: string, key = keys.gamma!) =>
    fetch(`${url}${path}`, {
      headers: { "x-edgecache-key": key, authorization: `Bearer ${credential}` },
    }).then(async (r) => ({ status: r.status, text: await r.text() }));
  /** The same over a raw socket, where pipelined hits are answered: the body. */
  const rawBoth = async (path: string, credential: string) => {
    const head = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Edgecache-Key: ${keys.gamma}\r\n`;
    const raw = await exchange(port, `${head}Authorization: Bearer ${credential}\r\n\r\n`, ["GET"]);
    return raw.replies[0]!.body.toString();
  };

  it("with X-Edgecache-Key, Authorization is the client's: it reaches the origin, the key does not", async () => {
    atOrigin = [];
    expect(await both("/private/a", "client-a")).toEqual({
      status: 200,
      text: "origin says /private/a (auth: Bearer client-a)",
    });
    // RFC 9111 3.5: an answer to credentials the origin did not mark shared is not stored,
    // so another credential gets its own, on the app and on the raw path alike.
    expect((await both("/private/a", "client-b")).text).toBe(
      "origin says /private/a (auth: Bearer client-b)",
    );
    expect(await rawBoth("/private/a", "client-c")).toBe(
      "origin says /private/a (auth: Bearer client-c)",
    );
    expect(atOrigin).toEqual(["Bearer client-a", "Bearer client-b", "Bearer client-c"]);
  });

  it("an answer stored for no credential is not served to one (app and raw path)", async () => {
    await body("gamma", "/shared/b");
    expect((await body("gamma", "/shared/b")).cache).toMatch(/^edgecache; hit/);
    atOrigin = [];
    expect((await both("/shared/b", "client-a")).text).toBe(
      "origin says /shared/b (auth: Bearer client-a)",
    );
    expect(await rawBoth("/shared/b", "client-b")).toBe(
      "origin says /shared/b (auth: Bearer client-b)",
    );
    expect(atOrigin).toEqual(["Bearer client-a", "Bearer client-b"]);
  });

  it("the key comes from X-Edgecache-Key alone: a wrong one is refused whatever Authorization holds", async () => {
    // A wrong X-Edgecache-Key is refused even when Authorization holds a tenant's key.
    expect((await both("/private/a", keys.gamma!, "ek_nope")).status).toBe(401);
    // Without X-Edgecache-Key, Authorization: Bearer is the key, and is never passed on.
    atOrigin = [];
    expect((await body("gamma", "/private/c")).text).toBe("origin says /private/c (auth: none)");
    expect(atOrigin).toEqual(["none"]);
    // The admin API is the tenant's with either way of sending the key.
    const stats = await fetch(`${url}/_edgecache/stats`, {
      headers: { "x-edgecache-key": keys.gamma!, authorization: "Bearer client-a" },
    });
    expect(stats.status).toBe(200);
  });
});

describe("no credential of edgecache's reaches a tenant's origin", () => {
  /** A request over a raw socket to gamma's origin, with the fields given: the origin's record. */
  const sent = async (method: string, path: string, fields: string) => {
    atOrigin = [];
    const head = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${fields}Content-Length: 0\r\n\r\n`;
    const { replies } = await exchange(port, head, [method]);
    expect(replies[0]!.status).toBe(200);
    return atOrigin;
  };

  it("a path that only starts like the admin prefix is the origin's: no admin token goes with it", async () => {
    // Not the admin API (isAdminPath): the tenant app's own token must not replace the key.
    for (const path of [
      "/_edgecache_x",
      "/_edgecache.json",
      "/_edgecache%e0%80%af",
      "/_edgecachex/y",
    ]) {
      expect(await sent("GET", path, `Authorization: Bearer ${keys.gamma}\r\n`)).toEqual(["none"]);
      expect(await sent("GET", `${path}?by=header`, `X-Edgecache-Key: ${keys.gamma}\r\n`)).toEqual([
        "none",
      ]);
    }
  });

  it("X-Edgecache-Key in every spelling a CGI stack reads as it is removed", async () => {
    for (const name of [
      "X_Edgecache_Key",
      "x_edgecache_key",
      "X-EDGECACHE_key",
      "x_Edgecache-Key",
    ]) {
      const key = `${name}: ${keys.gamma}\r\n`;
      // Beside the key in Authorization, and beside X-Edgecache-Key itself.
      expect(
        await sent("POST", "/spelling", `Authorization: Bearer ${keys.gamma}\r\n${key}`),
      ).toEqual(["none"]);
      expect(await sent("POST", "/spelling", `X-Edgecache-Key: ${keys.gamma}\r\n${key}`)).toEqual([
        "none",
      ]);
    }
  });

  it("Authorization holding a tenant's key beside X-Edgecache-Key is a key, not the client's credential", async () => {
    const keyed = (token: string) =>
      sent("POST", "/both", `X-Edgecache-Key: ${keys.gamma}\r\nAuthorization: Bearer ${token}\r\n`);
    // The same key, the scheme in any case, and other tenants' keys (full and read-only).
    expect(await keyed(keys.gamma!)).toEqual(["none"]);
    expect(
      await sent(
        "GET",
        "/both",
        `X-Edgecache-Key: ${keys.gamma}\r\nAuthorization: bEARER   ${keys.gamma}\r\n`,
      ),
    ).toEqual(["none"]);
    expect(await keyed(keys.alpha!)).toEqual(["none"]);
    expect(await keyed(keys.deltaRead!)).toEqual(["none"]);
    // The raw hit path: a stored answer is served as to a request without Authorization.
    await sent("GET", "/both-hit", `Authorization: Bearer ${keys.gamma}\r\n`);
    expect(
      await sent(
        "GET",
        "/both-hit",
        `X-Edgecache-Key: ${keys.gamma}\r\nAuthorization: Bearer ${keys.gamma}\r\n`,
      ),
    ).toEqual([]);
    // Anything else is the client's own, passed on.
    expect(await keyed("client-a")).toEqual(["Bearer client-a"]);
  });
});

describe("scopes and public reads", () => {
  /** A request over a raw socket, with the Host and fields given. */
  const send = async (method: string, path: string, fields: string, body = "") => {
    const head = `${method} ${path} HTTP/1.1\r\n${fields}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
    const { replies } = await exchange(port, head + body, [method]);
    return replies[0]!;
  };
  const json = "Content-Type: application/json\r\n";

  it("a read-only key reads, and is refused writes and invalidations (403)", async () => {
    expect((await body("deltaRead", "/v1/items/1")).text).toContain('"delta-1"');
    const stats = await as("deltaRead", "/_edgecache/stats");
    expect(stats.status).toBe(200);
    const write = await as("deltaRead", "/v1/items/1", {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "nope" }),
    });
    expect(write.status).toBe(403);
    expect(((await write.json()) as { error: { message: string } }).error.message).toMatch(
      /may only read/,
    );
    const invalidate = await as("deltaRead", "/_edgecache/invalidate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prefix: "GET /" }),
    });
    expect(invalidate.status).toBe(403);
    // The full key writes.
    const ok = await as("delta", "/v1/items/1", {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "delta-1-new" }),
    });
    expect(ok.status).toBe(200);
  });

  it("without a key, reads naming the public host are that tenant's, raw hits included; nothing else is", async () => {
    const host = `Host: public.example:${port}\r\n`;
    const first = await send("GET", "/v1/items/2", host);
    expect(first.status).toBe(200);
    expect(first.body.toString()).toContain('"delta-2"');
    const pipelined = await exchange(port, `GET /v1/items/2 HTTP/1.1\r\n${host}\r\n`.repeat(2), [
      "GET",
      "GET",
    ]);
    for (const r of pipelined.replies) {
      expect(r.header("cache-status")).toMatch(/^edgecache; hit/);
      expect(r.body.toString()).toContain('"delta-2"');
    }
    expect((await send("PATCH", "/v1/items/2", host + json, '{"name":"x"}')).status).toBe(403);
    expect((await send("GET", "/_edgecache/stats", host)).status).toBe(401);
    expect((await send("GET", "/v1/items/2", `Host: 127.0.0.1:${port}\r\n`)).status).toBe(401);
    // A wrong key is refused even on the public host.
    expect((await send("GET", "/v1/items/2", `${host}X-Edgecache-Key: ek_wrong\r\n`)).status).toBe(
      401,
    );
  });

  it("the admin prefix percent-encoded is a 404, with a key, without, and on the public host", async () => {
    for (const path of ["/%5fedgecache/stats", "/_%65dgecache/keys"]) {
      expect((await fetch(`${url}${path}`)).status, path).toBe(404);
      expect((await as("alpha", path)).status, path).toBe(404);
      expect((await send("GET", path, `Host: public.example:${port}\r\n`)).status, path).toBe(404);
    }
  });

  it("rotate-key --read replaces the read-only key and keeps the full one", async () => {
    const old = keys.deltaRead!;
    const r = await cli(["tenants", "rotate-key", "delta", "--read", "--json", "--state", state]);
    expect(r.code).toBe(0);
    keys.deltaRead = JSON.parse(r.stdout).key;
    expect((await fetch(`${url}/v1/items/1`, { headers: { "x-edgecache-key": old } })).status).toBe(
      401,
    );
    expect((await body("deltaRead", "/v1/items/1")).status).toBe(200);
    expect((await body("delta", "/v1/items/1")).status).toBe(200);
  }, 30_000);
});

describe("metrics", () => {
  const lineWith = (text: string, name: string, ...labels: string[]) =>
    text.split("\n").find((l) => l.startsWith(name) && labels.every((label) => l.includes(label)));

  it("the operator's token: every tenant's metrics, labelled by tenant and tier", async () => {
    await body("alpha", "/v1/items/1");
    await body("beta", "/v1/items/1");
    const r = await fetch(`${url}/_edgecache/metrics`, {
      headers: { authorization: `Bearer ${OPERATOR}` },
    });
    expect(r.status).toBe(200);
    const text = await r.text();
    for (const tenant of ["alpha", "beta"]) {
      const hits = lineWith(text, "edgecache_hits_total", `tenant="${tenant}"`);
      expect(Number(hits!.split(" ")[1])).toBeGreaterThan(0);
      expect(
        lineWith(
          text,
          "edgecache_read_duration_seconds_count",
          'tier="memory"',
          `tenant="${tenant}"`,
        ),
      ).toBeDefined();
    }
    expect(text).toContain("edgecache_process_cpu_seconds_total");
    // Its stats: the tenants' summed, and each one's.
    const stats = (await fetch(`${url}/_edgecache/stats`, {
      headers: { authorization: `Bearer ${OPERATOR}` },
    }).then((x) => x.json())) as { hits: number; tenants: { name: string; hits: number }[] };
    const names = stats.tenants.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(["alpha", "beta"]));
    expect(stats.hits).toBe(stats.tenants.reduce((n, t) => n + t.hits, 0));
    // The operator's token is no tenant's key: it reaches no entry.
    const invalidate = await fetch(`${url}/_edgecache/invalidate`, {
      method: "POST",
      headers: { authorization: `Bearer ${OPERATOR}`, "content-type": "application/json" },
      body: JSON.stringify({ prefix: "GET /" }),
    });
    expect(invalidate.status).toBe(401);
    expect(
      (await fetch(`${url}/v1/items/1`, { headers: { authorization: `Bearer ${OPERATOR}` } }))
        .status,
    ).toBe(401);
  });

  it("a tenant's key: its own metrics only", async () => {
    const text = await (await as("alpha", "/_edgecache/metrics")).text();
    expect(text).toContain('tenant="alpha"');
    expect(text).not.toContain('tenant="beta"');
    expect(text).not.toContain('tenant="gamma"');
  });
});

describe("managing tenants while the node runs", () => {
  it("rotate-key: the old key is refused at once, on the raw path too; the cache stays", async () => {
    await body("alpha", "/v1/items/1");
    const old = keys.alpha!;
    const r = await cli(["tenants", "rotate-key", "alpha", "--json", "--state", state]);
    expect(r.code).toBe(0);
    keys.alpha = JSON.parse(r.stdout).key;
    expect(keys.alpha).not.toBe(old);
    const refused = await exchange(port, rawGet("/v1/items/1", old), ["GET"]);
    expect(refused.replies[0]!.status).toBe(401);
    const hit = await body("alpha", "/v1/items/1");
    expect(hit.status).toBe(200);
    expect(hit.cache).toMatch(/^edgecache; hit/);
  }, 30_000);

  it("delete: the key stops working and the entries go; a new tenant of that name starts empty", async () => {
    expect((await body("beta", "/v1/items/1")).status).toBe(200);
    await body("beta", "/v1/items/1");
    // Each tenant's cache has a file of its own beside the state database.
    const folders = () => readdirSync(join(dir, "state.cache"));
    const betaFolder = folders().find((f) => f.startsWith("beta-"));
    expect(existsSync(join(dir, "state.cache", betaFolder!, "cache.db"))).toBe(true);
    expect((await cli(["tenants", "delete", "beta", "--state", state])).code).toBe(0);
    expect((await body("beta", "/v1/items/1")).status).toBe(401);
    await expect.poll(folders).not.toContain(betaFolder);
    keys.beta = await createTenant("beta", ["--db", join(dir, "b.db")]);
    expect((await body("beta", "/v1/items/1")).cache).toMatch(/fwd=miss/);
  }, 30_000);

  it("list shows names and sources, never keys; mistakes exit with their codes", async () => {
    const r = await cli(["tenants", "list", "--state", state]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^NAME\s+SOURCE/);
    for (const name of ["alpha", "beta", "gamma", "delta"]) expect(r.stdout).toContain(name);
    expect(r.stdout).toMatch(/^delta\s.*\syes\s+public\.example\s/m);
    for (const key of Object.values(keys)) expect(r.stdout).not.toContain(key);
    expect(r.stdout).not.toContain("ek_");

    const dup = await cli([
      "tenants",
      "create",
      "alpha",
      "--db",
      join(dir, "a.db"),
      "--state",
      state,
    ]);
    expect(dup.code).toBe(1);
    expect(dup.stderr.trim()).toBe('[edgecache] [tenants] tenant "alpha" exists');
    const missing = await cli(["tenants", "rotate-key", "nobody", "--state", state]);
    expect(missing.code).toBe(5);
    const badName = await cli([
      "tenants",
      "create",
      "Bad Name",
      "--origin",
      origin.url,
      "--state",
      state,
    ]);
    expect(badName.code).toBe(2);
  }, 60_000);
});
