import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Row } from "../../src/core/data/query.ts";
import { DependencyIndex } from "../../src/core/deps/index.ts";
import {
  booksDatabase,
  expectClientError,
  expectNothingInternal,
  type Harness,
  HIT,
  MISS_STORED,
  type Reply,
  send,
  startEdgecache,
  tempDir,
} from "./harness.ts";

// The data API end to end: createNodeEdgecache over a real demo SQLite file (200 users,
// 1000 orders) in a temp dir, requests through the whole Hono app. Every answer is checked
// against a fresh query over a second connection, never against the API itself.

let h: Harness;

beforeEach(async () => {
  h = await startEdgecache();
});

afterEach(async () => {
  await h.close();
});

const get = (path: string, headers?: Record<string, string>) =>
  send(h.edgecache, "GET", path, undefined, headers);
const status = (r: Reply) => r.headers.get("cache-status");
const ids = (r: Reply) => (r.json.data as Row[]).map((row) => row.id);

function usersWhere(where: string, ...params: unknown[]): Row[] {
  return h.fresh(`SELECT * FROM users WHERE ${where} ORDER BY id LIMIT 1000`, ...params);
}
function ordersOf(userId: unknown): Row[] {
  return h.fresh("SELECT * FROM orders WHERE userId = ? ORDER BY id", userId);
}
/** A user who has orders (so the usersWithOrders view has something to show). */
function userWithOrders(): Row {
  return h.fresh(
    "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.userId = u.id) ORDER BY id LIMIT 1",
  )[0]!;
}
/** GETs each path twice and checks the second answer is a cache hit. */
async function warm(...paths: string[]): Promise<void> {
  for (const path of paths) {
    expect((await get(path)).status).toBeLessThan(500);
    expect(status(await get(path)), path).toMatch(HIT);
  }
}

const newUser = (over: Row = {}): Row => ({
  firstName: "Lane",
  lastName: "Newcomer",
  email: "lane.newcomer@example.com",
  createdAt: "2025-06-01T12:00:00Z",
  ...over,
});

