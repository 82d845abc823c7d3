import type postgres from "postgres";
import { transaction } from "../database/postgres/transaction.ts";
import { type DemoOptions, demoRows, demoSize } from "./seed.ts";

/**
 * The demo schema in PostgreSQL: the SQLite demo's tables with PostgreSQL's types.
 * Identifiers are quoted, so the columns keep their camelCase names (`"lastName"`).
 * createdAt has second precision, so it reads as `2024-05-17T09:41:07Z`, the text the
 * SQLite demo stores.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  id text PRIMARY KEY,
  "firstName" text NOT NULL,
  "lastName" text NOT NULL,
  email text NOT NULL UNIQUE,
  "createdAt" timestamptz(0) NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS orders (
  id text PRIMARY KEY,
  "userId" text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  total double precision NOT NULL,
  status text NOT NULL,
  "createdAt" timestamptz(0) NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS "orders_userId" ON orders ("userId");
CREATE INDEX IF NOT EXISTS "users_firstName" ON users ("firstName" COLLATE "C");
CREATE INDEX IF NOT EXISTS "users_lastName" ON users ("lastName" COLLATE "C");
`;

/** Rows per INSERT statement. */
const BATCH = 500;

/** Any number that is the same for every node: two nodes starting at once seed once. */
const SEED_LOCK = 0x0edcac4e;

/**
 * Creates the demo tables in the connection's current schema if missing and fills them
 * with the same rows as the SQLite demo (demoRows), unless users already has rows.
 * Returns whether it seeded.
 */
export async function seedPostgresDemo(
  sql: postgres.Sql,
  options: DemoOptions = {},
): Promise<boolean> {
  const size = demoSize(options);
  return transaction(sql, async (tx) => {
    await tx.unsafe("SELECT pg_advisory_xact_lock($1)", [SEED_LOCK]);
    await tx.unsafe(SCHEMA);
    const [any] = await tx.unsafe("SELECT 1 FROM users LIMIT 1");
    if (any) return false;
    const rows = demoRows(size);
    const insert = async (head: string, width: number, list: unknown[][]) => {
      for (let i = 0; i < list.length; i += BATCH) {
        const chunk = list.slice(i, i + BATCH);
        const values = chunk
          .map((_, r) => `(${Array.from({ length: width }, (_, c) => `$${r * width + c + 1}`)})`)
          .join(", ");
        await tx.unsafe(`${head} VALUES ${values}`, chunk.flat() as never[]);
      }
    };
    await insert(
      `INSERT INTO users (id, "firstName", "lastName", email, "createdAt")`,
      5,
      rows.users,
    );
    await insert(`INSERT INTO orders (id, "userId", total, status, "createdAt")`, 5, rows.orders);
    return true;
  }) as Promise<boolean>;
}
