/**
 * The Conduit example (examples/conduit): the app itself, uncached, does what the RealWorld
 * spec says; then the differential run holds edgecache/drizzle to it: a seeded client
 * against the cached app and an uncached one in another process on one SQLite file, every
 * read compared and every acknowledged write read back (issue 45's proof on an app).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Conduit, createConduit } from "../../examples/conduit/app.ts";
import { tokenFor } from "../../examples/conduit/auth.ts";
import {
  type DifferentialReport,
  runDifferential,
} from "../../examples/conduit/differential/run.ts";
import { openDatabase } from "../../examples/conduit/migrate.ts";
import { seedDatabase } from "../../examples/conduit/seed.ts";

const OPS = 1500;

describe("the Conduit app, uncached", () => {
  let dir: string;
  let conduit: Conduit;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "conduit-app-"));
    const url = `file:${join(dir, "conduit.db")}`;
    const client = await openDatabase(url);
    await seedDatabase(client, 1);
    client.close();
    conduit = await createConduit({ url, cached: false });
  });

  afterAll(async () => {
    await conduit?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(method: string, path: string, user?: number, body?: unknown) {
    const res = await conduit.app.request(path, {
      method,
      headers: {
        ...(user !== undefined && { authorization: `Token ${tokenFor(user)}` }),
        "content-type": "application/json",
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    // biome-ignore lint/suspicious/noExplicitAny: the replies' shapes are what these tests check
    return { status: res.status, body: (text ? JSON.parse(text) : null) as any };
  }

  it("registers a user, who logs in and reads and changes themself with the token", async () => {
    const user = { username: "jake", email: "jake@jake.jake", password: "jakejake" };
    const created = await call("POST", "/api/users", undefined, { user });
    expect(created.status).toBe(201);
    expect(created.body.user).toMatchObject({
      username: "jake",
      email: "jake@jake.jake",
      bio: null,
    });
    const login = await call("POST", "/api/users/login", undefined, { user });
    expect(login.body.user.token).toBe(created.body.user.token);
    const wrong = await call("POST", "/api/users/login", undefined, {
      user: { ...user, password: "x" },
    });
    expect(wrong.status).toBe(401);
    const id = Number(String(created.body.user.token).split(".")[0]);
    const updated = await call("PUT", "/api/user", id, { user: { bio: "I work at statefarm" } });
    expect(updated.body.user.bio).toBe("I work at statefarm");
    expect((await call("GET", "/api/user", id)).body.user.bio).toBe("I work at statefarm");
    expect((await call("POST", "/api/users", undefined, { user })).status).toBe(422);
    expect((await call("GET", "/api/user")).status).toBe(401);
  });

  it("creates an article with its tags, found by tag, by author and as its author's", async () => {
    const article = {
      title: "How to train your dragon",
      description: "Ever wonder how?",
      body: "You have to believe",
      tagList: ["dragons", "tag1"],
    };
    const created = await call("POST", "/api/articles", 2, { article });
    expect(created.status).toBe(201);
    expect(created.body.article).toMatchObject({
      slug: "how-to-train-your-dragon",
      tagList: ["dragons", "tag1"],
      favorited: false,
      favoritesCount: 0,
      author: { username: "user2", following: false },
    });
    const byTag = await call("GET", "/api/articles?tag=dragons");
    expect(byTag.body.articlesCount).toBe(1);
    expect(byTag.body.articles[0].slug).toBe("how-to-train-your-dragon");
    expect(byTag.body.articles[0].body).toBeUndefined();
    const byAuthor = await call("GET", "/api/articles?author=user2&limit=1");
    expect(byAuthor.body.articles[0].slug).toBe("how-to-train-your-dragon");
    expect((await call("GET", "/api/tags")).body.tags).toContain("dragons");
    expect((await call("POST", "/api/articles", 2, { article })).status).toBe(422);
  });

  it("lets only its author change an article, whose slug follows its title", async () => {
    const article = { title: "Old title", description: "d", body: "b" };
    await call("POST", "/api/articles", 3, { article });
    expect(
      (await call("PUT", "/api/articles/old-title", 4, { article: { body: "x" } })).status,
    ).toBe(403);
    const changed = await call("PUT", "/api/articles/old-title", 3, {
      article: { title: "New title" },
    });
    expect(changed.body.article).toMatchObject({
      slug: "new-title",
      title: "New title",
      body: "b",
    });
    expect((await call("GET", "/api/articles/old-title")).status).toBe(404);
  });

  it("counts favorites and shows each viewer their own, in the article and by favoriter", async () => {
    await call("POST", "/api/articles", 5, {
      article: { title: "Liked", description: "d", body: "b" },
    });
    const fav = await call("POST", "/api/articles/liked/favorite", 6);
    expect(fav.body.article).toMatchObject({ favorited: true, favoritesCount: 1 });
    await call("POST", "/api/articles/liked/favorite", 6); // twice is once
    await call("POST", "/api/articles/liked/favorite", 7);
    expect((await call("GET", "/api/articles/liked", 7)).body.article).toMatchObject({
      favorited: true,
      favoritesCount: 2,
    });
    expect((await call("GET", "/api/articles/liked")).body.article.favorited).toBe(false);
    const mine = await call("GET", "/api/articles?favorited=user6&limit=100");
    expect(mine.body.articles.map((a: { slug: string }) => a.slug)).toContain("liked");
    const unfav = await call("DELETE", "/api/articles/liked/favorite", 6);
    expect(unfav.body.article).toMatchObject({ favorited: false, favoritesCount: 1 });
  });

  it("follows a user, whose new articles then lead the follower's feed", async () => {
    const followed = await call("POST", "/api/profiles/user8/follow", 9);
    expect(followed.body.profile).toMatchObject({ username: "user8", following: true });
    expect((await call("GET", "/api/profiles/user8", 9)).body.profile.following).toBe(true);
    expect((await call("GET", "/api/profiles/user8")).body.profile.following).toBe(false);
    await call("POST", "/api/articles", 8, {
      article: { title: "For my followers", description: "d", body: "b" },
    });
    const feed = await call("GET", "/api/articles/feed?limit=1", 9);
    expect(feed.body.articles[0]).toMatchObject({
      slug: "for-my-followers",
      author: { following: true },
    });
    await call("DELETE", "/api/profiles/user8/follow", 9);
    const after = await call("GET", "/api/articles/feed?limit=100", 9);
    expect(after.body.articles.map((a: { slug: string }) => a.slug)).not.toContain(
      "for-my-followers",
    );
  });

  it("adds and deletes comments, only their authors' own", async () => {
    await call("POST", "/api/articles", 10, {
      article: { title: "Discuss", description: "d", body: "b" },
    });
    const added = await call("POST", "/api/articles/discuss/comments", 11, {
      comment: { body: "First!" },
    });
    expect(added.status).toBe(201);
    expect(added.body.comment).toMatchObject({ body: "First!", author: { username: "user11" } });
    const list = await call("GET", "/api/articles/discuss/comments");
    expect(list.body.comments.map((c: { id: number }) => c.id)).toEqual([added.body.comment.id]);
    const path = `/api/articles/discuss/comments/${added.body.comment.id}`;
    expect((await call("DELETE", path, 10)).status).toBe(403);
    expect((await call("DELETE", path, 11)).status).toBe(204);
    expect((await call("GET", "/api/articles/discuss/comments")).body.comments).toEqual([]);
  });

  it("deletes an article with its comments, favorites and tag links (the foreign keys cascade)", async () => {
    await call("POST", "/api/articles", 12, {
      article: { title: "Doomed", description: "d", body: "b", tagList: ["doom"] },
    });
    await call("POST", "/api/articles/doomed/comments", 13, { comment: { body: "bye" } });
    await call("POST", "/api/articles/doomed/favorite", 13);
    const found = await conduit.db.$client.execute("SELECT id FROM articles WHERE slug = 'doomed'");
    const id = found.rows[0]?.id;
    expect((await call("DELETE", "/api/articles/doomed", 13)).status).toBe(403);
    expect((await call("DELETE", "/api/articles/doomed", 12)).status).toBe(204);
    expect((await call("GET", "/api/articles/doomed")).status).toBe(404);
    for (const table of ["comments", "article_favorite", "article_tag"]) {
      const { rows } = await conduit.db.$client.execute({
        sql: `SELECT count(*) AS n FROM ${table} WHERE article_id = ?`,
        args: [id ?? null],
      });
      expect(rows[0]?.n, table).toBe(0);
    }
    expect((await call("GET", "/api/articles?tag=doom")).body.articlesCount).toBe(0);
  });
});

/** What a run measured, and its first differing reads, for a failing assertion's message. */
function described(r: DifferentialReport): string {
  const lines = [
    `${r.reads} reads compared: ${r.differing} differing (${JSON.stringify(r.differingByKind)}), ${r.transient} transient`,
    `writes: ${r.writes.cached} through the cached app, ${r.writes.other} by the other process, ${r.writes.failed.length} failed`,
    `lost (missing from the file): ${r.lost.length}; not shown by the cached app: ${r.unseen.length}`,
    `hit rate ${r.hitRate?.toFixed(3)}; statements: app ${r.statements.app}, edgecache on the app's client ${r.statements.edgecacheOnAppClient}, edgecache's own ${r.statements.edgecacheOwn ?? "n/a"}`,
  ];
  for (const s of r.samples.slice(0, 3)) {
    lines.push(
      `first differing reads: #${s.op} ${s.route} (user ${s.user ?? "anonymous"}), after: ${s.lastWrite}`,
      `  differs at ${s.difference}`,
      `  cached:   ${s.cached.slice(0, 240)}`,
      `  uncached: ${s.uncached.slice(0, 240)}`,
    );
  }
  for (const f of [...r.writes.failed, ...r.lost, ...r.unseen].slice(0, 3))
    lines.push(`write: ${f.what}: got ${f.got}`);
  return lines.join("\n");
}

function expectExact(r: DifferentialReport): void {
  const message = described(r);
  console.log(
    `[conduit] ${r.options.capture ? "capture" : "no capture"}, other ${r.options.other}:\n${message}`,
  );
  expect(r.serverErrors, message).toBe(0);
  expect(r.writes.failed.length, message).toBe(0);
  expect(r.lost.length, message).toBe(0);
  expect(r.unseen.length, message).toBe(0);
  expect(r.differing, message).toBe(0);
}

describe("the Conduit app cached by edgecache/drizzle reads what the uncached app reads", () => {
  it(`without capture, every write through the cached app (${OPS} operations, 10% writes)`, async () => {
    expectExact(
      await runDifferential({ ops: OPS, writes: 0.1, other: 0, seed: 45, capture: false }),
    );
  }, 120_000);

  it(`with capture, half the writes by another process (${OPS} operations, 10% writes)`, async () => {
    expectExact(
      await runDifferential({ ops: OPS, writes: 0.1, other: 0.5, seed: 45, capture: true }),
    );
  }, 120_000);
});
