/** Articles: lists, the feed, one article, writes, favorites. */
import { and, eq } from "drizzle-orm";
import { Hono } from "hono";
import { findArticle, listArticles } from "../articles.ts";
import type { ConduitDb } from "../db.ts";
import {
  bodyOf,
  type ConduitEnv,
  ConduitError,
  intParam,
  isUniqueViolation,
  requireViewer,
  text,
} from "../http.ts";
import { articleFavorite, articles, articleTag, tags } from "../schema.ts";

/** The slug of a title: lower case words joined by dashes. */
export function slugify(title: string): string {
  return title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
}

function tagListOf(body: Record<string, unknown>): string[] {
  const list = body.tagList ?? [];
  if (!Array.isArray(list) || list.some((t) => typeof t !== "string" || t.trim() === "")) {
    throw new ConduitError(422, "tagList: expected an array of non-empty strings");
  }
  return [...new Set(list as string[])];
}

async function articleOr404(db: ConduitDb, slug: string) {
  const [row] = await db
    .select({ id: articles.id, authorId: articles.authorId })
    .from(articles)
    .where(eq(articles.slug, slug));
  if (!row) throw new ConduitError(404, `no article ${slug}`);
  return row;
}

async function articleJson(db: ConduitDb, slug: string, viewer: number | undefined) {
  const article = await findArticle(db, slug, viewer);
  if (!article) throw new ConduitError(404, `no article ${slug}`);
  return { article };
}

export function articlesRoutes(db: ConduitDb): Hono<ConduitEnv> {
  const app = new Hono<ConduitEnv>();
  const page = (q: (name: string) => string | undefined) => ({
    limit: intParam(q("limit"), 20, 100),
    offset: intParam(q("offset"), 0, 1_000_000),
  });

  app.get("/articles", async (c) => {
    const q = (name: string) => c.req.query(name);
    const filter = { tag: q("tag"), author: q("author"), favorited: q("favorited") };
    return c.json(await listArticles(db, filter, page(q), c.get("viewer")));
  });

  app.get("/articles/feed", async (c) => {
    const viewer = requireViewer(c);
    const q = (name: string) => c.req.query(name);
    return c.json(await listArticles(db, { feedOf: viewer }, page(q), viewer));
  });

  app.get("/articles/:slug", async (c) => {
    return c.json(await articleJson(db, c.req.param("slug"), c.get("viewer")));
  });

  app.post("/articles", async (c) => {
    const viewer = requireViewer(c);
    const body = await bodyOf(c, "article");
    const title = text(body, "title", true);
    const tagList = tagListOf(body);
    const now = new Date().toISOString();
    const values = {
      slug: slugify(title),
      title,
      description: text(body, "description", true),
      body: text(body, "body", true),
      authorId: viewer,
      createdAt: now,
      updatedAt: now,
    };
    try {
      await db.transaction(async (tx) => {
        const [article] = await tx.insert(articles).values(values).returning({ id: articles.id });
        if (tagList.length === 0) return;
        await tx
          .insert(tags)
          .values(tagList.map((name) => ({ name })))
          .onConflictDoNothing();
        await tx
          .insert(articleTag)
          .values(tagList.map((tagName) => ({ articleId: article!.id, tagName })));
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConduitError(422, `slug ${values.slug} is taken`);
      throw err;
    }
    return c.json(await articleJson(db, values.slug, viewer), 201);
  });

  app.put("/articles/:slug", async (c) => {
    const viewer = requireViewer(c);
    const { id, authorId } = await articleOr404(db, c.req.param("slug"));
    if (authorId !== viewer) throw new ConduitError(403, "only its author may change an article");
    const body = await bodyOf(c, "article");
    const title = text(body, "title");
    const changes = {
      title,
      ...(title !== undefined && { slug: slugify(title) }),
      description: text(body, "description"),
      body: text(body, "body"),
      updatedAt: new Date().toISOString(),
    };
    try {
      const [updated] = await db
        .update(articles)
        .set(changes)
        .where(eq(articles.id, id))
        .returning({ slug: articles.slug });
      return c.json(await articleJson(db, updated!.slug, viewer));
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConduitError(422, `slug ${changes.slug} is taken`);
      throw err;
    }
  });

  // Comments, tags and favorites go with the article through the foreign keys' cascades.
  app.delete("/articles/:slug", async (c) => {
    const viewer = requireViewer(c);
    const { id, authorId } = await articleOr404(db, c.req.param("slug"));
    if (authorId !== viewer) throw new ConduitError(403, "only its author may delete an article");
    await db.delete(articles).where(eq(articles.id, id));
    return c.body(null, 204);
  });

  app.post("/articles/:slug/favorite", async (c) => {
    const viewer = requireViewer(c);
    const slug = c.req.param("slug");
    const { id } = await articleOr404(db, slug);
    await db
      .insert(articleFavorite)
      .values({ userId: viewer, articleId: id })
      .onConflictDoNothing();
    return c.json(await articleJson(db, slug, viewer));
  });

  app.delete("/articles/:slug/favorite", async (c) => {
    const viewer = requireViewer(c);
    const slug = c.req.param("slug");
    const { id } = await articleOr404(db, slug);
    await db
      .delete(articleFavorite)
      .where(and(eq(articleFavorite.userId, viewer), eq(articleFavorite.articleId, id)));
    return c.json(await articleJson(db, slug, viewer));
  });

  return app;
}
