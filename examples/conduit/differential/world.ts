/**
 * The differential client's picture of the database: what every acknowledged write left
 * there. It starts from the seed and follows each write's reply, so at the end it says
 * what must be in the file (see readback.ts).
 */
import { userOfToken } from "../auth.ts";
import type { SeedData } from "../seed.ts";

export interface WorldUser {
  id: number;
  username: string;
  bio: string | null;
  image: string | null;
}

/**
 * An article, by a handle of the client's own: the API never shows an article's id (a
 * seeded article's handle is its id).
 */
export interface WorldArticle {
  handle: number;
  slug: string;
  authorId: number;
  title: string;
  body: string;
}

export interface WorldComment {
  id: number;
  article: number;
  authorId: number;
}

/** What acknowledged writes touched, to be read back at the end. */
export interface Touched {
  users: Set<number>;
  articles: Map<number, string>;
  comments: Set<number>;
  favorites: Set<string>;
  follows: Set<string>;
}

export const pair = (a: number, b: number) => `${a}:${b}`;

export function unpair(key: string): [number, number] {
  const [a, b] = key.split(":").map(Number);
  return [a!, b!];
}

export class World {
  readonly users = new Map<number, WorldUser>();
  readonly articles = new Map<number, WorldArticle>();
  readonly comments = new Map<number, WorldComment>();
  /** `user:article` */
  readonly favorites = new Set<string>();
  /** `follower:following` */
  readonly follows = new Set<string>();
  readonly tags: string[];
  /** Every article's last slug, by handle, deleted ones included. */
  readonly slugs = new Map<number, string>();
  readonly touched: Touched = {
    users: new Set(),
    articles: new Map(),
    comments: new Set(),
    favorites: new Set(),
    follows: new Set(),
  };
  /** Makes titles, usernames and bodies unique. */
  counter = 0;
  #nextHandle: number;

  constructor(seed: SeedData) {
    for (const u of seed.users)
      this.users.set(u.id, { id: u.id, username: u.username, bio: null, image: null });
    for (const a of seed.articles) {
      const title = `Seeded article ${a.id}`;
      this.articles.set(a.id, {
        handle: a.id,
        slug: a.slug,
        authorId: a.authorId,
        title,
        body: "",
      });
      this.slugs.set(a.id, a.slug);
    }
    for (const c of seed.comments) {
      this.comments.set(c.id, { id: c.id, article: c.articleId, authorId: c.authorId });
    }
    for (const [u, a] of seed.favorites) this.favorites.add(pair(u, a));
    for (const [f, g] of seed.follows) this.follows.add(pair(f, g));
    this.tags = [...seed.tags];
    this.#nextHandle = seed.articles.length + 1;
  }

  newHandle(): number {
    return this.#nextHandle++;
  }

  articleBySlug(slug: string): WorldArticle | undefined {
    for (const a of this.articles.values()) if (a.slug === slug) return a;
    return undefined;
  }

  userByName(username: string): WorldUser | undefined {
    for (const u of this.users.values()) if (u.username === username) return u;
    return undefined;
  }

  addUser(
    token: string,
    user: { username: string; bio: string | null; image: string | null },
  ): void {
    const id = userOfToken(token);
    if (id === undefined) throw new Error(`a token not signed by the app: ${token}`);
    this.users.set(id, { id, ...user });
    this.touched.users.add(id);
  }

  updateUser(
    id: number,
    user: { username: string; bio: string | null; image: string | null },
  ): void {
    this.users.set(id, { id, ...user });
    this.touched.users.add(id);
  }

  putArticle(article: WorldArticle): void {
    this.articles.set(article.handle, article);
    this.slugs.set(article.handle, article.slug);
    this.touched.articles.set(article.handle, article.slug);
  }

  /** An article and what its foreign keys cascade to: its comments, favorites and tags. */
  deleteArticle(handle: number): void {
    const article = this.articles.get(handle);
    if (!article) return;
    this.articles.delete(handle);
    this.touched.articles.set(handle, article.slug);
    for (const c of this.comments.values()) if (c.article === handle) this.comments.delete(c.id);
    for (const f of this.favorites) if (unpair(f)[1] === handle) this.favorites.delete(f);
  }

  addComment(comment: WorldComment): void {
    this.comments.set(comment.id, comment);
    this.touched.comments.add(comment.id);
  }

  deleteComment(id: number): void {
    this.comments.delete(id);
    this.touched.comments.add(id);
  }

  setFavorite(user: number, article: number, on: boolean): void {
    if (on) this.favorites.add(pair(user, article));
    else this.favorites.delete(pair(user, article));
    this.touched.favorites.add(pair(user, article));
  }

  setFollow(follower: number, following: number, on: boolean): void {
    if (on) this.follows.add(pair(follower, following));
    else this.follows.delete(pair(follower, following));
    this.touched.follows.add(pair(follower, following));
  }
}
