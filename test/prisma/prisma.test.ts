import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";
import type { SqlDriverAdapterFactory } from "@prisma/driver-adapter-utils";
import Database from "better-sqlite3";
import fc from "fast-check";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type CachedAdapterFactory, prismaCache } from "../../src/prisma/index.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { until } from "../helpers/cluster.ts";
import { requirePostgres } from "../helpers/services.ts";
import {
  type AnyPrismaClient,
  type PrismaClientClass,
  type Provider,
  prismaClientClass,
  tables,
} from "./client.ts";

const server = await requirePostgres();

/** A database with the test models behind Prisma adapters, and SQL around Prisma. */
interface Harness {
  provider: Provider;
  /** A new adapter factory of the database (uncached); on PostgreSQL its sessions in `zone` (UTC). */
  factory(zone?: string): SqlDriverAdapterFactory;
  /** A table's name in SQL Prisma's raw queries run (schema-qualified on PostgreSQL). */
  table(name: string): string;
  /** Runs SQL around Prisma on a connection of its own (`$1` placeholders, table names quoted). */
  around(statement: string, params?: unknown[]): Promise<void>;
  reset(): Promise<void>;
  installCapture(): Promise<void>;
  close(): Promise<void>;
}

const SEED = `
  INSERT INTO "User" ("id", "email", "name") VALUES (1, 'ann@x', 'Ann'), (2, 'bo@x', 'Bo'), (3, 'cy@x', 'Cy');
  INSERT INTO "Post" ("id", "title", "published", "views", "authorId") VALUES
    (1, 'One', true, 5, 1), (2, 'Two', false, 3, 1), (3, 'Three', true, 9, 2), (4, 'Four', true, 1, 3);
  INSERT INTO "Comment" ("id", "body", "postId", "authorId") VALUES (1, 'c1', 1, 2), (2, 'c2', 1, 3), (3, 'c3', 3, 1);
  INSERT INTO "Tag" ("id", "name") VALUES (1, 'news'), (2, 'tech');
  INSERT INTO "_PostToTag" ("A", "B") VALUES (1, 1), (3, 2);`;
const TABLES = ["_PostToTag", "Comment", "Tag", "Post", "User"];
/** Instants the random writes give posts (ms since the epoch). */
const DATES = [Date.UTC(2029, 0, 1), Date.UTC(2031, 5, 1, 12), Date.UTC(2028, 2, 3)];

