/**
 * Every acknowledged write read back: what the world says each touched row must be, asked
 * of the cached app (a write it acknowledged, or one made around it, must show) and of the
 * file itself on a fresh connection once both apps are closed (a write missing there is
 * lost).
 */
import type { Client, InStatement, Row } from "@libsql/client";
import type { Reply, Request } from "./ops.ts";
import type { Target } from "./targets.ts";
import { unpair, type World } from "./world.ts";

interface Expectation {
  what: string;
  /** A read through the API and whether its reply shows the write; none when the API cannot tell. */
  api?: { request: Request; shows(reply: Reply): boolean };
  sql: { statement: InStatement; shows(rows: Row[]): boolean };
}

export interface Failure {
  what: string;
  got: string;
}

const enc = encodeURIComponent;
type ArticleReply = { article: { title: string; body: string; favorited: boolean } };

function articleExpectations(world: World): Expectation[] {
  return [...world.touched.articles].map(([handle, slug]) => {
    const live = world.articles.get(handle);
    const what = live ? `article ${slug}: "${live.title}"` : `article ${slug} deleted`;
    return {
      what,
      api: {
        request: { method: "GET", path: `/api/articles/${enc(slug)}` },
        shows: (r) =>
          live
            ? r.status === 200 &&
              (r.body as ArticleReply).article.title === live.title &&
              (r.body as ArticleReply).article.body === live.body
            : r.status === 404,
      },
      sql: {
        statement: { sql: "SELECT title, body FROM articles WHERE slug = ?", args: [slug] },
        shows: (rows) =>
          live ? rows[0]?.title === live.title && rows[0]?.body === live.body : rows.length === 0,
      },
    };
  });
}

function commentExpectations(world: World): Expectation[] {
  return [...world.touched.comments].map((id) => {
    const live = world.comments.get(id);
    const article = live && world.articles.get(live.article);
    return {
      what: `comment ${id} ${live ? "added" : "deleted"}`,
      ...(article && {
        api: {
          request: { method: "GET", path: `/api/articles/${enc(article.slug)}/comments` },
          shows: (r: Reply) =>
            r.status === 200 &&
            (r.body as { comments: { id: number }[] }).comments.some((c) => c.id === id),
        },
      }),
      sql: {
        statement: { sql: "SELECT 1 FROM comments WHERE id = ?", args: [id] },
        shows: (rows) => rows.length === (live ? 1 : 0),
      },
    };
  });
}

function favoriteExpectations(world: World): Expectation[] {
  return [...world.touched.favorites].map((key) => {
    const [user, handle] = unpair(key);
    const on = world.favorites.has(key);
    const article = world.articles.get(handle);
    const slug = world.slugs.get(handle)!;
    return {
      what: `user ${user} ${on ? "favorited" : "unfavorited"} ${slug}`,
      ...(article && {
        api: {
          request: { method: "GET" as const, path: `/api/articles/${enc(slug)}`, user },
          shows: (r: Reply) =>
            r.status === 200 && (r.body as ArticleReply).article.favorited === on,
        },
      }),
      sql: {
        statement: {
          sql: `SELECT 1 FROM article_favorite f JOIN articles a ON a.id = f.article_id
                WHERE a.slug = ? AND f.user_id = ?`,
          args: [slug, user],
        },
        shows: (rows) => rows.length === (on ? 1 : 0),
      },
    };
  });
}

function followExpectations(world: World): Expectation[] {
  return [...world.touched.follows].map((key) => {
    const [follower, following] = unpair(key);
    const on = world.follows.has(key);
    const name = world.users.get(following)!.username;
    return {
      what: `user ${follower} ${on ? "follows" : "unfollowed"} ${name}`,
      api: {
        request: { method: "GET", path: `/api/profiles/${enc(name)}`, user: follower },
        shows: (r) =>
          r.status === 200 &&
          (r.body as { profile: { following: boolean } }).profile.following === on,
      },
      sql: {
        statement: {
          sql: "SELECT 1 FROM user_follow WHERE follower_id = ? AND following_id = ?",
          args: [follower, following],
        },
        shows: (rows) => rows.length === (on ? 1 : 0),
      },
    };
  });
}

function userExpectations(world: World): Expectation[] {
  return [...world.touched.users].map((id) => {
    const u = world.users.get(id)!;
    const same = (x: { username: unknown; bio: unknown; image: unknown } | undefined) =>
      x?.username === u.username && x.bio === u.bio && x.image === u.image;
    return {
      what: `user ${id} as ${u.username}, bio "${u.bio}"`,
      api: {
        request: { method: "GET", path: "/api/user", user: id },
        shows: (r) => r.status === 200 && same((r.body as { user: typeof u }).user),
      },
      sql: {
        statement: { sql: "SELECT username, bio, image FROM users WHERE id = ?", args: [id] },
        shows: (rows) => same(rows[0] as unknown as typeof u | undefined),
      },
    };
  });
}

function expectations(world: World): Expectation[] {
  return [
    ...articleExpectations(world),
    ...commentExpectations(world),
    ...favoriteExpectations(world),
    ...followExpectations(world),
    ...userExpectations(world),
  ];
}

const short = (x: unknown) => JSON.stringify(x).slice(0, 300);

/** The acknowledged writes `target` does not show. */
export async function readBackThroughApp(
  world: World,
  target: Target,
): Promise<{ checked: number; failures: Failure[] }> {
  const failures: Failure[] = [];
  let checked = 0;
  for (const e of expectations(world)) {
    if (!e.api) continue;
    checked++;
    const reply = await target.send(e.api.request);
    if (!e.api.shows(reply))
      failures.push({ what: e.what, got: `${reply.status} ${short(reply.body)}` });
  }
  return { checked, failures };
}

/** The acknowledged writes missing from the file, read on `client` (a fresh connection). */
export async function readBackInFile(
  world: World,
  client: Client,
): Promise<{ checked: number; failures: Failure[] }> {
  const failures: Failure[] = [];
  const all = expectations(world);
  for (const e of all) {
    const { rows } = await client.execute(e.sql.statement);
    if (!e.sql.shows(rows)) failures.push({ what: e.what, got: short(rows) });
  }
  return { checked: all.length, failures };
}
