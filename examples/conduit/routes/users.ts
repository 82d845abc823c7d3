/** Users and profiles: registration, login, the current user, following. */
import { and, eq } from "drizzle-orm";
import { Hono } from "hono";
import type { Profile } from "../articles.ts";
import { checkPassword, hashPassword, tokenFor } from "../auth.ts";
import type { ConduitDb } from "../db.ts";
import {
  bodyOf,
  type ConduitEnv,
  ConduitError,
  isUniqueViolation,
  requireViewer,
  text,
} from "../http.ts";
import { userFollow, users } from "../schema.ts";

type UserRow = typeof users.$inferSelect;

function userJson(u: UserRow) {
  return {
    user: {
      email: u.email,
      token: tokenFor(u.id),
      username: u.username,
      bio: u.bio,
      image: u.image,
    },
  };
}

/** A profile as `viewer` sees it (relational query: the user with the viewer's follow row). */
export async function findProfile(
  db: ConduitDb,
  username: string,
  viewer: number | undefined,
): Promise<(Profile & { id: number }) | undefined> {
  const user = await db.query.users.findFirst({
    where: eq(users.username, username),
    with: {
      followers: { where: eq(userFollow.followerId, viewer ?? 0), columns: { followerId: true } },
    },
  });
  if (!user) return undefined;
  return {
    id: user.id,
    username: user.username,
    bio: user.bio,
    image: user.image,
    following: user.followers.length > 0,
  };
}

async function profileOr404(db: ConduitDb, username: string, viewer: number | undefined) {
  const profile = await findProfile(db, username, viewer);
  if (!profile) throw new ConduitError(404, `no user ${username}`);
  return profile;
}

export function usersRoutes(db: ConduitDb): Hono<ConduitEnv> {
  const app = new Hono<ConduitEnv>();

  app.post("/users", async (c) => {
    const body = await bodyOf(c, "user");
    const values = {
      username: text(body, "username", true),
      email: text(body, "email", true),
      password: hashPassword(text(body, "password", true)),
    };
    try {
      const [user] = await db.insert(users).values(values).returning();
      return c.json(userJson(user!), 201);
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConduitError(422, "username or email already taken");
      throw err;
    }
  });

  app.post("/users/login", async (c) => {
    const body = await bodyOf(c, "user");
    const email = text(body, "email", true);
    const [user] = await db.select().from(users).where(eq(users.email, email));
    if (!user || !checkPassword(text(body, "password", true), user.password)) {
      throw new ConduitError(401, "wrong email or password");
    }
    return c.json(userJson(user));
  });

  app.get("/user", async (c) => {
    const user = await db.query.users.findFirst({ where: eq(users.id, requireViewer(c)) });
    if (!user) throw new ConduitError(404, "the token's user is gone");
    return c.json(userJson(user));
  });

  app.put("/user", async (c) => {
    const viewer = requireViewer(c);
    const body = await bodyOf(c, "user");
    const password = text(body, "password");
    const changes = {
      email: text(body, "email"),
      username: text(body, "username"),
      bio: text(body, "bio"),
      image: text(body, "image"),
      ...(password !== undefined && { password: hashPassword(password) }),
    };
    if (Object.values(changes).every((v) => v === undefined)) {
      throw new ConduitError(422, "nothing to update");
    }
    try {
      const [user] = await db.update(users).set(changes).where(eq(users.id, viewer)).returning();
      if (!user) throw new ConduitError(404, "the token's user is gone");
      return c.json(userJson(user));
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConduitError(422, "username or email already taken");
      throw err;
    }
  });

  app.get("/profiles/:username", async (c) => {
    const { id: _, ...profile } = await profileOr404(db, c.req.param("username"), c.get("viewer"));
    return c.json({ profile });
  });

  app.post("/profiles/:username/follow", async (c) => {
    const viewer = requireViewer(c);
    const { id, ...profile } = await profileOr404(db, c.req.param("username"), viewer);
    await db
      .insert(userFollow)
      .values({ followerId: viewer, followingId: id })
      .onConflictDoNothing();
    return c.json({ profile: { ...profile, following: true } });
  });

  app.delete("/profiles/:username/follow", async (c) => {
    const viewer = requireViewer(c);
    const { id, ...profile } = await profileOr404(db, c.req.param("username"), viewer);
    await db
      .delete(userFollow)
      .where(and(eq(userFollow.followerId, viewer), eq(userFollow.followingId, id)));
    return c.json({ profile: { ...profile, following: false } });
  });

  return app;
}