describe("a new user's walkthrough", () => {
  it("answers a repeated GET from the cache", async () => {
    const first = await get("/v1/users?limit=5");
    expect(first.status).toBe(200);
    expect(status(first)).toMatch(MISS_STORED);
    const second = await get("/v1/users?limit=5");
    expect(status(second)).toMatch(HIT);
    expect(second.text).toBe(first.text);
  });

  it("shows a PATCH at once in every cached item and list that holds the user", async () => {
    const user = userWithOrders();
    const id = user.id as string;
    const oldName = user.firstName as string;
    const newName = oldName === "Lane" ? "Mary" : "Lane";
    const paths = {
      item: `/v1/users/${id}`,
      oldList: `/v1/users?firstName=${oldName}&limit=1000`,
      newList: `/v1/users?firstName=${newName}&limit=1000`,
      viewItem: `/v1/usersWithOrders/${id}`,
      viewList: `/v1/usersWithOrders?firstName=${oldName}&limit=1000`,
    };
    await warm(...Object.values(paths));
    expect(ids(await get(paths.oldList))).toContain(id);

    const patched = await send(h.edgecache, "PATCH", paths.item, { firstName: newName });
    expect(patched.status).toBe(200);

    expect((await get(paths.item)).json).toEqual({ ...user, firstName: newName });
    const oldList = await get(paths.oldList);
    expect(ids(oldList)).not.toContain(id);
    expect(oldList.json.data).toEqual(usersWhere("firstName = ?", oldName));
    const newList = await get(paths.newList);
    expect(ids(newList)).toContain(id);
    expect(newList.json.data).toEqual(usersWhere("firstName = ?", newName));
    expect((await get(paths.viewItem)).json).toEqual({
      ...user,
      firstName: newName,
      orders: ordersOf(id),
    });
    const viewList = await get(paths.viewList);
    expect(ids(viewList)).not.toContain(id);
    expect(ids(viewList)).toEqual(usersWhere("firstName = ?", oldName).map((u) => u.id));
  });

  it("keeps a cached list that cannot contain the patched user a hit", async () => {
    const user = userWithOrders();
    const oldName = user.firstName as string;
    const newName = oldName === "Lane" ? "Mary" : "Lane";
    const other = h.fresh(
      "SELECT firstName FROM users WHERE firstName NOT IN (?, ?) LIMIT 1",
      oldName,
      newName,
    )[0]!.firstName as string;
    const otherUser = h.fresh("SELECT id FROM users WHERE id <> ? LIMIT 1", user.id)[0]!.id;
    const unrelated = [`/v1/users?firstName=${other}&limit=1000`, `/v1/users/${otherUser}`];
    await warm(...unrelated);

    const patched = await send(h.edgecache, "PATCH", `/v1/users/${user.id}`, {
      firstName: newName,
    });
    expect(patched.status).toBe(200);

    for (const path of unrelated) expect(status(await get(path)), path).toMatch(HIT);
  });

  it("lists a POSTed user in a cached list at once and forgets it after DELETE", async () => {
    const list = "/v1/users?firstName=Lane&limit=1000";
    await warm(list);

    const created = await send(h.edgecache, "POST", "/v1/users", newUser());
    expect(created.status).toBe(201);
    const id = created.json.id as string;
    const afterPost = await get(list);
    expect(ids(afterPost)).toContain(id);
    expect(afterPost.json.data).toEqual(usersWhere("firstName = 'Lane'"));
    await warm(list, `/v1/users/${id}`);

    const deleted = await send(h.edgecache, "DELETE", `/v1/users/${id}`);
    expect(deleted.status).toBe(204);
    const afterDelete = await get(list);
    expect(ids(afterDelete)).not.toContain(id);
    expect(afterDelete.json.data).toEqual(usersWhere("firstName = 'Lane'"));
    expectClientError(await get(`/v1/users/${id}`), 404, "E_NOT_FOUND");
  });

  it("creates a user from firstName, lastName and email: createdAt is the time of the insert", async () => {
    const before = new Date().toISOString().slice(0, 19);
    const r = await send(h.edgecache, "POST", "/v1/users", {
      firstName: "Lane",
      lastName: "First",
      email: "lane.first@example.com",
    });
    expect(r.status).toBe(201);
    // The seeded rows' format: ISO 8601 to the second, in UTC.
    expect(r.json.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(r.json.createdAt.slice(0, 19) >= before).toBe(true);
    expect(usersWhere("id = ?", r.json.id)).toEqual([r.json]);
    const order = await send(h.edgecache, "POST", "/v1/orders", {
      userId: r.json.id,
      total: 12.5,
      status: "pending",
    });
    expect(order.status).toBe(201);
    expect(order.json.createdAt).toMatch(/Z$/);
  });

  it("refuses a new row without a required value with a 400 naming the column, not a 409", async () => {
    const r = await send(h.edgecache, "POST", "/v1/users", { firstName: "Lane", lastName: "X" });
    expectClientError(r, 400, "E_BAD_BODY", '"email"');
    const cwd = tempDir();
    booksDatabase(cwd);
    const books = await startEdgecache({ database: "books.db" }, cwd);
    try {
      const none = await send(books.edgecache, "POST", "/v1/books", { pages: 10 });
      expectClientError(none, 400, "E_BAD_BODY", 'column "title" is required');
      const reviews = await send(books.edgecache, "POST", "/v1/reviews", {});
      expectClientError(reviews, 400, "E_BAD_BODY", '"bookId"', '"stars"');
    } finally {
      await books.close();
    }
  });
});

describe("response format", () => {
  it("answers a list as {data, limit, offset}", async () => {
    const r = await get("/v1/users?limit=5&offset=10");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    expect(r.json).toEqual({
      data: h.fresh("SELECT * FROM users ORDER BY id LIMIT 5 OFFSET 10"),
      limit: 5,
      offset: 10,
    });
    const defaults = await get("/v1/users");
    expect(defaults.json.limit).toBe(20);
    expect(defaults.json.offset).toBe(0);
    expect(defaults.json.data).toHaveLength(20);
  });

  it("answers an item as the row, and an unknown id as a 404 E_NOT_FOUND", async () => {
    const user = userWithOrders();
    const r = await get(`/v1/users/${user.id}`);
    expect(r.status).toBe(200);
    expect(r.json).toEqual(user);
    expect((await get(`/v1/usersWithOrders/${user.id}`)).json).toEqual({
      ...user,
      orders: ordersOf(user.id),
    });
    const missing = await get("/v1/users/no-such-user");
    expectClientError(missing, 404, "E_NOT_FOUND", "no-such-user");
  });

  it("answers a POST with 201, the stored row with a generated id, and its Location", async () => {
    const r = await send(h.edgecache, "POST", "/v1/users", newUser());
    expect(r.status).toBe(201);
    expect(typeof r.json.id).toBe("string");
    expect(r.json.id).not.toBe("");
    expect(r.json).toEqual({ id: r.json.id, ...newUser() });
    expect(r.headers.get("location")).toBe(`/v1/users/${encodeURIComponent(r.json.id)}`);
    expect(h.fresh("SELECT * FROM users WHERE id = ?", r.json.id)).toEqual([r.json]);
    expect((await get(r.headers.get("location")!)).json).toEqual(r.json);
  });

  it("answers a PATCH with 200 and the whole updated row", async () => {
    const user = userWithOrders();
    const r = await send(h.edgecache, "PATCH", `/v1/users/${user.id}`, { lastName: "Renamed" });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ ...user, lastName: "Renamed" });
    expect(h.fresh("SELECT * FROM users WHERE id = ?", user.id)).toEqual([r.json]);
  });

  it("refuses a PUT that leaves out a NOT NULL column with a 400 naming it", async () => {
    const user = userWithOrders();
    await warm(`/v1/users/${user.id}`);
    const { lastName: _omitted, id: _id, ...rest } = user;
    const r = await send(h.edgecache, "PUT", `/v1/users/${user.id}`, rest);
    expectClientError(r, 400, "E_BAD_BODY", "lastName");
    expect(h.fresh("SELECT * FROM users WHERE id = ?", user.id)).toEqual([user]);
    expect(status(await get(`/v1/users/${user.id}`))).toMatch(HIT);
  });

  it("replaces the whole row on PUT: columns it leaves out become null", async () => {
    const cwd = tempDir();
    booksDatabase(cwd);
    const books = await startEdgecache({ database: "books.db" }, cwd);
    try {
      await send(books.edgecache, "GET", "/v1/books/1");
      const r = await send(books.edgecache, "PUT", "/v1/books/1", { title: "Dune Messiah" });
      expect(r.status).toBe(200);
      const replaced = { id: 1, title: "Dune Messiah", subtitle: null, pages: null };
      expect(r.json).toEqual(replaced);
      expect(books.fresh("SELECT * FROM books WHERE id = 1")).toEqual([replaced]);
      expect((await send(books.edgecache, "GET", "/v1/books/1")).json).toEqual(replaced);
    } finally {
      await books.close();
    }
  });

  it("answers a DELETE with 204 and no body", async () => {
    const user = userWithOrders();
    const r = await send(h.edgecache, "DELETE", `/v1/users/${user.id}`);
    expect(r.status).toBe(204);
    expect(r.text).toBe("");
    expect(h.fresh("SELECT * FROM users WHERE id = ?", user.id)).toEqual([]);
  });

  it.each([
    ["POST", "/v1/usersWithOrders"],
    ["PATCH", "/v1/usersWithOrders/ID"],
    ["PUT", "/v1/usersWithOrders/ID"],
    ["DELETE", "/v1/usersWithOrders/ID"],
  ])("refuses %s to the read-only view usersWithOrders with 405", async (method, path) => {
    const user = userWithOrders();
    const body = method === "DELETE" ? undefined : { lastName: "Nope" };
    const r = await send(h.edgecache, method, path.replace("ID", String(user.id)), body);
    expectClientError(r, 405, "E_METHOD_NOT_ALLOWED", "usersWithOrders");
    expect(h.fresh("SELECT * FROM users WHERE id = ?", user.id)).toEqual([user]);
  });
});

