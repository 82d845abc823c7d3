/**
 * The seeded client's operations: about nine reads for each write by default, reads of
 * every kind the app serves (lists with each filter and pages, the feed, one article, its
 * comments, profiles, tags, the current user), writes of every kind it accepts. Popular
 * articles and active users are picked more often, as on a real site. Each write says how
 * its reply changes the world; the draws do not depend on where a write is sent, so every
 * setup of a run gets the same operations.
 */
import { tokenFor } from "../auth.ts";
import type { Random } from "../random.ts";
import { slugify } from "../routes/articles.ts";
import { unpair, type World, type WorldArticle } from "./world.ts";

export interface Request {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  /** The signed-in user, if any. */
  user?: number;
  body?: unknown;
}

export interface Reply {
  status: number;
  body: unknown;
}

export interface Operation {
  kind: string;
  request: Request;
  /** For a write: the status it must get, and what its reply changes in the world. */
  write?: { expect: number; apply(reply: Reply, world: World): void };
}

/** Headers of a request (the token of its user). */
export function headersOf(r: Request): Record<string, string> {
  return {
    ...(r.user !== undefined && { authorization: `Token ${tokenFor(r.user)}` }),
    ...(r.body !== undefined && { "content-type": "application/json" }),
  };
}

/** An index below n, small ones far more often (the popular end of a list). */
function skewed(random: Random, n: number): number {
  return Math.min(n - 1, Math.floor(n * random.next() ** 3));
}

function activeUser(world: World, random: Random): number {
  const ids = [...world.users.keys()];
  return ids[skewed(random, ids.length)]!;
}

/** An article, recent ones more often. */
function popularArticle(world: World, random: Random): WorldArticle {
  const all = [...world.articles.values()].reverse();
  return all[skewed(random, all.length)]!;
}

function viewer(world: World, random: Random): number | undefined {
  return random.chance(0.7) ? activeUser(world, random) : undefined;
}

function page(random: Random): string {
  return `limit=${random.pick([10, 20])}&offset=${random.pick([0, 0, 0, 10, 20])}`;
}

const enc = encodeURIComponent;

type Pick = (world: World, random: Random) => Operation;

const READS: [weight: number, pick: Pick][] = [
  [
    25,
    (w, r) => ({
      kind: "articles",
      request: { method: "GET", path: `/api/articles?${page(r)}`, user: viewer(w, r) },
    }),
  ],
  [
    12,
    (w, r) => ({
      kind: "articles?tag",
      request: {
        method: "GET",
        path: `/api/articles?tag=${enc(w.tags[skewed(r, w.tags.length)]!)}&${page(r)}`,
        user: viewer(w, r),
      },
    }),
  ],
  [
    10,
    (w, r) => ({
      kind: "articles?author",
      request: {
        method: "GET",
        path: `/api/articles?author=${enc(w.users.get(activeUser(w, r))!.username)}&${page(r)}`,
        user: viewer(w, r),
      },
    }),
  ],
  [
    8,
    (w, r) => ({
      kind: "articles?favorited",
      request: {
        method: "GET",
        path: `/api/articles?favorited=${enc(w.users.get(activeUser(w, r))!.username)}&${page(r)}`,
        user: viewer(w, r),
      },
    }),
  ],
  [
    10,
    (w, r) => ({
      kind: "feed",
      request: { method: "GET", path: `/api/articles/feed?${page(r)}`, user: activeUser(w, r) },
    }),
  ],
  [
    15,
    (w, r) => ({
      kind: "article",
      request: {
        method: "GET",
        path: `/api/articles/${enc(popularArticle(w, r).slug)}`,
        user: viewer(w, r),
      },
    }),
  ],
  [
    10,
    (w, r) => ({
      kind: "comments",
      request: {
        method: "GET",
        path: `/api/articles/${enc(popularArticle(w, r).slug)}/comments`,
        user: viewer(w, r),
      },
    }),
  ],
  [
    6,
    (w, r) => ({
      kind: "profile",
      request: {
        method: "GET",
        path: `/api/profiles/${enc(w.users.get(activeUser(w, r))!.username)}`,
        user: viewer(w, r),
      },
    }),
  ],
  [2, () => ({ kind: "tags", request: { method: "GET", path: "/api/tags" } })],
  [
    2,
    (w, r) => ({
      kind: "user",
      request: { method: "GET", path: "/api/user", user: activeUser(w, r) },
    }),
  ],
];

