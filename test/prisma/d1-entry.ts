// Bundled by test/prisma/d1-worker.ts and run inside workerd: edgecache/prisma on D1
// (`prismaCache(new PrismaD1(env.DB), ...)`, the binding found behind the adapter), following
// D1 change capture through the change log's Durable Object, as a Worker would use it. The
// table, its writes around edgecache and the routes are those of the other ORMs' D1 Worker
// (test/query-cache/d1-follow-table.ts); Prisma's model of it is schema.d1.prisma's Player.

import { PrismaClient } from "edgecache-test:prisma-d1-client";
import { PrismaD1 } from "@prisma/adapter-d1";
import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import { durableChangeLog } from "../../src/log/durable-object.ts";
import { prismaCache } from "../../src/prisma/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import {
  around,
  type Env,
  followingEntry,
  nameOf,
  type Op,
} from "../query-cache/d1-follow-table.ts";

export { ChangeLogObject };

function open(env: Env) {
  const logs = [durableChangeLog({ namespace: env.CHANGE_LOG })];
  const adapter = prismaCache(new PrismaD1(env.DB), {
    tiers: [memoryStore({ maxBytes: 4_000_000 })],
    log: logs[0],
  });
  const prisma = new PrismaClient({ adapter });
  const fresh = new PrismaClient({ adapter: new PrismaD1(env.DB) });
  return { logs, adapter, prisma, fresh };
}

type Isolate = ReturnType<typeof open>;
// biome-ignore lint/suspicious/noExplicitAny: the generated client's types exist only once generated.
type Client = any;

/**
 * Prisma's reads of the shapes the other ORMs' D1 tests read (by key, by a column, a range
 * with `take`, a page with `skip`, `in`, OR of `startsWith` and null), and a count. Rows come
 * back as a list, as the other entries give them (findUnique's row in a list of one or none).
 */
const READS = [
  async (db: Client, p: number) => {
    const row = await db.player.findUnique({ where: { id: p } });
    return row ? [row] : [];
  },
  (db: Client, p: number) =>
    db.player.findMany({ where: { name: `n${p % 3}` }, orderBy: { id: "asc" } }),
  (db: Client, p: number) =>
    db.player.findMany({
      where: { score: { gt: p } },
      orderBy: [{ score: "asc" }, { id: "asc" }],
      take: 3,
    }),
  (db: Client, _p: number) => db.player.findMany({ orderBy: { id: "asc" }, take: 4, skip: 2 }),
  (db: Client, p: number) =>
    db.player.findMany({ where: { id: { in: [p, p + 1, p + 2] } }, orderBy: { id: "asc" } }),
  (db: Client, p: number) =>
    db.player.findMany({
      where: { OR: [{ name: { startsWith: "n1" } }, { name: null, score: { gt: p } }] },
      orderBy: { id: "asc" },
    }),
  (db: Client, p: number) => db.player.count({ where: { name: `n${p % 3}` } }),
];

async function prismaOp(i: Isolate, env: Env, op: Op) {
  const name = nameOf(op);
  if (op.kind === "read") {
    const read = READS[op.which % READS.length]!;
    return { cached: await read(i.prisma, op.id), fresh: await read(i.fresh, op.id) };
  }
  if (op.kind === "write") {
    const data = { name, score: op.value };
    if (op.which === 0) await i.prisma.player.updateMany({ where: { id: op.id }, data });
    else if (op.which === 1) {
      await i.prisma.player.upsert({
        where: { id: op.id },
        create: { id: op.id, ...data },
        update: data,
      });
    } else await i.prisma.player.deleteMany({ where: { id: op.id } });
    return {};
  }
  await around(env, op);
  return { caughtUp: await i.adapter.cache.catchUp() };
}

/**
 * Batch transactions on D1, which has none (Prisma refuses interactive ones there; its D1
 * adapter runs a batch's statements one by one, and its commit and rollback do nothing):
 * `which` 0 writes row `id` in a batch that commits, 1 in a batch whose next statement fails
 * (row 1's key taken again), so that Prisma rolls back what D1 has kept.
 */
async function transactionOp(i: Isolate, _env: Env, op: Op) {
  const write = i.prisma.player.updateMany({
    where: { id: op.id },
    data: { name: nameOf(op), score: op.value },
  });
  if (op.which === 0) await i.prisma.$transaction([write]);
  else {
    const taken = i.prisma.player.create({ data: { id: 1, score: 0 } });
    const failed = await i.prisma.$transaction([write, taken]).then(
      () => false,
      (err: { code?: string }) => err.code === "P2002",
    );
    if (!failed) throw new Error("expected the batch to fail on row 1's key");
  }
  return {};
}

/**
 * The `events` table beside `users`: a DATETIME and an INTEGER column, which SQLite lets hold
 * numbers and text alike, and Prisma's D1 adapter types by their values in each result.
 */
const EVENTS = [
  "create table if not exists events (id integer primary key, at DATETIME, note text, n integer)",
  "delete from events",
  `insert into events values ${[1, 2, 3, 4, 5].map((k) => `(${k}, '2024-01-01T00:00:0${k}Z', 'e${k}', null)`).join(", ")}`,
];

/** An op of /prisma/events: a raw read through Prisma (and a fresh one), or a write around it. */
type EventOp = { kind: "read" | "around"; sql: string };

/**
 * Reads of `events` by `$queryRawUnsafe`, whose values Prisma makes by the column types the
 * adapter gives (a DateTime column's as `Date`s), and writes straight into D1.
 */
async function eventsOp(i: Isolate, env: Env, op: Op) {
  const { kind, sql } = op as unknown as EventOp;
  if (kind === "around") {
    await env.DB.prepare(sql).run();
    return { caughtUp: await i.adapter.cache.catchUp() };
  }
  const shown = (rows: Record<string, unknown>[]) =>
    rows.map((row) =>
      Object.fromEntries(
        Object.entries(row).map(([k, v]) => [k, v instanceof Date ? { date: String(v) } : v]),
      ),
    );
  return {
    cached: shown(await i.prisma.$queryRawUnsafe(sql)),
    fresh: shown(await i.fresh.$queryRawUnsafe(sql)),
  };
}

/** updateMany's count of rows 1 and 2, and an `executeRaw` of the same update's. */
async function countsOp(i: Isolate, _env: Env, _op: Op) {
  const many = await i.prisma.player.updateMany({
    where: { id: { in: [1, 2] } },
    data: { name: "c" },
  });
  const raw = await i.prisma.$executeRawUnsafe("update users set name = 'c' where id in (1, 2)");
  // A write that fails still fails as Prisma tells it (sent in a batch now): row 1's key taken.
  const taken = await i.prisma.player.updateMany({ where: { id: 2 }, data: { id: 1 } }).then(
    () => "written",
    (err: { code?: string }) => err.code,
  );
  return { updateMany: many.count, executeRaw: raw, taken };
}

export default followingEntry(
  open,
  {
    "/prisma": prismaOp,
    "/prisma/counts": countsOp,
    "/prisma/transaction": transactionOp,
    "/prisma/events": eventsOp,
  },
  (i) => ({ prisma: i.adapter.cache }),
  EVENTS,
);