describe("filters, sort and windows", () => {
  it("filters by equality", async () => {
    const r = await get("/v1/users?lastName=Smith&limit=1000");
    expect(r.status).toBe(200);
    expect(r.json.data.length).toBeGreaterThan(0);
    expect(r.json.data).toEqual(usersWhere("lastName = 'Smith'"));
  });

  it("filters by prefix with id=12*", async () => {
    const r = await get("/v1/users?id=12*&limit=1000");
    expect(r.json.data.length).toBeGreaterThan(1);
    for (const id of ids(r)) expect(String(id).startsWith("12")).toBe(true);
    expect(r.json.data).toEqual(usersWhere("substr(id, 1, 2) = '12'"));
  });

  it("filters by prefix on a date column (createdAt=2025-03*)", async () => {
    const r = await get("/v1/users?createdAt=2025-03*&limit=1000");
    expect(r.status).toBe(200);
    expect(r.json.data.length).toBeGreaterThan(0);
    expect(r.json.data).toEqual(usersWhere("substr(createdAt, 1, 7) = '2025-03'"));
  });

  it("compares numbers with total[gte]=100&total[lt]=200", async () => {
    const r = await get("/v1/orders?total[gte]=100&total[lt]=200&limit=1000");
    expect(r.json.data.length).toBeGreaterThan(0);
    for (const o of r.json.data as Row[]) {
      expect(o.total).toBeGreaterThanOrEqual(100);
      expect(o.total).toBeLessThan(200);
    }
    expect(r.json.data).toEqual(
      h.fresh("SELECT * FROM orders WHERE total >= 100 AND total < 200 ORDER BY id LIMIT 1000"),
    );
  });

  it("compares dates with createdAt[gte]=2025-01-01", async () => {
    const r = await get("/v1/users?createdAt[gte]=2025-01-01&limit=1000");
    expect(r.json.data.length).toBeGreaterThan(0);
    for (const u of r.json.data as Row[]) expect(String(u.createdAt) >= "2025-01-01").toBe(true);
    expect(r.json.data).toEqual(usersWhere("createdAt >= '2025-01-01'"));
  });

  it("sorts by sort=-createdAt,lastName with the id as tie-breaker", async () => {
    const r = await get("/v1/users?sort=-createdAt,lastName&limit=1000");
    expect(r.json.data).toEqual(
      h.fresh("SELECT * FROM users ORDER BY createdAt DESC, lastName ASC, id ASC LIMIT 1000"),
    );
  });

  it("pages with limit and offset windows", async () => {
    const all = h.fresh("SELECT * FROM users ORDER BY id");
    expect((await get("/v1/users?limit=10&offset=5")).json.data).toEqual(all.slice(5, 15));
    expect((await get("/v1/users?limit=10&offset=195")).json.data).toEqual(all.slice(195));
    expect((await get("/v1/users?offset=500")).json.data).toEqual([]);
  });

  it("shows an insert in a cached window it shifts, and keeps windows it cannot reach", async () => {
    const window = "/v1/users?limit=5&offset=5";
    const first = "/v1/users?limit=5";
    await warm(window, first);

    // Ids sort as text: "0-..." comes before every seeded id, "zzz" after all of them.
    const late = await send(h.edgecache, "POST", "/v1/users", newUser({ id: "zzz-late" }));
    expect(late.status).toBe(201);
    expect(status(await get(window))).toMatch(HIT);
    expect(status(await get(first))).toMatch(HIT);

    const early = await send(
      h.edgecache,
      "POST",
      "/v1/users",
      newUser({ id: "0-early", email: "early@example.com" }),
    );
    expect(early.status).toBe(201);
    expect((await get(window)).json.data).toEqual(
      h.fresh("SELECT * FROM users ORDER BY id LIMIT 5 OFFSET 5"),
    );
    expect(ids(await get(first))[0]).toBe("0-early");
  });

  it("turns a cached 404 into a 200 once a POST creates that id", async () => {
    const missing = "/v1/users/new-user-1";
    expect((await get(missing)).status).toBe(404);
    expect(status(await get(missing))).toMatch(HIT);

    const r = await send(h.edgecache, "POST", "/v1/users", newUser({ id: "new-user-1" }));
    expect(r.status).toBe(201);
    const found = await get(missing);
    expect(found.status).toBe(200);
    expect(found.json).toEqual(r.json);
  });

  it("turns a cached 404 of a numeric key into a 200 once a POST creates it, however the id was spelled", async () => {
    const cwd = tempDir();
    booksDatabase(cwd);
    const books = await startEdgecache({ database: "books.db" }, cwd);
    try {
      const spellings = ["/v1/books/5", "/v1/books/05", "/v1/books/5.0"];
      for (const path of spellings) {
        expect((await send(books.edgecache, "GET", path)).status).toBe(404);
      }
      const created = await send(books.edgecache, "POST", "/v1/books", { id: 5, title: "Kim" });
      expect(created.status).toBe(201);
      for (const path of spellings) {
        const r = await send(books.edgecache, "GET", path);
        expect(r.status, path).toBe(200);
        expect(r.json).toEqual(created.json);
      }
    } finally {
      await books.close();
    }
  });
});