/**
 * A frontend's reads: what a real single-page app asks for on each view. The home page
 * loads the global list's first page and the tag cloud, a signed-in user's home their feed;
 * pages past the first are rarer, and the popular articles and tags are opened far more.
 */
/** The global list, tag filter, feed and tag cloud of READS: a frontend weighs them its own way. */
const FRONTEND_OWN = new Set([READS[0], READS[1], READS[4], READS[8]]);

const FRONTEND_READS: [weight: number, pick: Pick][] = [
  [
    30,
    (w, r) => ({
      kind: "articles",
      request: { method: "GET", path: `/api/articles?${firstPages(r)}`, user: viewer(w, r) },
    }),
  ],
  [15, () => ({ kind: "tags", request: { method: "GET", path: "/api/tags" } })],
  [
    12,
    (w, r) => ({
      kind: "feed",
      request: {
        method: "GET",
        path: `/api/articles/feed?${firstPages(r)}`,
        user: activeUser(w, r),
      },
    }),
  ],
  [
    8,
    (w, r) => ({
      kind: "articles?tag",
      request: {
        method: "GET",
        path: `/api/articles?tag=${enc(w.tags[skewed(r, Math.min(w.tags.length, 10))]!)}&${firstPages(r)}`,
        user: viewer(w, r),
      },
    }),
  ],
  // The other reads (one article, its comments, profiles, the current user), less often.
  ...READS.filter((r) => !FRONTEND_OWN.has(r)).map(
    ([w, pick]) => [w * 0.6, pick] as [number, Pick],
  ),
];

/** The first page (20 rows, as the spec's default) most of the time, then the next. */
function firstPages(random: Random): string {
  return `limit=20&offset=${random.chance(0.85) ? 0 : 20}`;
}

/** Which reads a client makes: spread over every list and page, or as a frontend does. */
export type ClientMix = "uniform" | "frontend";

function weighted(random: Random, choices: [number, Pick][]): Pick {
  const total = choices.reduce((n, [w]) => n + w, 0);
  let x = random.next() * total;
  for (const [w, pick] of choices) {
    x -= w;
    if (x < 0) return pick;
  }
  return choices.at(-1)![1];
}

/** The next operation: a write with probability `writes`, else a read. */
export function nextOperation(
  world: World,
  random: Random,
  writes: number,
  client: ClientMix = "uniform",
): Operation {
  const write = random.chance(writes);
  const reads = client === "frontend" ? FRONTEND_READS : READS;
  return weighted(random, write ? WRITES : reads)(world, random);
}

// Writes. Each picks what it acts on so that it succeeds (its author, an existing row).

const createArticle: Pick = (w, r) => {
  const user = activeUser(w, r);
  const n = ++w.counter;
  const title = `Article ${n} on ${r.words(2)}`;
  const tagList = r.sample(w.tags, r.int(4));
  if (r.chance(0.2)) tagList.push(`new-tag-${n}`);
  const body = `${r.words(20)} (${n})`;
  return {
    kind: "create article",
    request: {
      method: "POST",
      path: "/api/articles",
      user,
      body: { article: { title, description: r.words(4), body, tagList } },
    },
    write: {
      expect: 201,
      apply(_reply, world) {
        for (const t of tagList) if (!world.tags.includes(t)) world.tags.push(t);
        world.putArticle({
          handle: world.newHandle(),
          slug: slugify(title),
          authorId: user,
          title,
          body,
        });
      },
    },
  };
};

const updateArticle: Pick = (w, r) => {
  const article = popularArticle(w, r);
  const n = ++w.counter;
  const retitle = r.chance(0.4);
  const title = retitle ? `Retitled ${n} ${r.words(2)}` : article.title;
  const body = `${r.words(15)} (edit ${n})`;
  return {
    kind: "update article",
    request: {
      method: "PUT",
      path: `/api/articles/${enc(article.slug)}`,
      user: article.authorId,
      body: { article: { ...(retitle && { title }), body } },
    },
    write: {
      expect: 200,
      apply(_reply, world) {
        world.putArticle({
          ...article,
          title,
          body,
          slug: retitle ? slugify(title) : article.slug,
        });
      },
    },
  };
};

const deleteArticle: Pick = (w, r) => {
  const article = popularArticle(w, r);
  return {
    kind: "delete article",
    request: {
      method: "DELETE",
      path: `/api/articles/${enc(article.slug)}`,
      user: article.authorId,
    },
    write: { expect: 204, apply: (_reply, world) => world.deleteArticle(article.handle) },
  };
};

