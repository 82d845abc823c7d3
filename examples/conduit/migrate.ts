/**
 * The Conduit database: its connection settings and its tables, in plain SQL.
 */
import { type Client, createClient } from "@libsql/client";

/** How long a statement waits for another connection's write lock, ms (libSQL's default is 0). */
export const BUSY_TIMEOUT_MS = 5000;

const TABLES = [
  `CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    bio TEXT,
    image TEXT
  )`,
  `CREATE TABLE IF NOT EXISTS articles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    body TEXT NOT NULL,
    author_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  )`,
  "CREATE INDEX IF NOT EXISTS articles_author ON articles(author_id)",
  "CREATE INDEX IF NOT EXISTS articles_created ON articles(created_at, id)",
  // No primary key: a rowid table, as the tags of the app issue 45 measured.
  "CREATE TABLE IF NOT EXISTS tags (name TEXT NOT NULL UNIQUE)",
  `CREATE TABLE IF NOT EXISTS article_tag (
    article_id INTEGER NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    tag_name TEXT NOT NULL REFERENCES tags(name),
    PRIMARY KEY (article_id, tag_name)
  )`,
  "CREATE INDEX IF NOT EXISTS article_tag_tag ON article_tag(tag_name)",
  `CREATE TABLE IF NOT EXISTS article_favorite (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    article_id INTEGER NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, article_id)
  )`,
  "CREATE INDEX IF NOT EXISTS article_favorite_article ON article_favorite(article_id)",
  `CREATE TABLE IF NOT EXISTS user_follow (
    follower_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    following_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (follower_id, following_id)
  )`,
  "CREATE INDEX IF NOT EXISTS user_follow_following ON user_follow(following_id)",
  `CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    article_id INTEGER NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    author_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  )`,
  "CREATE INDEX IF NOT EXISTS comments_article ON comments(article_id)",
];

/**
 * A libSQL client on the file at `url` (`file:...`) as the app uses it: a busy timeout on
 * every connection of its pool, and foreign keys enforced. libSQL's build enforces them
 * on each new connection already (its pool opens more as needed, with no hook to run a
 * PRAGMA on each); the PRAGMA says so here for anyone who swaps the driver.
 */
export async function openDatabase(url: string): Promise<Client> {
  const client = createClient({ url, timeout: BUSY_TIMEOUT_MS });
  await client.execute("PRAGMA foreign_keys = ON");
  return client;
}

/** Creates the tables (if missing) and puts the file in WAL mode. */
export async function createSchema(client: Client): Promise<void> {
  await client.execute("PRAGMA journal_mode = WAL");
  await client.batch(TABLES, "write");
}
