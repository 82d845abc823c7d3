/**
 * Deterministic seed data for Conduit: users, tags, articles, their tags, follows,
 * favorites and comments, drawn from a seeded generator (the same seed, the same rows and
 * ids). Run as a script to make a database file:
 *
 *   npx tsx examples/conduit/seed.ts --db conduit.db [--seed 1]
 */
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type { Client, InStatement } from "@libsql/client";
import { hashPassword } from "./auth.ts";
import { createSchema, openDatabase } from "./migrate.ts";
import { Random } from "./random.ts";

export const SEED_SIZES = {
  users: 40,
  tags: 30,
  articles: 200,
  follows: 150,
  favorites: 600,
  comments: 400,
};

export interface SeedUser {
  id: number;
  username: string;
  email: string;
  password: string;
}

export interface SeedData {
  users: SeedUser[];
  tags: string[];
  articles: { id: number; slug: string; authorId: number }[];
  follows: [follower: number, following: number][];
  favorites: [user: number, article: number][];
  comments: { id: number; articleId: number; authorId: number }[];
}

/** The seed's rows, as ids the database will give them (it starts empty). */
export function seedData(seed: number, sizes = SEED_SIZES): SeedData {
  const random = new Random(seed);
  const users = Array.from({ length: sizes.users }, (_, i) => ({
    id: i + 1,
    username: `user${i + 1}`,
    email: `user${i + 1}@example.com`,
    password: `password${i + 1}`,
  }));
  const tags = Array.from({ length: sizes.tags }, (_, i) => `tag${i + 1}`);
  const ids = users.map((u) => u.id);
  const articles = Array.from({ length: sizes.articles }, (_, i) => ({
    id: i + 1,
    slug: `seeded-article-${i + 1}`,
    authorId: random.pick(ids),
  }));
  const pairs = <A, B>(n: number, a: () => A, b: () => B, ok: (x: A, y: B) => boolean) => {
    const seen = new Map<string, [A, B]>();
    for (let tries = 0; seen.size < n && tries < n * 20; tries++) {
      const x = a();
      const y = b();
      if (ok(x, y)) seen.set(`${x}:${y}`, [x, y]);
    }
    return [...seen.values()];
  };
  const articleIds = articles.map((a) => a.id);
  const follows = pairs(
    sizes.follows,
    () => random.pick(ids),
    () => random.pick(ids),
    (a, b) => a !== b,
  );
  const favorites = pairs(
    sizes.favorites,
    () => random.pick(ids),
    () => random.pick(articleIds),
    () => true,
  );
  const comments = Array.from({ length: sizes.comments }, (_, i) => ({
    id: i + 1,
    articleId: random.pick(articleIds),
    authorId: random.pick(ids),
  }));
  return { users, tags, articles, follows, favorites, comments };
}

/** Minutes after the seed's epoch, as the app's timestamps read (ISO text). */
function at(minutes: number): string {
  return new Date(Date.UTC(2024, 0, 1) + minutes * 60_000).toISOString();
}

function statements(data: SeedData, seed: number): InStatement[] {
  const random = new Random(seed + 1);
  const out: InStatement[] = [];
  for (const u of data.users) {
    out.push({
      sql: "INSERT INTO users (id, email, username, password, bio, image) VALUES (?, ?, ?, ?, ?, ?)",
      args: [
        u.id,
        u.email,
        u.username,
        hashPassword(u.password, "seed"),
        `I write about ${random.words(2)}`,
        null,
      ],
    });
  }
  for (const name of data.tags)
    out.push({ sql: "INSERT INTO tags (name) VALUES (?)", args: [name] });
  for (const a of data.articles) {
    const title = `Seeded article ${a.id}`;
    out.push({
      sql: `INSERT INTO articles (id, slug, title, description, body, author_id, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      args: [
        a.id,
        a.slug,
        title,
        random.words(5),
        random.words(30),
        a.authorId,
        at(a.id * 7),
        at(a.id * 7),
      ],
    });
    for (const tag of random.sample(data.tags, random.int(4))) {
      out.push({
        sql: "INSERT INTO article_tag (article_id, tag_name) VALUES (?, ?)",
        args: [a.id, tag],
      });
    }
  }
  for (const [follower, following] of data.follows) {
    out.push({
      sql: "INSERT INTO user_follow (follower_id, following_id) VALUES (?, ?)",
      args: [follower, following],
    });
  }
  for (const [user, article] of data.favorites) {
    out.push({
      sql: "INSERT INTO article_favorite (user_id, article_id) VALUES (?, ?)",
      args: [user, article],
    });
  }
  for (const c of data.comments) {
    out.push({
      sql: `INSERT INTO comments (id, body, article_id, author_id, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?)`,
      args: [c.id, random.words(8), c.articleId, c.authorId, at(c.id * 3), at(c.id * 3)],
    });
  }
  return out;
}

/** Creates the tables and inserts the seed's rows in one transaction; returns them. */
export async function seedDatabase(client: Client, seed: number): Promise<SeedData> {
  const data = seedData(seed);
  await createSchema(client);
  await client.batch(statements(data, seed), "write");
  return data;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { values } = parseArgs({
    options: {
      db: { type: "string", default: "conduit.db" },
      seed: { type: "string", default: "1" },
    },
  });
  const client = await openDatabase(`file:${values.db}`);
  const data = await seedDatabase(client, Number(values.seed));
  client.close();
  console.log(
    `seeded ${values.db}: ${data.users.length} users, ${data.articles.length} articles, ${data.tags.length} tags`,
  );
}
