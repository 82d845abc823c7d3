/**
 * The Conduit schema as Drizzle sees it. The tables themselves are made with plain SQL
 * (migrate.ts), as a deployed app's migrations would; these declarations must match it.
 *
 * The shapes are the ones a real Conduit backend has and a cache finds hard: link tables
 * with composite primary keys (article_tag, article_favorite, user_follow), a table without
 * a primary key of its own (tags: a rowid table with a unique name), and foreign keys that
 * cascade on delete.
 */
import { relations } from "drizzle-orm";
import { integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

export const users = sqliteTable("users", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  email: text("email").notNull().unique(),
  username: text("username").notNull().unique(),
  password: text("password").notNull(),
  bio: text("bio"),
  image: text("image"),
});

export const articles = sqliteTable("articles", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  slug: text("slug").notNull().unique(),
  title: text("title").notNull(),
  description: text("description").notNull(),
  body: text("body").notNull(),
  authorId: integer("author_id")
    .notNull()
    .references(() => users.id, { onDelete: "cascade" }),
  createdAt: text("created_at").notNull(),
  updatedAt: text("updated_at").notNull(),
});

/** No primary key column: SQLite keys it by its hidden rowid. */
export const tags = sqliteTable("tags", {
  name: text("name").notNull().unique(),
});

export const articleTag = sqliteTable(
  "article_tag",
  {
    articleId: integer("article_id")
      .notNull()
      .references(() => articles.id, { onDelete: "cascade" }),
    tagName: text("tag_name")
      .notNull()
      .references(() => tags.name),
  },
  (t) => [primaryKey({ columns: [t.articleId, t.tagName] })],
);

export const articleFavorite = sqliteTable(
  "article_favorite",
  {
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    articleId: integer("article_id")
      .notNull()
      .references(() => articles.id, { onDelete: "cascade" }),
  },
  (t) => [primaryKey({ columns: [t.userId, t.articleId] })],
);

export const userFollow = sqliteTable(
  "user_follow",
  {
    followerId: integer("follower_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    followingId: integer("following_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
  },
  (t) => [primaryKey({ columns: [t.followerId, t.followingId] })],
);

export const comments = sqliteTable("comments", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  body: text("body").notNull(),
  articleId: integer("article_id")
    .notNull()
    .references(() => articles.id, { onDelete: "cascade" }),
  authorId: integer("author_id")
    .notNull()
    .references(() => users.id, { onDelete: "cascade" }),
  createdAt: text("created_at").notNull(),
  updatedAt: text("updated_at").notNull(),
});

export const usersRelations = relations(users, ({ many }) => ({
  articles: many(articles),
  comments: many(comments),
  /** The follow rows naming this user as the one followed. */
  followers: many(userFollow, { relationName: "following" }),
  following: many(userFollow, { relationName: "follower" }),
}));

export const articlesRelations = relations(articles, ({ one, many }) => ({
  author: one(users, { fields: [articles.authorId], references: [users.id] }),
  comments: many(comments),
  tags: many(articleTag),
  favorites: many(articleFavorite),
}));

export const tagsRelations = relations(tags, ({ many }) => ({
  articles: many(articleTag),
}));

export const articleTagRelations = relations(articleTag, ({ one }) => ({
  article: one(articles, { fields: [articleTag.articleId], references: [articles.id] }),
  tag: one(tags, { fields: [articleTag.tagName], references: [tags.name] }),
}));

export const articleFavoriteRelations = relations(articleFavorite, ({ one }) => ({
  user: one(users, { fields: [articleFavorite.userId], references: [users.id] }),
  article: one(articles, { fields: [articleFavorite.articleId], references: [articles.id] }),
}));

export const userFollowRelations = relations(userFollow, ({ one }) => ({
  follower: one(users, {
    fields: [userFollow.followerId],
    references: [users.id],
    relationName: "follower",
  }),
  following: one(users, {
    fields: [userFollow.followingId],
    references: [users.id],
    relationName: "following",
  }),
}));

export const commentsRelations = relations(comments, ({ one }) => ({
  article: one(articles, { fields: [comments.articleId], references: [articles.id] }),
  author: one(users, { fields: [comments.authorId], references: [users.id] }),
}));

export const schema = {
  users,
  articles,
  tags,
  articleTag,
  articleFavorite,
  userFollow,
  comments,
  usersRelations,
  articlesRelations,
  tagsRelations,
  articleTagRelations,
  articleFavoriteRelations,
  userFollowRelations,
  commentsRelations,
};
