import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

/**
 * Prisma clients generated once per process into .scratch/ (Prisma 7's generator needs no
 * engine; `prisma migrate` would, and cannot download it here: the tests and benchmarks
 * create their tables with SQL, as `tables` below does for the test models).
 */

const ROOT = join(import.meta.dirname, "..", "..");

export type Provider = "sqlite" | "postgresql";

// biome-ignore lint/suspicious/noExplicitAny: the generated client's types exist only once generated.
export type AnyPrismaClient = any;
export type PrismaClientClass = new (options: { adapter: unknown }) => AnyPrismaClient;

/** The generated `PrismaClient` class of the test models of `provider`. */
export function prismaClientClass(provider: Provider): Promise<PrismaClientClass> {
  return generatedClient(join(ROOT, "test", "prisma", `schema.${provider}.prisma`));
}

/** The `PrismaClient` class generated from `schema` (a path): see `generatedEntry`. */
export async function generatedClient(schema: string): Promise<PrismaClientClass> {
  const entry = generatedEntry(schema);
  const module = (await import(pathToFileURL(entry).href)) as { PrismaClient: PrismaClientClass };
  return module.PrismaClient;
}

/**
 * The entry (client.ts) of the client generated from `schema` (a path) into the `output`
 * its generator names; generated again when the schema changed since. Imported in this
 * process (`generatedClient`), or bundled into a Worker (test/prisma/d1-worker.ts).
 */
export function generatedEntry(schema: string): string {
  const output = /\boutput\s*=\s*"([^"]+)"/.exec(readFileSync(schema, "utf8"))?.[1];
  if (!output) throw new Error(`${schema}: its generator names no output`);
  const out = resolve(dirname(schema), output);
  const entry = join(out, "client.ts");
  if (!existsSync(entry) || statSync(entry).mtimeMs < statSync(schema).mtimeMs) {
    rmSync(out, { recursive: true, force: true });
    execFileSync(join(ROOT, "node_modules", ".bin", "prisma"), ["generate", "--schema", schema], {
      cwd: ROOT,
      env: {
        ...process.env,
        PRISMA_SCHEMA_ENGINE_BINARY: "/bin/true",
        PRISMA_HIDE_UPDATE_MESSAGE: "1",
      },
      stdio: "pipe",
    });
  }
  return entry;
}

/** The models' tables as Prisma's migrations would make them (`schema` qualifies PostgreSQL's). */
export function tables(provider: Provider, schema?: string): string {
  if (provider === "sqlite") {
    return `
      CREATE TABLE "User" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "email" TEXT NOT NULL, "name" TEXT NOT NULL);
      CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
      CREATE TABLE "Post" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "title" TEXT NOT NULL,
        "published" BOOLEAN NOT NULL DEFAULT false, "views" INTEGER NOT NULL DEFAULT 0,
        "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, "authorId" INTEGER NOT NULL,
        CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User" ("id") ON DELETE CASCADE ON UPDATE CASCADE);
      CREATE TABLE "Comment" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "body" TEXT NOT NULL,
        "postId" INTEGER NOT NULL, "authorId" INTEGER NOT NULL,
        CONSTRAINT "Comment_postId_fkey" FOREIGN KEY ("postId") REFERENCES "Post" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
        CONSTRAINT "Comment_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User" ("id") ON DELETE CASCADE ON UPDATE CASCADE);
      CREATE TABLE "Tag" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "name" TEXT NOT NULL);
      CREATE UNIQUE INDEX "Tag_name_key" ON "Tag"("name");
      CREATE TABLE "_PostToTag" ("A" INTEGER NOT NULL, "B" INTEGER NOT NULL,
        CONSTRAINT "_PostToTag_A_fkey" FOREIGN KEY ("A") REFERENCES "Post" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
        CONSTRAINT "_PostToTag_B_fkey" FOREIGN KEY ("B") REFERENCES "Tag" ("id") ON DELETE CASCADE ON UPDATE CASCADE);
      CREATE UNIQUE INDEX "_PostToTag_AB_unique" ON "_PostToTag"("A", "B");
      CREATE INDEX "_PostToTag_B_index" ON "_PostToTag"("B");`;
  }
  const s = `"${schema ?? "public"}"`;
  return `
    CREATE TABLE ${s}."User" ("id" SERIAL NOT NULL PRIMARY KEY, "email" TEXT NOT NULL, "name" TEXT NOT NULL);
    CREATE UNIQUE INDEX "User_email_key" ON ${s}."User"("email");
    CREATE TABLE ${s}."Post" ("id" SERIAL NOT NULL PRIMARY KEY, "title" TEXT NOT NULL,
      "published" BOOLEAN NOT NULL DEFAULT false, "views" INTEGER NOT NULL DEFAULT 0,
      "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "authorId" INTEGER NOT NULL,
      CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES ${s}."User" ("id") ON DELETE CASCADE ON UPDATE CASCADE);
    CREATE TABLE ${s}."Comment" ("id" SERIAL NOT NULL PRIMARY KEY, "body" TEXT NOT NULL,
      "postId" INTEGER NOT NULL, "authorId" INTEGER NOT NULL,
      CONSTRAINT "Comment_postId_fkey" FOREIGN KEY ("postId") REFERENCES ${s}."Post" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
      CONSTRAINT "Comment_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES ${s}."User" ("id") ON DELETE CASCADE ON UPDATE CASCADE);
    CREATE TABLE ${s}."Tag" ("id" SERIAL NOT NULL PRIMARY KEY, "name" TEXT NOT NULL);
    CREATE UNIQUE INDEX "Tag_name_key" ON ${s}."Tag"("name");
    CREATE TABLE ${s}."_PostToTag" ("A" INTEGER NOT NULL, "B" INTEGER NOT NULL,
      CONSTRAINT "_PostToTag_AB_pkey" PRIMARY KEY ("A", "B"),
      CONSTRAINT "_PostToTag_A_fkey" FOREIGN KEY ("A") REFERENCES ${s}."Post" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
      CONSTRAINT "_PostToTag_B_fkey" FOREIGN KEY ("B") REFERENCES ${s}."Tag" ("id") ON DELETE CASCADE ON UPDATE CASCADE);
    CREATE INDEX "_PostToTag_B_index" ON ${s}."_PostToTag"("B");
    CREATE TABLE ${s}."Event" ("id" INTEGER NOT NULL PRIMARY KEY, "startsAt" TIMESTAMPTZ(3) NOT NULL,
      "day" TIMESTAMP(3) NOT NULL, "n" INTEGER NOT NULL);`;
}
