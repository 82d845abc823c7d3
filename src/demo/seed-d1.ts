import { checkOptionNames, type OptionNames } from "../core/errors.ts";
import type { D1DatabaseLike } from "../database/d1/binding.ts";
import { DEMO_SCHEMA, type DemoOptions, demoRows, demoSize } from "./seed.ts";

/** D1 binds at most 100 parameters per statement: rows per multi-row INSERT. */
const D1_MAX_PARAMS = 100;

/** Every option of DemoOptions: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<DemoOptions> = {
  orders: true,
  seed: true,
  users: true,
};
/**
 * Creates the demo tables in a D1 database and fills them with the same rows as the
 * SQLite and PostgreSQL demos, unless `users` already has rows. Everything goes in one
 * `batch`, which D1 runs as one transaction, so a half-seeded database is never seen;
 * `INSERT OR IGNORE` lets two isolates seeding at once both succeed.
 *
 * @example
 * ```ts
 * await seedD1Demo(env.DB);
 * const source = d1Source({ database: env.DB, views: demoViews });
 * ```
 */
export async function seedD1Demo(db: D1DatabaseLike, options: DemoOptions = {}): Promise<boolean> {
  checkOptionNames("demo", options, OPTIONS);
  const size = demoSize(options);
  const ddl = DEMO_SCHEMA.split(";")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => db.prepare(s));
  await db.batch(ddl);
  if ((await db.prepare("SELECT 1 AS one FROM users LIMIT 1").first()) !== null) return false;
  const { users, orders } = demoRows(size);
  const statements = [
    ...inserts(db, "users (id, firstName, lastName, email, createdAt)", users),
    ...inserts(db, "orders (id, userId, total, status, createdAt)", orders),
  ];
  if (statements.length > 0) await db.batch(statements);
  return true;
}

/** Multi-row `INSERT OR IGNORE`s of `rows` within D1's parameter limit. */
function inserts(db: D1DatabaseLike, into: string, rows: readonly (readonly unknown[])[]) {
  const width = rows[0]?.length ?? 1;
  const perStatement = Math.floor(D1_MAX_PARAMS / width);
  const tuple = `(${Array(width).fill("?").join(", ")})`;
  const statements = [];
  for (let i = 0; i < rows.length; i += perStatement) {
    const chunk = rows.slice(i, i + perStatement);
    const sql = `INSERT OR IGNORE INTO ${into} VALUES ${chunk.map(() => tuple).join(", ")}`;
    statements.push(db.prepare(sql).bind(...chunk.flat()));
  }
  return statements;
}