const favorite: Pick = (w, r) => {
  const user = activeUser(w, r);
  const article = popularArticle(w, r);
  return {
    kind: "favorite",
    request: { method: "POST", path: `/api/articles/${enc(article.slug)}/favorite`, user },
    write: { expect: 200, apply: (_reply, world) => world.setFavorite(user, article.handle, true) },
  };
};

const unfavorite: Pick = (w, r) => {
  const favorites = [...w.favorites];
  if (favorites.length === 0) return favorite(w, r);
  const [user, handle] = unpair(r.pick(favorites));
  return {
    kind: "unfavorite",
    request: {
      method: "DELETE",
      path: `/api/articles/${enc(w.slugs.get(handle)!)}/favorite`,
      user,
    },
    write: { expect: 200, apply: (_reply, world) => world.setFavorite(user, handle, false) },
  };
};

const follow: Pick = (w, r) => {
  const user = activeUser(w, r);
  const other = activeUser(w, r);
  return {
    kind: "follow",
    request: {
      method: "POST",
      path: `/api/profiles/${enc(w.users.get(other)!.username)}/follow`,
      user,
    },
    write: { expect: 200, apply: (_reply, world) => world.setFollow(user, other, true) },
  };
};

const unfollow: Pick = (w, r) => {
  const follows = [...w.follows];
  if (follows.length === 0) return follow(w, r);
  const [user, other] = unpair(r.pick(follows));
  return {
    kind: "unfollow",
    request: {
      method: "DELETE",
      path: `/api/profiles/${enc(w.users.get(other)!.username)}/follow`,
      user,
    },
    write: { expect: 200, apply: (_reply, world) => world.setFollow(user, other, false) },
  };
};

const addComment: Pick = (w, r) => {
  const user = activeUser(w, r);
  const article = popularArticle(w, r);
  return {
    kind: "add comment",
    request: {
      method: "POST",
      path: `/api/articles/${enc(article.slug)}/comments`,
      user,
      body: { comment: { body: `${r.words(6)} (${++w.counter})` } },
    },
    write: {
      expect: 201,
      apply(reply, world) {
        const { id } = (reply.body as { comment: { id: number } }).comment;
        world.addComment({ id, article: article.handle, authorId: user });
      },
    },
  };
};

const deleteComment: Pick = (w, r) => {
  const comments = [...w.comments.values()];
  if (comments.length === 0) return addComment(w, r);
  const comment = r.pick(comments);
  return {
    kind: "delete comment",
    request: {
      method: "DELETE",
      path: `/api/articles/${enc(w.slugs.get(comment.article)!)}/comments/${comment.id}`,
      user: comment.authorId,
    },
    write: { expect: 204, apply: (_reply, world) => world.deleteComment(comment.id) },
  };
};

type UserReply = {
  user: { token: string; username: string; bio: string | null; image: string | null };
};

const updateUser: Pick = (w, r) => {
  const user = activeUser(w, r);
  const n = ++w.counter;
  const changes = {
    bio: `bio ${n}: ${r.words(3)}`,
    ...(r.chance(0.3) && { image: `https://example.com/${n}.png` }),
    ...(r.chance(0.2) && { username: `renamed${n}` }),
  };
  return {
    kind: "update user",
    request: { method: "PUT", path: "/api/user", user, body: { user: changes } },
    write: {
      expect: 200,
      apply(reply, world) {
        const { username, bio, image } = (reply.body as UserReply).user;
        world.updateUser(user, { username, bio, image });
      },
    },
  };
};

const register: Pick = (w) => {
  const n = ++w.counter;
  const user = { username: `new${n}`, email: `new${n}@example.com`, password: `secret${n}` };
  return {
    kind: "register",
    request: { method: "POST", path: "/api/users", body: { user } },
    write: {
      expect: 201,
      apply(reply, world) {
        const { token, username, bio, image } = (reply.body as UserReply).user;
        world.addUser(token, { username, bio, image });
      },
    },
  };
};

const WRITES: [number, Pick][] = [
  [15, createArticle],
  [10, updateArticle],
  [6, deleteArticle],
  [18, favorite],
  [10, unfavorite],
  [10, follow],
  [6, unfollow],
  [15, addComment],
  [6, deleteComment],
  [5, updateUser],
  [3, register],
];
