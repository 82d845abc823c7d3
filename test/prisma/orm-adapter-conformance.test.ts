import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import Database from "better-sqlite3";
import { prismaCache } from "../../src/prisma/index.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { type Item, ormAdapterConformance } from "../../src/testing/index.ts";
import { type AnyPrismaClient, prismaClientClass, tables } from "./client.ts";

// Prisma's adapter held to the ORM-adapter suite (test/database/orm-adapter-conformance.test.ts
// runs the others): the test models' `Tag` (an integer key, a unique name) is its table.

const PrismaClient = await prismaClientClass("sqlite");

ormAdapterConformance("Prisma (better-sqlite3)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-prisma-orm-"));
  const path = join(dir, "db.sqlite");
  const admin = new Database(path);
  admin.pragma("journal_mode = WAL");
  admin.exec(`${tables("sqlite")}; INSERT INTO "Tag" VALUES (1, 'a'), (2, 'b'), (3, 'c');`);
  const installer = sqliteSource({ path });
  await installer.installCapture();
  await installer.close();
  const adapter = prismaCache(new PrismaBetterSqlite3({ url: `file:${path}` }), {
    tiers: [memoryStore()],
  });
  const prisma = new PrismaClient({ adapter });
  const item = (t: { id: number; name: string } | null): Item | undefined =>
    t ? { id: t.id, name: t.name } : undefined;
  return {
    cache: adapter.cache,
    list: async () =>
      ((await prisma.tag.findMany({ orderBy: { id: "asc" } })) as Item[]).map((t) => item(t)!),
    get: async (id) => item(await prisma.tag.findUnique({ where: { id } })),
    insert: async (id, name) => void (await prisma.tag.create({ data: { id, name } })),
    rename: async (id, name) => void (await prisma.tag.update({ where: { id }, data: { name } })),
    remove: async (id) => void (await prisma.tag.delete({ where: { id } })),
    rolledBack: (id, name) =>
      prisma.$transaction(async (tx: AnyPrismaClient) => {
        await tx.tag.create({ data: { id, name } });
        throw new Error("rolled back");
      }),
    around: async (op, id, name) => {
      if (op === "insert") admin.prepare(`INSERT INTO "Tag" VALUES (?, ?)`).run(id, name);
      else if (op === "update")
        admin.prepare(`UPDATE "Tag" SET name = ? WHERE id = ?`).run(name, id);
      else admin.prepare(`DELETE FROM "Tag" WHERE id = ?`).run(id);
    },
    close: async () => {
      await prisma.$disconnect();
      admin.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