describe("bad input", () => {
  it.each([
    ["/v1/users?limit=abc", "limit"],
    ["/v1/users?limit=0", "limit"],
    ["/v1/users?limit=1001", "limit"],
    ["/v1/users?offset=-1", "offset"],
    ["/v1/users?nickname=Lane", "nickname"],
    ["/v1/orders?total[like]=x", "like"],
    ["/v1/orders?total=12*", "total"],
    ["/v1/orders?total=abc", "total"],
    ["/v1/users?createdAt[gte]=yesterday", "createdAt[gte]"],
    ["/v1/users?sort=nickname", "sort"],
  ])("answers GET %s with a 400 E_BAD_QUERY naming %s", async (path, name) => {
    const r = await get(path);
    expectClientError(r, 400, "E_BAD_QUERY", name);
    expect(r.headers.get("cache-status")).toBeNull();
  });

  it.each([
    ["?junk=1", "junk"],
    ["?fields=id", "fields"],
    ["?x", "x"],
  ])(
    "answers an item GET with %s, a parameter it does not take, with a 400 naming %s, and stores nothing",
    async (query, name) => {
      const user = usersWhere("1 = 1")[0]!;
      const indexed = h.edgecache.cache.stats().indexedKeys;
      const r = await get(`/v1/users/${user.id}${query}`);
      expectClientError(r, 400, "E_BAD_QUERY", name);
      expect(r.headers.get("cache-status")).toBeNull();
      expect(h.edgecache.cache.stats().indexedKeys).toBe(indexed);
    },
  );

  it.each([
    ["malformed JSON", '{"firstName": ', "body"],
    ["an array", "[]", "body"],
    ["a string", '"Lane"', "body"],
    ["an unknown column", { ...newUser(), nickname: "L" }, "nickname"],
    ["a non-numeric date", newUser({ createdAt: "2025" }), "createdAt"],
    // URLs drop dot segments (RFC 3986 5.2.4): no URL could read, change or delete the row.
    ["an id of .", newUser({ id: "." }), 'id "."'],
    ["an id of ..", newUser({ id: ".." }), 'id ".."'],
    // An empty segment: /v1/users/ is the list, not the row.
    ["an empty id", newUser({ id: "" }), 'id ""'],
    // What a value is, in words: never "a object" or "[object Object]".
    ["an object for a name", newUser({ firstName: { toString: 1 } }), "got an object"],
    ["null as the body", "null", "got null"],
    ["a number as the body", "5", "got 5"],
  ])("answers a POST whose body is %s with a 400 E_BAD_BODY naming %s", async (_, body, name) => {
    const before = h.fresh("SELECT count(*) AS n FROM users");
    const r = await send(h.edgecache, "POST", "/v1/users", body);
    expectClientError(r, 400, "E_BAD_BODY", name);
    expect(h.fresh("SELECT count(*) AS n FROM users")).toEqual(before);
  });

  it("answers a POST of a value nested 50,000 deep with a 400, not a stack overflow's 500", async () => {
    const deep = `{"firstName": ${"[".repeat(50_000)}${"]".repeat(50_000)}}`;
    expectClientError(
      await send(h.edgecache, "POST", "/v1/users", deep),
      400,
      "E_BAD_BODY",
      "nested",
    );
  });

  it("answers a PATCH with an unknown column with a 400 naming it", async () => {
    const user = userWithOrders();
    const r = await send(h.edgecache, "PATCH", `/v1/users/${user.id}`, { nickname: "L" });
    expectClientError(r, 400, "E_BAD_BODY", "nickname");
  });

  it("answers a duplicate email with 409 E_CONFLICT and leaves cached lists hits", async () => {
    await warm("/v1/users?limit=5");
    const taken = h.fresh("SELECT email FROM users LIMIT 1")[0]!.email;
    const r = await send(h.edgecache, "POST", "/v1/users", newUser({ email: taken }));
    expectClientError(r, 409, "E_CONFLICT", "email");
    expect(status(await get("/v1/users?limit=5"))).toMatch(HIT);
  });

  it("answers a duplicate primary key and a dangling foreign key with 409 E_CONFLICT", async () => {
    const user = userWithOrders();
    const dup = await send(h.edgecache, "POST", "/v1/users", newUser({ id: user.id }));
    expectClientError(dup, 409, "E_CONFLICT");
    const order = { userId: "nobody", total: 5, status: "paid", createdAt: "2025-01-01T00:00:00Z" };
    expectClientError(await send(h.edgecache, "POST", "/v1/orders", order), 409, "E_CONFLICT");
  });

  it.each([
    ["GET", "/v1/nothing"],
    ["GET", "/v1/nothing/1"],
    ["POST", "/v1/nothing"],
    ["PATCH", "/v1/users/no-such-user"],
    ["DELETE", "/v1/users/no-such-user"],
    ["GET", "/v2/users"],
    ["GET", "/v1/users/1-abc/orders"],
  ])("answers %s %s with a 404 E_NOT_FOUND", async (method, path) => {
    const body = method === "POST" || method === "PATCH" ? { firstName: "X" } : undefined;
    expectClientError(await send(h.edgecache, method, path, body), 404, "E_NOT_FOUND");
  });
});

