import { sql } from "drizzle-orm";
import { integer as pgInteger, primaryKey as pgPrimaryKey, pgTable } from "drizzle-orm/pg-core";
import {
  integer,
  primaryKey,
  sqliteTable,
  text,
  unique,
  uniqueIndex,
} from "drizzle-orm/sqlite-core";
import { describe, expect, it } from "vitest";
import type { SqlTable } from "../../src/database/analysis/shapes.ts";
import type { EdgecacheDrizzleCache } from "../../src/drizzle/cache.ts";
import { learnTable } from "../../src/drizzle/selects.ts";

// Group patches (issue 71) tell a per-viewer flag from the write itself where the flag's
// equalities name a key of its table: the keys of several columns come from Drizzle's
// table config. A partial unique index is unique only among the rows it indexes: no key.

function described(table: object, dialect: "sqlite" | "postgres"): SqlTable | undefined {
  let learned: SqlTable | undefined;
  const cache = { learnTable: (_: string, t: SqlTable) => (learned = t) };
  learnTable(table, cache as unknown as EdgecacheDrizzleCache, dialect);
  return learned;
}

describe("Drizzle tables' keys of several columns", () => {
  it("a composite primary key, a unique constraint and a unique index are keys; a partial unique index is not", () => {
    const favorites = sqliteTable(
      "favorites",
      {
        userId: integer("user_id").notNull(),
        articleId: integer("article_id").notNull(),
        kind: text("kind").notNull(),
        slot: integer("slot"),
        deletedAt: integer("deleted_at"),
      },
      (t) => [
        primaryKey({ columns: [t.userId, t.articleId] }),
        unique().on(t.userId, t.slot),
        uniqueIndex("by_kind").on(t.articleId, t.kind),
        uniqueIndex("live").on(t.userId, t.kind).where(sql`deleted_at is null`),
      ],
    );
    expect(described(favorites, "sqlite")?.keys).toEqual([
      ["user_id", "article_id"],
      ["user_id", "slot"],
      ["article_id", "kind"],
    ]);
  });

  it("on PostgreSQL too", () => {
    const follows = pgTable(
      "follows",
      {
        followerId: pgInteger("follower_id").notNull(),
        followingId: pgInteger("following_id").notNull(),
      },
      (t) => [pgPrimaryKey({ columns: [t.followerId, t.followingId] })],
    );
    expect(described(follows, "postgres")?.keys).toEqual([["follower_id", "following_id"]]);
  });
});