function sqliteHarness(): Harness {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-prisma-"));
  const path = join(dir, "db.sqlite");
  const admin = new Database(path);
  admin.pragma("journal_mode = WAL");
  admin.exec(tables("sqlite"));
  return {
    provider: "sqlite",
    factory: () => new PrismaBetterSqlite3({ url: `file:${path}` }),
    table: (name) => `"${name}"`,
    around: async (statement, params = []) => {
      admin.prepare(statement.replaceAll(/\$\d+/g, "?")).run(...params);
    },
    async reset() {
      admin.exec(
        TABLES.map((t) => `DELETE FROM "${t}";`).join("\n") +
          SEED.replaceAll("true", "1").replaceAll("false", "0"),
      );
    },
    async installCapture() {
      const source = sqliteSource({ path });
      await source.installCapture();
      await source.close();
    },
    async close() {
      admin.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresHarness(url: string): Harness {
  const schema = `ec_prisma_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Pool({ connectionString: url, max: 2, options: `-c search_path=${schema}` });
  let made = false;
  return {
    provider: "postgresql",
    factory: (zone = "UTC") =>
      new PrismaPg({ connectionString: url, options: `-c TimeZone=${zone}` }, { schema }),
    table: (name) => `"${schema}"."${name}"`,
    around: async (statement, params = []) => {
      await admin.query(statement, params);
    },
    async reset() {
      if (!made) {
        await admin.query(`CREATE SCHEMA ${schema}; ${tables("postgresql", schema)}`);
        made = true;
      }
      await admin.query(
        `TRUNCATE ${TABLES.map((t) => `"${t}"`).join(", ")} RESTART IDENTITY; ${SEED}`,
      );
      for (const t of ["User", "Post", "Comment", "Tag"]) {
        await admin.query(`SELECT setval(pg_get_serial_sequence('"${t}"', 'id'), 100)`);
      }
    },
    async installCapture() {
      const source = await postgresSource({ url, schema, max: 1 });
      await source.installCapture();
      await source.close();
    },
    async close() {
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.query(`DROP SCHEMA IF EXISTS edgecache_${schema} CASCADE`);
      await admin.end();
    },
  };
}

function prismaSuite(make: () => Harness, withCapture: boolean): void {
  let h: Harness;
  let PrismaClient: PrismaClientClass;
  const clients: AnyPrismaClient[] = [];
  /** A cached Prisma client, and an uncached one on the same database to compare with. */
  const open = async () => {
    const adapter = prismaCache(h.factory(), { tiers: [memoryStore()], capture: withCapture });
    const prisma = new PrismaClient({ adapter });
    const plain = new PrismaClient({ adapter: h.factory() });
    clients.push(prisma, plain);
    await prisma.user.findMany({ include: { posts: { include: { tags: true, comments: true } } } });
    await prisma.tag.findMany();
    const { cache } = adapter as CachedAdapterFactory;
    if (withCapture) {
      await until(() => cache.getStats().writes === "capture");
      await cache.catchUp();
    }
    return { prisma, plain, cache };
  };

  beforeAll(async () => {
    h = make();
    PrismaClient = await prismaClientClass(h.provider);
    await h.reset();
    if (withCapture) await h.installCapture();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.$disconnect();
    await h.reset();
  });
  afterAll(async () => {
    await h?.close();
  });

  const feed = (p: AnyPrismaClient) =>
    p.post.findMany({
      where: { published: true },
      include: { author: true, tags: true, _count: { select: { comments: true } } },
      orderBy: [{ views: "desc" }, { id: "asc" }],
    });

  it("a read twice: the second answered from the cache, with the same result", async () => {
    const { prisma, plain, cache } = await open();
    const hits = cache.getStats().hits;
    const first = await feed(prisma);
    expect(await feed(prisma)).toEqual(first);
    expect(first).toEqual(await feed(plain));
    expect(cache.getStats().hits).toBeGreaterThan(hits);
  });

  it("writes through Prisma are seen by the next read: create, nested create, update, delete", async () => {
    const { prisma, plain } = await open();
    await feed(prisma);
    await prisma.user.create({
      data: {
        email: "dee@x",
        name: "Dee",
        posts: { create: [{ title: "Five", published: true, views: 7 }] },
      },
    });
    expect(await feed(prisma)).toEqual(await feed(plain));
    await prisma.post.update({ where: { id: 1 }, data: { views: { increment: 10 } } });
    await prisma.post.updateMany({ where: { authorId: 2 }, data: { published: false } });
    expect(await feed(prisma)).toEqual(await feed(plain));
    await prisma.comment.create({ data: { body: "c4", postId: 4, authorId: 1 } });
    expect(await feed(prisma)).toEqual(await feed(plain));
    await prisma.post.update({ where: { id: 4 }, data: { tags: { connect: [{ id: 1 }] } } });
    expect(await feed(prisma)).toEqual(await feed(plain));
    await prisma.post.delete({ where: { id: 1 } });
    expect(await feed(prisma)).toEqual(await feed(plain));
  });

  it("a delete that cascades empties the cached reads of the tables its foreign keys reach", async () => {
    const { prisma, plain } = await open();
    const comments = (p: AnyPrismaClient) => p.comment.findMany({ where: { postId: 1 } });
    expect(await comments(prisma)).toHaveLength(2);
    await prisma.user.delete({ where: { id: 1 } }); // its posts, and their comments, go too
    expect(await comments(prisma)).toEqual(await comments(plain));
    expect(await comments(prisma)).toEqual([]);
  });

  it("interactive transactions: reads inside are not the cache's, writes are seen once committed, not after a rollback", async () => {
    const { prisma, cache } = await open();
    const ann = () => prisma.user.findUnique({ where: { id: 1 } });
    expect((await ann()).name).toBe("Ann");
    await prisma.$transaction(async (tx: AnyPrismaClient) => {
      await tx.user.update({ where: { id: 1 }, data: { name: "Flo" } });
      expect((await tx.user.findUnique({ where: { id: 1 } })).name).toBe("Flo");
    });
    expect((await ann()).name).toBe("Flo");
    await expect(
      prisma.$transaction(async (tx: AnyPrismaClient) => {
        await tx.user.update({ where: { id: 1 }, data: { name: "Gus" } });
        throw new Error("roll back");
      }),
    ).rejects.toThrow("roll back");
    const hits = cache.getStats().hits;
    expect((await ann()).name).toBe("Flo");
    expect(cache.getStats().hits).toBe(hits + 1);
  });

  it("a batch transaction's writes are seen once it commits", async () => {
    const { prisma, plain } = await open();
    await feed(prisma);
    await prisma.$transaction([
      prisma.post.update({ where: { id: 2 }, data: { published: true } }),
      prisma.user.update({ where: { id: 3 }, data: { name: "Cyd" } }),
      prisma.post.count(),
    ]);
    expect(await feed(prisma)).toEqual(await feed(plain));
  });

  it("raw queries: $queryRaw is cached, $executeRaw is a write", async () => {
    const { prisma } = await open();
    const users = h.table("User");
    const names = () => prisma.$queryRawUnsafe(`SELECT "name" FROM ${users} ORDER BY "id"`);
    expect(await names()).toEqual([{ name: "Ann" }, { name: "Bo" }, { name: "Cy" }]);
    await prisma.$executeRawUnsafe(`UPDATE ${users} SET "name" = 'Al' WHERE "id" = 1`);
    expect(await names()).toEqual([{ name: "Al" }, { name: "Bo" }, { name: "Cy" }]);
  });

  if (withCapture) {
    it("`include: { _count }` is read along keys: a child of another parent written keeps it, one of its parents' children drops it", async () => {
      const { prisma, plain, cache } = await open();
      const counts = (p: AnyPrismaClient) =>
        p.post.findMany({
          where: { id: { in: [1, 2] } },
          include: { _count: { select: { comments: true } } },
          orderBy: { id: "asc" },
        });
      expect(await counts(prisma)).toEqual(await counts(plain));
      const hits = cache.getStats().hits;
      // Post 3's comments: not a parent in the result.
      await prisma.comment.create({ data: { body: "elsewhere", postId: 3, authorId: 1 } });
      await prisma.comment.update({ where: { id: 3 }, data: { body: "edited" } });
      expect(await counts(prisma)).toEqual(await counts(plain));
      expect(cache.getStats().hits).toBe(hits + 1);
      // Post 2's: counted.
      await prisma.comment.create({ data: { body: "here", postId: 2, authorId: 1 } });
      const after = await counts(prisma);
      expect(after).toEqual(await counts(plain));
      expect(after[1]._count.comments).toBe(1);
      // Moved from post 1 to post 3, around Prisma: post 1's count changes.
      await h.around(`UPDATE ${h.table("Comment")} SET "postId" = 3 WHERE "id" = 1`);
      expect(await cache.catchUp()).toBe(true);
      expect((await counts(prisma))[0]._count.comments).toBe(1);
      expect(await counts(prisma)).toEqual(await counts(plain));
    });

    it("a many-to-many `_count` is read along its link table: another post tagged or a tag renamed keeps it, one of its posts tagged drops it", async () => {
      const { prisma, plain, cache } = await open();
      const counts = (p: AnyPrismaClient) =>
        p.post.findMany({
          where: { id: { in: [1, 2] } },
          include: { _count: { select: { tags: true } } },
          orderBy: { id: "asc" },
        });
      expect(await counts(prisma)).toEqual(await counts(plain));
      const hits = cache.getStats().hits;
      // Around Prisma: post 4 tagged (not in the result), a tag renamed (not read).
      await h.around(`INSERT INTO ${h.table("_PostToTag")} ("A", "B") VALUES (4, 1)`);
      await h.around(`UPDATE ${h.table("Tag")} SET "name" = 'old news' WHERE "id" = 1`);
      expect(await cache.catchUp()).toBe(true);
      expect(await counts(prisma)).toEqual(await counts(plain));
      expect(cache.getStats().hits).toBe(hits + 1);
      // Post 2 tagged through Prisma, then post 1 untagged around it.
      await prisma.post.update({ where: { id: 2 }, data: { tags: { connect: { id: 2 } } } });
      const after = await counts(prisma);
      expect(after).toEqual(await counts(plain));
      expect(after[1]._count.tags).toBe(1);
      await h.around(`DELETE FROM ${h.table("_PostToTag")} WHERE "A" = 1`);
      expect(await cache.catchUp()).toBe(true);
      expect((await counts(prisma))[0]._count.tags).toBe(0);
      expect(await counts(prisma)).toEqual(await counts(plain));
    });

    it("capture: an update of one row leaves the cached read of another a hit; a write around Prisma is seen", async () => {
      const { prisma, cache } = await open();
      const user = (id: number) => prisma.user.findUnique({ where: { id } });
      await user(1);
      const hits = cache.getStats().hits;
      await prisma.user.update({ where: { id: 2 }, data: { name: "Hal" } });
      expect((await user(1)).name).toBe("Ann");
      expect(cache.getStats().hits).toBe(hits + 1);
      const applied = cache.getStats().capture!.applied;
      await h.around(`UPDATE "User" SET "name" = $1 WHERE "id" = $2`, ["Ivy", 1]);
      expect(await cache.catchUp()).toBe(true);
      expect((await user(1)).name).toBe("Ivy");
      // Changes made around the cache count as applied, not only its own mutations'.
      expect(cache.getStats().capture!.applied).toBeGreaterThan(applied);
    });

    it("capture: a raw query's number argument is read by its value (Prisma types it decimal): a write of another row leaves it a hit", async () => {
      const { prisma, cache } = await open();
      const at = h.provider === "sqlite" ? "?" : "$1";
      const user = () =>
        prisma.$queryRawUnsafe(`SELECT "id", "name" FROM ${h.table("User")} WHERE "id" = ${at}`, 1);
      expect(await user()).toEqual([{ id: 1, name: "Ann" }]);
      await user();
      const hits = cache.getStats().hits;
      await h.around(`UPDATE "User" SET "name" = $1 WHERE "id" = $2`, ["Hal", 2]);
      expect(await cache.catchUp()).toBe(true);
      expect(await user()).toEqual([{ id: 1, name: "Ann" }]);
      expect(cache.getStats().hits).toBe(hits + 1);
      await h.around(`UPDATE "User" SET "name" = $1 WHERE "id" = $2`, ["Ivy", 1]);
      expect(await cache.catchUp()).toBe(true);
      expect(await user()).toEqual([{ id: 1, name: "Ivy" }]);
    });

    it("capture: a startsWith list is a prefix, on each driver: a write of a row outside it leaves it a hit, one into it is seen", async () => {
      const { prisma, cache } = await open();
      const as = () =>
        prisma.user.findMany({ where: { name: { startsWith: "A" } }, orderBy: { id: "asc" } });
      expect((await as()).map((u: { name: string }) => u.name)).toEqual(["Ann"]);
      await h.around(`UPDATE "User" SET "name" = $1 WHERE "id" = $2`, ["Bz", 2]);
      expect(await cache.catchUp()).toBe(true);
      const hits = cache.getStats().hits;
      expect((await as()).map((u: { name: string }) => u.name)).toEqual(["Ann"]);
      expect(cache.getStats().hits).toBe(hits + 1);
      await h.around(`UPDATE "User" SET "name" = $1 WHERE "id" = $2`, ["Al", 3]);
      expect(await cache.catchUp()).toBe(true);
      expect((await as()).map((u: { name: string }) => u.name)).toEqual(["Ann", "Al"]);
    });

    it("capture: a page ordered by a DateTime is patched in place after a write around Prisma on better-sqlite3 (its text as stored), equal to a fresh read", async () => {
      const { prisma, plain, cache } = await open();
      const newest = (p: AnyPrismaClient) =>
        p.post.findMany({ orderBy: [{ createdAt: "desc" }, { id: "asc" }], take: 3 });
      // Text as Prisma writes it (not a converted number's form): what the page orders by.
      await prisma.post.update({
        where: { id: 2 },
        data: { createdAt: new Date(Date.UTC(2030, 0, 1)) },
      });
      expect(await newest(prisma)).toEqual(await newest(plain));
      const { patched } = cache.getStats();
      await h.around(`UPDATE "Post" SET "views" = "views" + 1 WHERE "id" = $1`, [2]);
      expect(await cache.catchUp()).toBe(true);
      const hits = cache.getStats().hits;
      expect(await newest(prisma)).toEqual(await newest(plain));
      // Not on PostgreSQL, where a boolean ("published") is not patched.
      if (h.provider === "sqlite") {
        expect(cache.getStats().patched).toBeGreaterThan(patched);
        expect(cache.getStats().hits).toBe(hits + 1);
      }
    });

    it("capture: on PostgreSQL a DateTime is read only in a UTC session: pages ordered by one are patched there, not in another zone nor once a statement names the time zone, and equal a fresh read", async () => {
      if (h.provider !== "postgresql") return;
      const pages = (p: AnyPrismaClient) =>
        Promise.all([
          p.event.findMany({ orderBy: [{ startsAt: "desc" }, { id: "asc" }], take: 2 }),
          p.event.findMany({ orderBy: [{ day: "asc" }, { id: "asc" }], take: 3 }),
        ]);
      let seq = 0;
      /** A write around Prisma placing a row in both pages, and one changing a row they hold. */
      const writes = async () => {
        seq++;
        await h.around(`INSERT INTO "Event" VALUES ($1, $2, $3, 0)`, [
          100 + seq,
          `2027-01-01T00:00:00.${seq}5Z`,
          `2025-12-31 23:59:59.${seq}5`,
        ]);
        await h.around(`UPDATE "Event" SET "n" = "n" + 1 WHERE "id" = $1`, [100 + seq]);
      };
      for (const zone of ["UTC", "Asia/Kolkata"]) {
        await h.around(`DELETE FROM "Event"`);
        await h.around(`INSERT INTO "Event" VALUES
          (1, '2026-01-01T00:00:00.5Z', '2026-01-01 00:00:00.5', 1),
          (2, '2026-01-02T00:00:00Z', '2026-01-02 00:00:00', 2),
          (3, '2026-01-02T00:00:00Z', '2026-01-01 00:00:00.5', 3)`);
        const adapter = prismaCache(h.factory(zone), { tiers: [memoryStore()] });
        const prisma = new PrismaClient({ adapter });
        const plain = new PrismaClient({ adapter: h.factory(zone) });
        clients.push(prisma, plain);
        const { cache } = adapter as CachedAdapterFactory;
        await prisma.user.findMany();
        await until(() => cache.getStats().writes === "capture");
        await cache.catchUp();
        const patched = cache.getStats().patched;
        for (let i = 0; i < 3; i++) {
          expect(await pages(prisma)).toEqual(await pages(plain));
          await writes();
          expect(await cache.catchUp()).toBe(true);
        }
        expect(await pages(prisma)).toEqual(await pages(plain));
        if (zone !== "UTC") {
          expect(cache.getStats().patched).toBe(patched);
          continue;
        }
        // The next zone's cache consumes the change table once this one lets it go.
        const done = async () => {
          await prisma.$disconnect();
          await plain.$disconnect();
        };
        expect(cache.getStats().patched).toBeGreaterThan(patched);
        // Naming the time zone (here to set it as it was) ends it: no longer read.
        await prisma.$executeRawUnsafe("SET TIME ZONE 'UTC'");
        const after = cache.getStats().patched;
        for (let i = 0; i < 2; i++) {
          expect(await pages(prisma)).toEqual(await pages(plain));
          await writes();
          expect(await cache.catchUp()).toBe(true);
        }
        expect(await pages(prisma)).toEqual(await pages(plain));
        expect(cache.getStats().patched).toBe(after);
        await done();
      }
    });
  } else {
    it("without capture: a write empties the cached reads of its tables", async () => {
      const { prisma, cache } = await open();
      const user = (id: number) => prisma.user.findUnique({ where: { id } });
      await user(1);
      const misses = cache.getStats().misses;
      await prisma.user.update({ where: { id: 2 }, data: { name: "Hal" } });
      expect((await user(1)).name).toBe("Ann");
      expect(cache.getStats().misses).toBe(misses + 1);
      expect(cache.getStats().writes).toBe("tables");
    });
  }

  it("every read after an acknowledged write equals an uncached client's (random reads and writes)", async () => {
    const { prisma, plain, cache } = await open();
    const reads: ((p: AnyPrismaClient, n: number) => Promise<unknown>)[] = [
      (p, n) =>
        p.user.findUnique({ where: { id: n }, include: { posts: { orderBy: { id: "asc" } } } }),
      (p) => feed(p),
      (p, n) => p.post.findMany({ where: { authorId: n }, orderBy: { id: "asc" }, take: 2 }),
      (p, n) => p.comment.findMany({ where: { postId: n }, orderBy: { id: "asc" } }),
      (p, n) =>
        p.user.findMany({
          where: { name: { startsWith: ["A", "U", "B"][n % 3] } },
          orderBy: { id: "asc" },
        }),
      (p, n) =>
        p.post.findMany({
          orderBy: [{ createdAt: n % 2 ? "desc" : "asc" }, { id: "asc" }],
          take: 2,
          skip: n % 3,
        }),
      (p, n) => p.post.count({ where: { authorId: n, published: true } }),
      (p, n) =>
        p.tag.findUnique({ where: { id: n }, include: { posts: { select: { id: true } } } }),
      (p, n) =>
        p.user.findMany({
          where: { id: { lte: n } },
          include: {
            _count: { select: { posts: { where: { published: true } }, comments: true } },
          },
          orderBy: { id: "asc" },
        }),
      (p, n) =>
        p.post.findUnique({
          where: { id: n },
          select: { id: true, _count: { select: { comments: true, tags: true } } },
        }),
    ];
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("read" as const),
        read: fc.nat(reads.length - 1),
        n: fc.integer({ min: 1, max: 5 }),
      }),
      fc.record({
        kind: fc.constantFrom(
          "views",
          "publish",
          "rename",
          "comment",
          "uncomment",
          "post",
          "unpost",
          "tag",
          "date",
        ),
        n: fc.integer({ min: 1, max: 5 }),
        around: fc.boolean(),
      }),
    );
    let made = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 20 }), async (ops) => {
        await h.reset();
        await cache.invalidate();
        if (withCapture) await cache.catchUp();
        for (const o of ops) {
          if (o.kind === "read") {
            // Twice: the second is the cache's, unless a reload or capture overtook it.
            const fresh = await reads[o.read]!(plain, o.n);
            expect(await reads[o.read]!(prisma, o.n)).toEqual(fresh);
            expect(await reads[o.read]!(prisma, o.n)).toEqual(fresh);
          } else if (o.around && withCapture) {
            await writeAround(o.kind, o.n, ++made);
            expect(await cache.catchUp()).toBe(true);
          } else {
            await writeThrough(prisma, o.kind, o.n, ++made).catch(missing);
          }
        }
      }),
      { numRuns: 10 },
    );
    expect(cache.getStats().hits).toBeGreaterThan(0);
  });

  /** A write of a row a random walk deleted fails in Prisma (P2025, P2003): no change. */
  const missing = (err: { code?: string }) => {
    if (err.code !== "P2025" && err.code !== "P2003" && err.code !== "P2018") throw err;
  };
  const writeThrough = async (p: AnyPrismaClient, kind: string, n: number, seq: number) => {
    switch (kind) {
      case "views":
        return p.post.update({ where: { id: n }, data: { views: { increment: 3 } } });
      case "publish":
        return p.post.updateMany({ where: { id: n }, data: { published: n % 2 === 0 } });
      case "rename":
        return p.user.update({ where: { id: (n % 3) + 1 }, data: { name: `U${seq}` } });
      case "comment":
        return p.comment.create({ data: { body: `c${seq}`, postId: n, authorId: (n % 3) + 1 } });
      case "uncomment":
        return p.comment.deleteMany({ where: { postId: n } });
      case "post":
        return p.post.create({
          data: { title: `P${seq}`, published: true, views: seq % 7, authorId: (n % 3) + 1 },
        });
      case "unpost":
        return p.post.delete({ where: { id: n } });
      case "date":
        return p.post.update({ where: { id: n }, data: { createdAt: new Date(DATES[seq % 3]!) } });
      default:
        return p.post.update({
          where: { id: n },
          data: { tags: { connect: [{ id: (n % 2) + 1 }] } },
        });
    }
  };
  const writeAround = async (kind: string, n: number, seq: number) => {
    const truth = (b: boolean) => (h.provider === "sqlite" ? (b ? 1 : 0) : b);
    switch (kind) {
      case "views":
        return h.around(`UPDATE "Post" SET "views" = "views" + 3 WHERE "id" = $1`, [n]);
      case "publish":
        return h.around(`UPDATE "Post" SET "published" = $1 WHERE "id" = $2`, [
          truth(n % 2 === 0),
          n,
        ]);
      case "rename":
        return h.around(`UPDATE "User" SET "name" = $1 WHERE "id" = $2`, [`A${seq}`, (n % 3) + 1]);
      case "comment":
        return h.around(
          `INSERT INTO "Comment" ("body", "postId", "authorId") SELECT $1, "id", $2 FROM "Post" WHERE "id" = $3`,
          [`a${seq}`, (n % 3) + 1, n],
        );
      case "uncomment":
        return h.around(`DELETE FROM "Comment" WHERE "postId" = $1`, [n]);
      case "post":
        return h.around(
          `INSERT INTO "Post" ("title", "published", "views", "authorId") VALUES ($1, $2, $3, $4)`,
          [`Q${seq}`, truth(true), seq % 7, (n % 3) + 1],
        );
      case "unpost":
        return h.around(`DELETE FROM "Post" WHERE "id" = $1`, [n]);
      case "date": {
        // On SQLite a number too (Prisma's adapter gives it as ISO text), and text of that form.
        const at = DATES[seq % 3]!;
        const value =
          h.provider !== "sqlite"
            ? new Date(at).toISOString()
            : [at, new Date(at).toISOString(), "2029-06-01 12:00:00"][seq % 3];
        return h.around(`UPDATE "Post" SET "createdAt" = $1 WHERE "id" = $2`, [value, n]);
      }
      default:
        return h.around(
          `INSERT INTO "_PostToTag" ("A", "B") SELECT "id", $1 FROM "Post" WHERE "id" = $2 ON CONFLICT DO NOTHING`,
          [(n % 2) + 1, n],
        );
    }
  };
}

describe("prisma on better-sqlite3, with change capture", () => {
  prismaSuite(() => sqliteHarness(), true);
});

describe("prisma on better-sqlite3, without change capture", () => {
  prismaSuite(() => sqliteHarness(), false);
});

server.describe("prisma on node-postgres, with change capture", () => {
  prismaSuite(() => postgresHarness(server.url), true);
});

server.describe("prisma on node-postgres, without change capture", () => {
  prismaSuite(() => postgresHarness(server.url), false);
});

describe("prismaCache's options", () => {
  it("refuses what it cannot cache, naming it", () => {
    const options = { tiers: [memoryStore()] };
    expect(() => prismaCache({} as never, options)).toThrow(/factory/);
    const mysql = { provider: "mysql", adapterName: "x", connect: async () => ({}) };
    expect(() => prismaCache(mysql as never, options)).toThrow(/sqlite or postgres/);
    const sqlite = new PrismaBetterSqlite3({ url: "file::memory:" });
    expect(() => prismaCache(sqlite, { ...options, client: 42 })).toThrow(/client/);
    expect(() => prismaCache(sqlite, {} as never)).toThrow(/tiers/);
  });

  it("its cache can be asked before Prisma connects", () => {
    const adapter = prismaCache(new PrismaBetterSqlite3({ url: "file::memory:" }), {
      tiers: [memoryStore()],
    });
    expect(adapter.cache.getStats()).toMatchObject({ hits: 0, misses: 0, writes: "tables" });
  });
});