describe("HTTP caching headers", () => {
  it("sends a strong ETag that stays the same between the miss and the hit", async () => {
    const miss = await get("/v1/users?limit=3");
    const etag = miss.headers.get("etag");
    expect(etag).toMatch(/^"[^"]+"$/);
    expect((await get("/v1/users?limit=3")).headers.get("etag")).toBe(etag);
  });

  it("answers If-None-Match with the current ETag with 304 and no body, on a hit", async () => {
    const { headers } = await get("/v1/users?limit=3");
    const etag = headers.get("etag")!;
    const r = await get("/v1/users?limit=3", { "if-none-match": etag });
    expect(r.status).toBe(304);
    expect(r.text).toBe("");
    expect(r.headers.get("etag")).toBe(etag);
    expect(status(r)).toMatch(HIT);
    // RFC 9110 13.1.2: If-None-Match compares weakly.
    expect((await get("/v1/users?limit=3", { "if-none-match": `W/${etag}` })).status).toBe(304);
    expect((await get("/v1/users?limit=3", { "if-none-match": '"other"' })).status).toBe(200);
  });

  it("answers If-None-Match with the current ETag with 304 and no body, on a miss", async () => {
    const { headers } = await get("/v1/users?limit=3");
    // Another key (offset=0 spelled out) whose body is byte for byte the same.
    const r = await get("/v1/users?limit=3&offset=0", { "if-none-match": headers.get("etag")! });
    expect(status(r)).toMatch(MISS_STORED);
    expect(r.status).toBe(304);
    expect(r.text).toBe("");
  });

  it("sends Age and Cache-Status: fwd=miss; stored, then hit", async () => {
    const miss = await get("/v1/orders?limit=3");
    expect(miss.headers.get("age")).toMatch(/^\d+$/);
    expect(status(miss)).toMatch(MISS_STORED);
    const hit = await get("/v1/orders?limit=3");
    expect(hit.headers.get("age")).toMatch(/^\d+$/);
    expect(status(hit)).toMatch(HIT);
    const ttl = Number(/ttl=(\d+)/.exec(status(hit)!)![1]);
    expect(ttl).toBeGreaterThan(86_000);
    expect(ttl).toBeLessThanOrEqual(86_400);
  });

  it("answers HEAD with the headers of GET and no body", async () => {
    const headMiss = await send(h.edgecache, "HEAD", "/v1/users?limit=3");
    expect(headMiss.status).toBe(200);
    expect(headMiss.text).toBe("");
    expect(status(headMiss)).toMatch(MISS_STORED);
    const getHit = await get("/v1/users?limit=3");
    expect(status(getHit)).toMatch(HIT);
    expect(getHit.headers.get("etag")).toBe(headMiss.headers.get("etag"));
    const headHit = await send(h.edgecache, "HEAD", "/v1/users?limit=3");
    expect(headHit.text).toBe("");
    expect(status(headHit)).toMatch(HIT);
  });

  it("shares one cache entry between query strings that differ only in order", async () => {
    const a = await get("/v1/users?firstName=Mary&limit=50");
    expect(status(a)).toMatch(MISS_STORED);
    const b = await get("/v1/users?limit=50&firstName=Mary");
    expect(status(b)).toMatch(HIT);
    expect(b.text).toBe(a.text);
  });

  it("never sends error responses with a cache header or anything internal", async () => {
    const r = await get("/v1/users?limit=abc");
    expect(r.headers.get("etag")).toBeNull();
    expectNothingInternal(r.text);
  });
});

describe("writes to joined tables", () => {
  it("shows a new order in the user's usersWithOrders entries while the user item stays a hit", async () => {
    const user = userWithOrders();
    const id = user.id as string;
    const paths = [
      `/v1/usersWithOrders/${id}`,
      `/v1/usersWithOrders?id=${id}`,
      `/v1/orders?userId=${id}&limit=1000`,
      `/v1/users/${id}`,
    ];
    await warm(...paths);

    const order = { userId: id, total: 42.5, status: "paid", createdAt: "2025-12-31T23:00:00Z" };
    const created = await send(h.edgecache, "POST", "/v1/orders", order);
    expect(created.status).toBe(201);

    const item = await get(paths[0]!);
    expect((item.json.orders as Row[]).map((o) => o.id)).toContain(created.json.id);
    expect(item.json).toEqual({ ...user, orders: ordersOf(id) });
    expect((await get(paths[1]!)).json.data).toEqual([{ ...user, orders: ordersOf(id) }]);
    expect((await get(paths[2]!)).json.data).toEqual(ordersOf(id));
    expect(status(await get(paths[3]!))).toMatch(HIT);
  });

  it("moves an order between two users' usersWithOrders entries when its userId changes", async () => {
    const [from, to] = h.fresh(
      "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.userId = u.id) ORDER BY id LIMIT 2",
    );
    const order = ordersOf(from!.id)[0]!;
    await warm(`/v1/usersWithOrders/${from!.id}`, `/v1/usersWithOrders/${to!.id}`);

    const r = await send(h.edgecache, "PATCH", `/v1/orders/${order.id}`, { userId: to!.id });
    expect(r.status).toBe(200);

    for (const user of [from!, to!]) {
      expect((await get(`/v1/usersWithOrders/${user.id}`)).json).toEqual({
        ...user,
        orders: ordersOf(user.id),
      });
    }
  });

  it("removes a deleted user's orders from cached order lists (ON DELETE CASCADE)", async () => {
    const user = userWithOrders();
    const id = user.id as string;
    const orders = `/v1/orders?userId=${id}&limit=1000`;
    const order = ordersOf(id)[0]!;
    await warm(orders, `/v1/orders/${order.id}`, `/v1/usersWithOrders/${id}`);
    expect((await get(orders)).json.data.length).toBeGreaterThan(0);

    expect((await send(h.edgecache, "DELETE", `/v1/users/${id}`)).status).toBe(204);

    expect(ordersOf(id)).toEqual([]);
    expect((await get(orders)).json.data).toEqual([]);
    expectClientError(await get(`/v1/orders/${order.id}`), 404, "E_NOT_FOUND");
    expectClientError(await get(`/v1/usersWithOrders/${id}`), 404, "E_NOT_FOUND");
  });
});

