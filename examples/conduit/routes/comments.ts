/** Comments of an article, and the tags. */
import { and, desc, eq } from "drizzle-orm";
import { Hono } from "hono";
import type { ConduitDb } from "../db.ts";
import { bodyOf, type ConduitEnv, ConduitError, requireViewer, text } from "../http.ts";
import { articles, comments, tags, userFollow } from "../schema.ts";

async function articleIdOr404(db: ConduitDb, slug: string): Promise<number> {
  const article = await db.query.articles.findFirst({
    where: eq(articles.slug, slug),
    columns: { id: true },
  });
  if (!article) throw new ConduitError(404, `no article ${slug}`);
  return article.id;
}

/** An article's comments with their authors as `viewer` sees them (relational query). */
async function commentsOf(db: ConduitDb, articleId: number, viewer: number | undefined) {
  const rows = await db.query.comments.findMany({
    where: eq(comments.articleId, articleId),
    orderBy: [desc(comments.createdAt), desc(comments.id)],
    with: {
      author: {
        with: {
          followers: {
            where: eq(userFollow.followerId, viewer ?? 0),
            columns: { followerId: true },
          },
        },
      },
    },
  });
  return rows.map(({ id, body, createdAt, updatedAt, author }) => ({
    id,
    createdAt,
    updatedAt,
    body,
    author: {
      username: author.username,
      bio: author.bio,
      image: author.image,
      following: author.followers.length > 0,
    },
  }));
}

export function commentsRoutes(db: ConduitDb): Hono<ConduitEnv> {
  const app = new Hono<ConduitEnv>();

  app.get("/articles/:slug/comments", async (c) => {
    const articleId = await articleIdOr404(db, c.req.param("slug"));
    return c.json({ comments: await commentsOf(db, articleId, c.get("viewer")) });
  });

  app.post("/articles/:slug/comments", async (c) => {
    const viewer = requireViewer(c);
    const articleId = await articleIdOr404(db, c.req.param("slug"));
    const body = text(await bodyOf(c, "comment"), "body", true);
    const now = new Date().toISOString();
    const [row] = await db
      .insert(comments)
      .values({ body, articleId, authorId: viewer, createdAt: now, updatedAt: now })
      .returning({ id: comments.id });
    const comment = (await commentsOf(db, articleId, viewer)).find((x) => x.id === row!.id);
    if (!comment) throw new ConduitError(404, "the comment is gone already");
    return c.json({ comment }, 201);
  });

  app.delete("/articles/:slug/comments/:id", async (c) => {
    const viewer = requireViewer(c);
    const articleId = await articleIdOr404(db, c.req.param("slug"));
    const id = Number(c.req.param("id"));
    const [comment] = await db
      .select({ authorId: comments.authorId })
      .from(comments)
      .where(and(eq(comments.id, id), eq(comments.articleId, articleId)));
    if (!comment) throw new ConduitError(404, `no comment ${c.req.param("id")}`);
    if (comment.authorId !== viewer) throw new ConduitError(403, "only its author may delete it");
    await db.delete(comments).where(eq(comments.id, id));
    return c.body(null, 204);
  });

  app.get("/tags", async (c) => {
    const rows = await db.query.tags.findMany({ orderBy: tags.name });
    return c.json({ tags: rows.map((t) => t.name) });
  });

  return app;
}
