/**
 * Per-entity TTLs: one namespace per kind of data, each with the TTL that data can bear,
 * and every key built by its namespace's `key`.
 *
 * - a TTL is a backstop: a write still invalidates what it changes (a row tag, a key), and
 *   the TTL bounds only what no write reaches (a change made around the app);
 * - a namespace's keys are its own (`post:123` of "content" is not `post:123` of "media"),
 *   and `clear()` drops all of one kind at once: `deploy()` clears content, whose cached
 *   pages were rendered by the old templates, and leaves sessions and the rest alone;
 * - sessions stay in this node's memory (`tiers: ["memory"]`): a token never lands in a
 *   shared tier or a file, and a miss on another node reads the session store.
 *
 * Run it: `node --import tsx examples/library/entity-ttls.ts` (memory over a SQLite file,
 * a simulated clock, so the hours pass at once). `test/core/entity-ttls-example.test.ts`
 * runs it and checks each TTL.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Cache, createCache } from "../../src/core/cache/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { sqliteStore } from "../../src/stores/sqlite.ts";

const MINUTE = 60_000;

/** How long each kind of data is served after its load, in ms. */
export const ENTITY_TTLS = {
  // Posts and pages: edited rarely, and each edit invalidates its row's tag.
  content: 5 * MINUTE,
  // Profiles change often and others see them: a short bound on a change made elsewhere.
  user: MINUTE,
  // Feature flags and settings: each change deletes its key; an hour bounds a missed one.
  config: 60 * MINUTE,
  // Image metadata: immutable once uploaded (a new upload gets a new id).
  media: 24 * 60 * MINUTE,
  // Sessions: re-read from the session store every 30 minutes (it knows of a revocation made
  // elsewhere); signing out deletes the key at once.
  session: 30 * MINUTE,
} as const;

export type Entity = keyof typeof ENTITY_TTLS;

/** What the app reads from its database (any source works the same). */
export interface SiteSource {
  post(id: number): Promise<{ id: number; title: string }>;
  user(id: number): Promise<{ id: number; name: string }>;
  flag(name: string): Promise<boolean>;
  image(id: string, width: number): Promise<{ url: string; width: number }>;
  session(token: string): Promise<{ userId: number } | null>;
}

/**
 * The app's cached reads and the writes that invalidate them. The cache's first tier must
 * be named "memory" (`memoryStore()`), where sessions are kept.
 */
export function siteCache(cache: Cache, db: SiteSource) {
  const content = cache.namespace("content", { ttl: ENTITY_TTLS.content });
  const user = cache.namespace("user", { ttl: ENTITY_TTLS.user });
  const config = cache.namespace("config", { ttl: ENTITY_TTLS.config });
  const media = cache.namespace("media", { ttl: ENTITY_TTLS.media });
  const session = cache.namespace("session", { ttl: ENTITY_TTLS.session, tiers: ["memory"] });
  const postTag = (id: number) => `posts#${id}`;

  return {
    post: (id: number) =>
      content.getOrSet(content.key("post", id), () => db.post(id), { tags: [postTag(id)] }),
    user: (id: number) => user.getOrSet(user.key("profile", id), () => db.user(id)),
    flag: (name: string) => config.getOrSet(config.key("flag", name), () => db.flag(name)),
    // The id and width are both parts: each size of an image is its own entry.
    image: (id: string, width: number) =>
      media.getOrSet(media.key("image", id, width), () => db.image(id, width)),
    session: (token: string) =>
      session.getOrSet(session.key("token", token), () => db.session(token)),

    /** After the post's row is written: the post, nothing else. */
    postChanged: (id: number) => content.invalidate({ tags: [postTag(id)] }),
    /** After a flag is set. */
    flagChanged: (name: string) => config.delete(config.key("flag", name)),
    signOut: (token: string) => session.delete(session.key("token", token)),
    /** New templates: every content entry at once, in O(1); users, media and sessions stay. */
    deploy: () => content.clear(),
  };
}

/** A stand-in database that tells `onLoad` what each read asked it for. */
export function demoSource(onLoad: (what: string) => void): SiteSource {
  return {
    async post(id) {
      onLoad(`post ${id}`);
      return { id, title: `Post ${id}` };
    },
    async user(id) {
      onLoad(`user ${id}`);
      return { id, name: `User ${id}` };
    },
    async flag(name) {
      onLoad(`flag ${name}`);
      return name === "new-editor";
    },
    async image(id, width) {
      onLoad(`image ${id}@${width}`);
      return { url: `https://img.example/${id}?w=${width}`, width };
    },
    async session(token) {
      onLoad(`session ${token}`);
      return { userId: 7 };
    },
  };
}

/** The demo: each kind of data read, then read again as the simulated clock passes its TTL. */
async function main(): Promise<void> {
  let now = Date.now();
  const clock = () => now;
  const dir = mkdtempSync(join(tmpdir(), "edgecache-entity-ttls-"));
  const cache = createCache({
    tiers: [memoryStore({ now: clock }), sqliteStore({ path: join(dir, "cache.db"), now: clock })],
    now: clock,
  });
  const loads: string[] = [];
  const db = demoSource((what) => loads.push(what));
  const site = siteCache(cache, db);
  const readAll = async (when: string) => {
    loads.length = 0;
    await site.post(123);
    await site.user(7);
    await site.flag("new-editor");
    await site.image("cat.jpg", 640);
    await site.session("s3cr3t");
    console.log(`${when.padEnd(28)} loaded: ${loads.join(", ") || "nothing (all cached)"}`);
  };

  try {
    console.log(
      "TTLs:",
      Object.entries(ENTITY_TTLS)
        .map(([k, ms]) => `${k} ${ms / MINUTE} min`)
        .join(", "),
    );
    await readAll("first reads");
    await readAll("again");
    now += 2 * MINUTE;
    await readAll("2 minutes later");
    now += 4 * MINUTE;
    await readAll("6 minutes in");
    now += 25 * MINUTE;
    await readAll("31 minutes in");
    now += 30 * MINUTE;
    await readAll("61 minutes in");
    now += 24 * 60 * MINUTE;
    await readAll("a day later");
    await site.postChanged(123);
    await site.signOut("s3cr3t");
    await readAll("post edited, signed out");
    await site.deploy();
    await readAll("after a deploy");
  } finally {
    await cache.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