describe("rehydration", () => {
  // A view list a row enters cannot be patched (the new member's joined rows are not
  // cached), so the write invalidates it.
  const entered = (firstName: string) => `/v1/usersWithOrders?firstName=${firstName}&limit=1`;

  it("refetches a hot list invalidated by a PATCH, so the next read is a hit with the new value", async () => {
    const user = userWithOrders();
    const path = entered("Rehydrated");
    for (let i = 0; i < 3; i++) await get(path);

    const r = await send(h.edgecache, "PATCH", `/v1/users/${user.id}`, { firstName: "Rehydrated" });
    expect(r.status).toBe(200);
    await h.edgecache.cache.drain();

    const next = await get(path);
    expect(status(next)).toMatch(HIT);
    expect(next.json.data.map((u: { id: unknown }) => u.id)).toEqual([user.id]);
    expect(h.edgecache.cache.stats().rehydrations).toBeGreaterThan(0);
  });

  it("does not refetch an entry read only once", async () => {
    const user = userWithOrders();
    const path = entered("Cold");
    await get(path);
    const before = h.edgecache.cache.stats().rehydrations;
    await send(h.edgecache, "PATCH", `/v1/users/${user.id}`, { firstName: "Cold" });
    await h.edgecache.cache.drain();
    expect(h.edgecache.cache.stats().rehydrations).toBe(before);
    expect(status(await get(path))).toMatch(MISS_STORED);
  });
});

