/**
 * Conduit's article reads, written as a Drizzle app typically writes them: one select with
 * the author joined, the tags gathered with `json_group_array` over a left join of the link
 * table, and the per-viewer flags and the favorites count as correlated subqueries.
 */
import { and, count, desc, eq, inArray, type SQL, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { ConduitDb } from "./db.ts";
import { articleFavorite, articles, articleTag, userFollow, users } from "./schema.ts";

export interface ArticleFilter {
  tag?: string | undefined;
  /** The author's username. */
  author?: string | undefined;
  /** The username of a user who favorited the article. */
  favorited?: string | undefined;
  /** Only articles by authors this user follows (the feed). */
  feedOf?: number | undefined;
  slug?: string | undefined;
}

export interface Profile {
  username: string;
  bio: string | null;
  image: string | null;
  following: boolean;
}

export interface Article {
  slug: string;
  title: string;
  description: string;
  body?: string;
  tagList: string[];
  createdAt: string;
  updatedAt: string;
  favorited: boolean;
  favoritesCount: number;
  author: Profile;
}

const favoriter = alias(users, "favoriter");

function conditions(db: ConduitDb, f: ArticleFilter): SQL | undefined {
  const all: (SQL | undefined)[] = [];
  if (f.slug !== undefined) all.push(eq(articles.slug, f.slug));
  if (f.author !== undefined) all.push(eq(users.username, f.author));
  if (f.tag !== undefined) {
    const tagged = db
      .select({ id: articleTag.articleId })
      .from(articleTag)
      .where(eq(articleTag.tagName, f.tag));
    all.push(inArray(articles.id, tagged));
  }
  if (f.favorited !== undefined) {
    const favorited = db
      .select({ id: articleFavorite.articleId })
      .from(articleFavorite)
      .innerJoin(favoriter, eq(favoriter.id, articleFavorite.userId))
      .where(eq(favoriter.username, f.favorited));
    all.push(inArray(articles.id, favorited));
  }
  if (f.feedOf !== undefined) {
    const followed = db
      .select({ id: userFollow.followingId })
      .from(userFollow)
      .where(eq(userFollow.followerId, f.feedOf));
    all.push(inArray(articles.authorId, followed));
  }
  return and(...all);
}

function fields(viewer: number | undefined) {
  return {
    slug: articles.slug,
    title: articles.title,
    description: articles.description,
    body: articles.body,
    createdAt: articles.createdAt,
    updatedAt: articles.updatedAt,
    authorUsername: users.username,
    authorBio: users.bio,
    authorImage: users.image,
    tagList: sql<string>`json_group_array(${articleTag.tagName}) filter (where ${articleTag.tagName} is not null)`,
    favoritesCount: sql<number>`(select count(*) from ${articleFavorite} f where f.article_id = ${articles.id})`,
    favorited:
      viewer === undefined
        ? sql<number>`0`
        : sql<number>`exists(select 1 from ${articleFavorite} f where f.article_id = ${articles.id} and f.user_id = ${viewer})`,
    following:
      viewer === undefined
        ? sql<number>`0`
        : sql<number>`exists(select 1 from ${userFollow} uf where uf.follower_id = ${viewer} and uf.following_id = ${articles.authorId})`,
  };
}

type Row = Awaited<ReturnType<typeof articleSelect>>[number];

function toArticle(row: Row, withBody: boolean): Article {
  const { authorUsername, authorBio, authorImage, body, following, ...rest } = row;
  return {
    ...rest,
    ...(withBody && { body }),
    tagList: (JSON.parse(row.tagList) as string[]).sort(),
    favorited: Boolean(row.favorited),
    favoritesCount: Number(row.favoritesCount),
    author: {
      username: authorUsername,
      bio: authorBio,
      image: authorImage,
      following: Boolean(following),
    },
  };
}

/** The select behind the lists and the single article (bench/group-patch.ts times it too). */
export function articleSelect(db: ConduitDb, filter: ArticleFilter, viewer: number | undefined) {
  return db
    .select(fields(viewer))
    .from(articles)
    .innerJoin(users, eq(users.id, articles.authorId))
    .leftJoin(articleTag, eq(articleTag.articleId, articles.id))
    .where(conditions(db, filter))
    .groupBy(articles.id)
    .orderBy(desc(articles.createdAt), desc(articles.id));
}

/** How many articles match (bench/group-patch.ts times it too). */
export function countSelect(db: ConduitDb, filter: ArticleFilter) {
  return db
    .select({ count: count() })
    .from(articles)
    .innerJoin(users, eq(users.id, articles.authorId))
    .where(conditions(db, filter));
}

/** A page of articles (without their bodies, as the spec's lists) and how many match. */
export async function listArticles(
  db: ConduitDb,
  filter: ArticleFilter,
  page: { limit: number; offset: number },
  viewer: number | undefined,
): Promise<{ articles: Article[]; articlesCount: number }> {
  const rows = await articleSelect(db, filter, viewer).limit(page.limit).offset(page.offset);
  const [total] = await countSelect(db, filter);
  return { articles: rows.map((r) => toArticle(r, false)), articlesCount: total?.count ?? 0 };
}

export async function findArticle(
  db: ConduitDb,
  slug: string,
  viewer: number | undefined,
): Promise<Article | undefined> {
  const [row] = await articleSelect(db, { slug }, viewer).limit(1);
  return row && toArticle(row, true);
}
