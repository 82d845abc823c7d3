/**
 * A repository over the library: the common pattern, written out rather than a framework.
 *
 * - `findById` caches a row under `id:<id>` with the row's tag (`posts#<id>`) only, so a
 *   write to another row leaves it cached;
 * - `findMany` caches a list under a key hashed from its parameters, with the table's tag
 *   (`posts`), since any insert, update or delete may change which rows a list holds;
 * - `update` and `delete` write first, then invalidate the row's tag and the table's tag:
 *   the row and every list, nothing else.
 *
 * `db` is any synchronous SQLite handle (better-sqlite3 here); the cache works the same
 * over any source.
 */
import type Database from "better-sqlite3";
import type { Cache } from "../../src/core/cache/index.ts";

export interface Post {
  id: number;
  title: string;
  author: string;
  published: boolean;
}

export interface PostQuery {
  author?: string;
  published?: boolean;
  limit?: number;
}

export function postRepository(cache: Cache, db: Database.Database) {
  const posts = cache.namespace("posts", { ttl: 5 * 60_000 });
  const rowTag = (id: number) => `posts#${id}`;
  const TABLE = "posts";

  return {
    findById(id: number): Promise<Post | null> {
      return posts
        .getOrSet(
          `id:${id}`,
          () => (db.prepare("SELECT * FROM posts WHERE id = ?").get(id) as Raw | undefined) ?? null,
          { tags: [rowTag(id)] },
        )
        .then((raw) => (raw ? toPost(raw) : null));
    },

    async findMany(query: PostQuery = {}): Promise<Post[]> {
      const key = `list:${await hash(query)}`;
      const raws = await posts.getOrSet(key, () => selectMany(db, query), { tags: [TABLE] });
      return raws.map(toPost);
    },

    async update(id: number, changes: Partial<Omit<Post, "id">>): Promise<void> {
      const sets = Object.keys(changes).map((k) => `${k} = @${k}`);
      const values = { ...changes, id, published: toFlag(changes.published) };
      if (changes.published === undefined) delete values.published;
      db.prepare(`UPDATE posts SET ${sets.join(", ")} WHERE id = @id`).run(values);
      await posts.invalidate({ tags: [rowTag(id), TABLE] });
    },

    async delete(id: number): Promise<void> {
      db.prepare("DELETE FROM posts WHERE id = ?").run(id);
      await posts.invalidate({ tags: [rowTag(id), TABLE] });
    },
  };
}

type Raw = Omit<Post, "published"> & { published: number };

function selectMany(db: Database.Database, query: PostQuery): Raw[] {
  const where: string[] = [];
  if (query.author !== undefined) where.push("author = @author");
  if (query.published !== undefined) where.push("published = @published");
  const sql = `SELECT * FROM posts ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id LIMIT @limit`;
  return db
    .prepare(sql)
    .all({ ...query, published: toFlag(query.published), limit: query.limit ?? 100 }) as Raw[];
}

function toPost(raw: Raw): Post {
  return { ...raw, published: raw.published === 1 };
}

function toFlag(value: boolean | undefined): number | undefined {
  return value === undefined ? undefined : value ? 1 : 0;
}

/** The parameters, keys sorted, hashed: equal queries share one entry. */
async function hash(query: PostQuery): Promise<string> {
  const canonical = JSON.stringify(Object.entries(query).sort(([a], [b]) => a.localeCompare(b)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(canonical));
  return Array.from(new Uint8Array(digest).subarray(0, 12), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");
}