describe("patch in place", () => {
  it("answers the item a PATCH changed from the cache, with the new row and no query", async () => {
    const user = userWithOrders();
    const path = `/v1/users/${user.id}`;
    await get(path);
    const { loads, patches, invalidations } = h.edgecache.cache.stats();
    await send(h.edgecache, "PATCH", path, { lastName: "Patched" });
    const next = await get(path);
    expect(status(next)).toMatch(HIT);
    expect(next.json).toEqual({ ...user, lastName: "Patched" });
    const after = h.edgecache.cache.stats();
    expect(after.loads).toBe(loads);
    expect(after.patches).toBeGreaterThan(patches);
    // A patched entry is not counted as invalidated too: the only entry was patched.
    expect(after.invalidations).toBe(invalidations);
  });

  it("keeps a view item's orders when its user changes, and adds an order posted for it", async () => {
    const user = userWithOrders();
    const path = `/v1/usersWithOrders/${user.id}`;
    const before = (await get(path)).json;
    await send(h.edgecache, "PATCH", `/v1/users/${user.id}`, { firstName: "Patched" });
    const order = {
      id: "o-zzzzzz",
      userId: user.id,
      total: 1,
      status: "paid",
      createdAt: "2026-01-02T00:00:00Z",
    };
    expect((await send(h.edgecache, "POST", "/v1/orders", order)).status).toBe(201);
    const next = await get(path);
    expect(status(next)).toMatch(HIT);
    expect(next.json).toEqual({
      ...before,
      firstName: "Patched",
      orders: [...before.orders, order],
    });
    await send(h.edgecache, "DELETE", `/v1/orders/${order.id}`);
    const after = await get(path);
    expect(status(after)).toMatch(HIT);
    expect(after.json).toEqual({ ...before, firstName: "Patched" });
  });

  it("a user posted enters a cached page of the view over users with no query, its orders and all: even one written for its id before it existed, with foreign keys off", async () => {
    const path = "/v1/usersWithOrders?firstName=Zoltan&limit=5";
    await warm(path);
    expect((await get(path)).json.data).toEqual([]);
    // Another connection, foreign keys off (SQLite's default): an order for a user to come.
    const other = new Database(h.edgecache.databasePath);
    other.pragma("foreign_keys = OFF");
    other
      .prepare("INSERT INTO orders (id, userId, total, status, createdAt) VALUES (?, ?, ?, ?, ?)")
      .run("o-early", "u-zoltan", 5, "paid", "2026-01-01T00:00:00Z");
    other.close();
    const { loads, patches, invalidations } = h.edgecache.cache.stats();
    const user = newUser({ id: "u-zoltan", firstName: "Zoltan", email: "zoltan@example.com" });
    expect((await send(h.edgecache, "POST", "/v1/users", user)).status).toBe(201);
    const next = await get(path);
    expect(status(next)).toMatch(HIT);
    expect(next.json.data).toEqual(
      usersWhere("firstName = ?", "Zoltan").map((u) => ({ ...u, orders: ordersOf(u.id) })),
    );
    expect(next.json.data[0].orders.map((o: Row) => o.id)).toEqual(["o-early"]);
    const after = h.edgecache.cache.stats();
    expect(after.loads).toBe(loads);
    expect(after.patches).toBeGreaterThan(patches);
    expect(after.invalidations).toBe(invalidations);
  });

  it("patches a full page a row leaves from the rows it keeps past its window, with no other page cached", async () => {
    const path = "/v1/orders?sort=-createdAt&limit=3";
    await warm(path);
    const [first] = (await get(path)).json.data as { id: string }[];
    const { loads, invalidations } = h.edgecache.cache.stats();
    expect((await send(h.edgecache, "DELETE", `/v1/orders/${first!.id}`)).status).toBe(204);
    const next = await get(path);
    expect(status(next)).toMatch(HIT);
    expect(next.json.data).toEqual(
      h.fresh("SELECT * FROM orders ORDER BY createdAt DESC, id LIMIT 3"),
    );
    expect(h.edgecache.cache.stats()).toMatchObject({ loads, invalidations });
  });

  it("patches a page's margin when a row past its window changes, keeping its body's bytes", async () => {
    const path = "/v1/orders?sort=-createdAt&limit=3";
    await warm(path);
    const [next] = h.fresh("SELECT * FROM orders ORDER BY createdAt DESC, id LIMIT 1 OFFSET 3");
    const { loads } = h.edgecache.cache.stats();
    const stringify = vi.spyOn(JSON, "stringify");
    try {
      await send(h.edgecache, "PATCH", `/v1/orders/${next!.id}`, { total: 12345 });
      const bodies = stringify.mock.calls.filter(([v]) => typeof v === "object" && "data" in v);
      expect(bodies).toEqual([]);
    } finally {
      stringify.mockRestore();
    }
    const [first] = (await get(path)).json.data as { id: string }[];
    await send(h.edgecache, "DELETE", `/v1/orders/${first!.id}`);
    const after = await get(path);
    expect(status(after)).toMatch(HIT);
    expect(after.json.data).toEqual(
      h.fresh("SELECT * FROM orders ORDER BY createdAt DESC, id LIMIT 3"),
    );
    expect(after.json.data[2].total).toBe(12345);
    expect(h.edgecache.cache.stats().loads).toBe(loads);
  });

  it("leaves the pages that do not show a row alone when an update keeps what orders and filters them", async () => {
    const first = "/v1/orders?status=paid&sort=-createdAt&limit=3";
    const later = "/v1/orders?status=paid&sort=-createdAt&limit=3&offset=6";
    await warm(first, later);
    const [row] = h.fresh(
      "SELECT * FROM orders WHERE status = 'paid' ORDER BY createdAt DESC, id LIMIT 1",
    );
    const { loads, patches, invalidations } = h.edgecache.cache.stats();
    // Before the later page's window, but its place in the list is the same after.
    await send(h.edgecache, "PATCH", `/v1/orders/${row!.id}`, { total: 4321 });
    expect(h.edgecache.cache.stats()).toMatchObject({ loads, invalidations, patches: patches + 1 });
    const query = "SELECT * FROM orders WHERE status = 'paid' ORDER BY createdAt DESC, id";
    const bothHitAndCurrent = async () => {
      for (const [path, offset] of [
        [first, 0],
        [later, 6],
      ] as const) {
        const reply = await get(path);
        expect(status(reply), path).toMatch(HIT);
        expect(reply.json.data).toEqual(h.fresh(`${query} LIMIT 3 OFFSET ${offset}`));
      }
    };
    await bothHitAndCurrent();
    // A new status moves it: the later page shifts by a row, patched from its margin.
    await send(h.edgecache, "PATCH", `/v1/orders/${row!.id}`, { status: "shipped" });
    expect(h.edgecache.cache.stats()).toMatchObject({ loads, invalidations, patches: patches + 3 });
    await bothHitAndCurrent();
  });

  it("gives a page a write patched the bytes and ETag a load of it gives", async () => {
    const pages = {
      "/v1/users?sort=id&limit=4&offset=1": 1,
      "/v1/usersWithOrders?sort=id&limit=2": 0,
    };
    const paths = Object.keys(pages) as (keyof typeof pages)[];
    await warm(...paths);
    const [user] = h.fresh("SELECT * FROM users ORDER BY id LIMIT 1 OFFSET 1");
    const change = { firstName: 'Zoë "🚀" \\ \u2028', lastName: "" };
    expect((await send(h.edgecache, "PATCH", `/v1/users/${user!.id}`, change)).status).toBe(200);
    for (const path of paths) {
      const patched = await get(path);
      expect(status(patched), path).toMatch(HIT);
      await h.edgecache.cache.invalidate({ prefix: `GET ${path.split("?")[0]}?` });
      const loaded = await get(path);
      expect(status(loaded), path).toMatch(MISS_STORED);
      expect(patched.text, path).toBe(loaded.text);
      expect(patched.headers.get("etag"), path).toBe(loaded.headers.get("etag"));
      // What JSON.stringify makes of the response's value, as a client would.
      const limit = Number(new URL(path, "http://x").searchParams.get("limit"));
      const value = { data: loaded.json.data, limit, offset: pages[path] };
      expect(loaded.text, path).toBe(JSON.stringify(value));
    }
  });

  it("patches a page an order is inserted before from the rows it keeps before its window", async () => {
    const path = "/v1/orders?sort=-createdAt&limit=3&offset=4";
    await warm(path);
    const user = userWithOrders();
    const { loads, invalidations } = h.edgecache.cache.stats();
    const order = {
      id: "o-zzzzzz",
      userId: user.id,
      total: 1,
      status: "paid",
      createdAt: "2099-01-01T00:00:00Z",
    };
    expect((await send(h.edgecache, "POST", "/v1/orders", order)).status).toBe(201);
    const next = await get(path);
    expect(status(next)).toMatch(HIT);
    expect(next.json.data).toEqual(
      h.fresh("SELECT * FROM orders ORDER BY createdAt DESC, id LIMIT 3 OFFSET 4"),
    );
    expect(h.edgecache.cache.stats()).toMatchObject({ loads, invalidations });
  });

  it("patches a list write after write without parsing its body, made when it is read", async () => {
    const path = "/v1/orders?sort=-createdAt&limit=5";
    await warm(path);
    const user = userWithOrders();
    const parse = vi.spyOn(JSON, "parse");
    const stringify = vi.spyOn(JSON, "stringify");
    const pages = () => stringify.mock.calls.filter(([v]) => typeof v === "object" && "data" in v);
    try {
      for (let n = 0; n < 3; n++) {
        const order = {
          id: `o-zzzzz${n}`,
          userId: user.id,
          total: n,
          status: "paid",
          createdAt: `2026-01-0${n + 2}T00:00:00Z`,
        };
        expect((await send(h.edgecache, "POST", "/v1/orders", order)).status).toBe(201);
      }
      const listsParsed = parse.mock.calls.filter(([text]) => text.startsWith('{"data":'));
      expect(listsParsed).toEqual([]);
      // Its bytes (and ETag) are made at the first read, once.
      expect(pages()).toEqual([]);
      const patched = await get(path);
      expect(status(patched)).toMatch(HIT);
      expect(pages()).toHaveLength(1);
      expect(status(await get(path))).toMatch(HIT);
      expect(pages()).toHaveLength(1);
      expect(h.edgecache.cache.stats().patches).toBeGreaterThanOrEqual(3);
      expect(patched.json.data).toEqual(
        h.fresh("SELECT * FROM orders ORDER BY createdAt DESC, id LIMIT 5"),
      );
      await h.edgecache.cache.invalidate({ prefix: "GET /v1/orders?" });
      const loaded = await get(path);
      expect(patched.text).toBe(loaded.text);
      expect(patched.headers.get("etag")).toBe(loaded.headers.get("etag"));
    } finally {
      parse.mockRestore();
      stringify.mockRestore();
    }
  });

  it("keeps a patched entry in the dependency index, its reads counted from 0 again", async () => {
    const user = userWithOrders();
    const path = `/v1/users/${user.id}`;
    const key = `GET ${path}`;
    await warm(path);
    await get(path);
    expect(h.edgecache.cache.registration(key)?.hits).toBe(2);
    const remove = vi.spyOn(DependencyIndex.prototype, "remove");
    try {
      await send(h.edgecache, "PATCH", path, { lastName: "Kept" });
      // Taken out and filed again under every tag, it cost a write most of its index work.
      expect(remove.mock.calls.filter(([k]) => k === key)).toEqual([]);
    } finally {
      remove.mockRestore();
    }
    expect(h.edgecache.cache.registration(key)?.hits).toBe(0);
    const next = await get(path);
    expect(status(next)).toMatch(HIT);
    expect(next.json).toEqual(usersWhere("id = ?", user.id)[0]);
  });

  it("turns a cached item into a cached 404 when its row is deleted", async () => {
    const order = ordersOf(userWithOrders().id as string)[0]!;
    const path = `/v1/orders/${order.id}`;
    await get(path);
    await send(h.edgecache, "DELETE", path);
    const next = await get(path);
    expectClientError(next, 404, "E_NOT_FOUND");
    expect(status(next)).toMatch(HIT);
  });
});

