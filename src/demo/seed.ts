import type Database from "better-sqlite3";
import type { ViewInfo } from "../core/data/query.ts";
import { badOption } from "../core/errors.ts";

/** The demo's one view: each user with an array of their orders. */
export const demoViews: ViewInfo[] = [
  {
    name: "usersWithOrders",
    base: "users",
    joins: [{ as: "orders", table: "orders", foreignKey: "userId", references: "id" }],
  },
];

/** The insert's time in the seeded rows' format (isoSeconds): a row need not say when. */
const NOW = "(strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))";

/** The demo tables in SQLite (better-sqlite3 and D1 alike). */
export const DEMO_SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  firstName TEXT NOT NULL,
  lastName TEXT NOT NULL,
  email TEXT NOT NULL UNIQUE,
  createdAt DATETIME NOT NULL DEFAULT ${NOW}
);
CREATE TABLE IF NOT EXISTS orders (
  id TEXT PRIMARY KEY,
  userId TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  total REAL NOT NULL,
  status TEXT NOT NULL,
  createdAt DATETIME NOT NULL DEFAULT ${NOW}
);
CREATE INDEX IF NOT EXISTS orders_userId ON orders(userId);
CREATE INDEX IF NOT EXISTS users_firstName ON users(firstName);
CREATE INDEX IF NOT EXISTS users_lastName ON users(lastName);
CREATE INDEX IF NOT EXISTS users_createdAt ON users(createdAt);
`;

// biome-ignore format: a name list reads better packed
const FIRST_NAMES = [
  "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William",
  "Elizabeth", "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
  "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark",
  "Margaret", "Steven", "Sandra", "Paul", "Ashley", "Andrew", "Emily", "Joshua", "Donna",
  "Kevin", "Michelle", "Brian", "Carol", "George", "Amanda", "Lane", "Melissa", "Edward",
  "Deborah", "Ronald", "Stephanie", "Timothy", "Rebecca", "Jason", "Laura", "Jeffrey", "Sharon",
  "Ryan", "Cynthia", "Jacob", "Kathleen", "Gary", "Amy",
];

// biome-ignore format: a name list reads better packed
const LAST_NAMES = [
  "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
  "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore",
  "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark",
  "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres",
  "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell",
  "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker",
  "Cruz", "Edwards", "Collins", "Reyes",
];

/** Statuses with their weights: most orders are done, a few cancelled. */
const STATUSES: [string, number][] = [
  ["pending", 0.15],
  ["paid", 0.25],
  ["shipped", 0.5],
  ["cancelled", 0.1],
];

const START = Date.UTC(2024, 0, 1);
const SPAN_MS = Date.UTC(2026, 0, 1) - START; // two years

/**
 * Creates the demo schema (users, orders) if missing and fills it with deterministic
 * data: the same seed gives the same rows. Does nothing to the data if users already
 * has rows (see isSeeded). 10,000 users and 50,000 orders take well under a second.
 *
 * @example
 * ```ts
 * const db = new Database("demo.db");
 * seedDemo(db, { users: 10_000, orders: 50_000 });
 * const source = sqliteSource({ database: db, views: demoViews });
 * ```
 */
export function seedDemo(db: Database.Database, options: DemoOptions = {}): void {
  const size = demoSize(options);
  db.exec(DEMO_SCHEMA);
  if (isSeeded(db)) return;
  const rows = demoRows(size);
  const insertUser = db.prepare(
    "INSERT INTO users (id, firstName, lastName, email, createdAt) VALUES (?, ?, ?, ?, ?)",
  );
  const insertOrder = db.prepare(
    "INSERT INTO orders (id, userId, total, status, createdAt) VALUES (?, ?, ?, ?, ?)",
  );
  // Checked again under the write lock (BEGIN IMMEDIATE): several nodes started at once on
  // a new file all find it empty above, and only the first may fill it.
  db.transaction(() => {
    if (isSeeded(db)) return;
    for (const user of rows.users) insertUser.run(...user);
    for (const order of rows.orders) insertOrder.run(...order);
  }).immediate();
}

export interface DemoOptions {
  users?: number;
  orders?: number;
  seed?: number;
}

/** Validated demo sizes, defaults filled in. */
export function demoSize(options: DemoOptions): Required<DemoOptions> {
  const { users = 1000, orders = 5000, seed = 1 } = options;
  for (const [name, n] of [
    ["users", users],
    ["orders", orders],
  ] as const) {
    if (!Number.isSafeInteger(n) || n < 0) badOption("demo", name, "a non-negative integer", n);
  }
  if (orders > 0 && users === 0) badOption("demo", "users", "at least 1 when orders > 0", users);
  return { users, orders, seed };
}

/** A user: id, firstName, lastName, email, createdAt. */
export type DemoUser = [string, string, string, string, string];
/** An order: id, userId, total, status, createdAt. */
export type DemoOrder = [string, string, number, string, string];

/**
 * The demo's rows, the same for the same seed on every database: each source's seed
 * inserts exactly these, so the same query gives the same answer on SQLite and PostgreSQL.
 */
export function demoRows(size: Required<DemoOptions>): { users: DemoUser[]; orders: DemoOrder[] } {
  const random = mulberry32(size.seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const users: DemoUser[] = [];
  const created: { id: string; at: number }[] = [];
  for (let i = 1; i <= size.users; i++) {
    // The leading number keeps ids unique; the letters make them look like real keys.
    const id = `${i}-${letter(random)}${letter(random)}${letter(random)}`;
    const first = pick(FIRST_NAMES);
    const last = pick(LAST_NAMES);
    const at = START + Math.floor(random() * SPAN_MS);
    const email = `${first}.${last}.${i}@example.com`.toLowerCase();
    users.push([id, first, last, email, isoSeconds(at)]);
    created.push({ id, at });
  }
  const orders: DemoOrder[] = [];
  for (let i = 1; i <= size.orders; i++) {
    const user = pick(created);
    // An order comes after its user signed up, within the same two years.
    const at = user.at + Math.floor(random() * (START + SPAN_MS - user.at));
    const total = Math.round((5 + random() * 495) * 100) / 100;
    orders.push([
      `o-${String(i).padStart(6, "0")}`,
      user.id,
      total,
      status(random()),
      isoSeconds(at),
    ]);
  }
  return { users, orders };
}

/** True when the demo tables exist and users has at least one row. */
export function isSeeded(db: Database.Database): boolean {
  const tables = db
    .prepare(
      "SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table' AND name IN ('users', 'orders')",
    )
    .get() as { n: number };
  if (tables.n < 2) return false;
  return db.prepare("SELECT 1 FROM users LIMIT 1").get() !== undefined;
}

/** A small, fast 32-bit PRNG; enough for demo data and reproducible across runs. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function letter(random: () => number): string {
  return String.fromCharCode(97 + Math.floor(random() * 26));
}

function status(r: number): string {
  let acc = 0;
  for (const [name, weight] of STATUSES) {
    acc += weight;
    if (r < acc) return name;
  }
  return STATUSES[STATUSES.length - 1]![0];
}

/** `2024-05-17T09:41:07Z`: second precision, sorts correctly as text. */
function isoSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}
