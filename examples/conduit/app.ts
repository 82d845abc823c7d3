/**
 * A Conduit (RealWorld) backend on Hono and Drizzle over a libSQL file: edgecache's own
 * application to prove the Drizzle cache on (see README.md). `cached: true` sets it up as
 * docs/guides/drizzle.md's quick start does; `cached: false` is the same app without it.
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { EdgecacheDrizzleCache } from "../../src/drizzle/index.ts";
import type { StatementCounts } from "./counting.ts";
import { countingRequest } from "./counting.ts";
import { type ConduitDb, openConduitDb } from "./db.ts";
import { type ConduitEnv, viewerFromToken } from "./http.ts";
import { articlesRoutes } from "./routes/articles.ts";
import { commentsRoutes } from "./routes/comments.ts";
import { usersRoutes } from "./routes/users.ts";

export interface Conduit {
  app: Hono<ConduitEnv>;
  db: ConduitDb;
  cache?: EdgecacheDrizzleCache;
  /** Statements the app's client has sent (see counting.ts). */
  statements: StatementCounts;
  close(): Promise<void>;
}

/** The app on the database at `url` (`file:...`, made by migrate.ts's createSchema). */
export async function createConduit(options: { url: string; cached: boolean }): Promise<Conduit> {
  const { db, cache, statements, close } = await openConduitDb(options);
  const app = new Hono<ConduitEnv>();
  // Each response says how many statements its request sent (what a differential run adds up).
  app.use(async (c, next) => {
    const { statements } = await countingRequest(next);
    c.header("x-statements", String(statements));
  });
  app.use("/api/*", viewerFromToken);
  app.route("/api", usersRoutes(db));
  app.route("/api", articlesRoutes(db));
  app.route("/api", commentsRoutes(db));
  app.notFound((c) => c.json({ errors: { body: ["no such route"] } }, 404));
  app.onError((err, c) => {
    if (err instanceof HTTPException) return err.getResponse();
    console.error("[conduit]", err);
    return c.json({ errors: { body: ["internal error"] } }, 500);
  });
  return { app, db, ...(cache && { cache }), statements, close };
}