describe("a database another process is writing", () => {
  /** Another connection holding the write lock, as a second process would. */
  function holdLock(path: string) {
    const other = new Database(path);
    other.exec("BEGIN IMMEDIATE");
    return () => {
      other.exec("COMMIT");
      other.close();
    };
  }

  it("a write waits for the lock (busyTimeout) and succeeds once it is released", async () => {
    const user = usersWhere("1 = 1")[0]!;
    const release = holdLock(h.edgecache.databasePath);
    const patched = send(h.edgecache, "PATCH", `/v1/users/${user.id}`, { lastName: "Waited" });
    // Reads are served while the write waits.
    expect((await get("/v1/users?limit=1")).status).toBe(200);
    setTimeout(release, 100);
    const r = await patched;
    expect(r.status).toBe(200);
    expect(r.json.lastName).toBe("Waited");
    expect(usersWhere("id = ?", user.id)[0]!.lastName).toBe("Waited");
  });

  it("after busyTimeout, a 503 E_SOURCE_BUSY with Retry-After", async () => {
    const busy = await startEdgecache({ busyTimeout: 0.05 });
    const release = holdLock(busy.edgecache.databasePath);
    try {
      const r = await send(busy.edgecache, "POST", "/v1/users", newUser());
      expectClientError(r, 503, "E_SOURCE_BUSY", "locked");
      expect(r.headers.get("retry-after")).toBe("1");
    } finally {
      release();
      await busy.close();
    }
  });
});
