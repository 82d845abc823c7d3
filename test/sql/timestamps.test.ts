import fc from "fast-check";
import pg from "pg";
import postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { type CapturedSchema, capturedSchema, following } from "../helpers/following.ts";
import { requirePostgres } from "../helpers/services.ts";

// node-postgres and postgres.js return a timestamptz as a JavaScript Date, which holds
// milliseconds. A column of at most 3 fractional digits (timestamptz(3), (0)) is held
// exactly: pages ordered by it are registered with their window and patched in place after
// writes around the cache, the patched rows' instants made as the Dates the driver gives.
// A timestamptz of 6 digits (the default) may hold microseconds a Date loses: its results
// are never patched, only removed. Either way each read equals a fresh query's.

const service = await requirePostgres();
const url = service.url;

const clients = {
  "node-postgres": () => {
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    return {
      client: pool as unknown,
      fresh: async (q: string, p: unknown[]) => (await pool.query(q, p)).rows,
      end: () => pool.end(),
    };
  },
  "postgres.js": () => {
    const c = postgres(url, { max: 2, onnotice: () => {} });
    return {
      client: c as unknown,
      fresh: async (q: string, p: unknown[]) => [...(await c.unsafe(q, p as never[]))],
      end: () => c.end(),
    };
  },
};

let db: CapturedSchema;

beforeAll(async () => {
  // `ms`: milliseconds at most; `us`: the default 6 digits. `seen` may be null.
  const table = (schema: string, name: string, digits: number) =>
    `create table ${schema}.${name} (id text primary key, made timestamptz(${digits}) not null,
      seen timestamptz(${digits}), n integer not null);
     insert into ${schema}.${name} values ('a', '2026-01-01T00:00:00Z', null, 1),
      ('b', '2026-01-02T00:00:00.5Z', '2026-01-01T00:00:00Z', 2),
      ('c', '2026-01-01T00:00:00.001Z', null, 3), ('d', '2025-12-31T23:59:59.999Z', null, 4);`;
  db = await capturedSchema(url, "ec_ts", (s) => `${table(s, "ms", 3)} ${table(s, "us", 6)}`);
});
afterAll(async () => {
  await db?.drop();
});

const BASE = Date.UTC(2026, 0, 1);
/** An instant near the others (ties and neighbours in one millisecond), with `digits`. */
const instant = (digits: 3 | 6) =>
  fc
    .tuple(fc.integer({ min: -3, max: 3 }), fc.integer({ min: 0, max: 2 }), fc.nat(999))
    .map(([ms, micro, rest]) => {
      const text = new Date(BASE + ms).toISOString();
      return digits === 3 ? text : `${text.slice(0, 23)}${micro === 0 ? "000" : rest}Z`;
    });

for (const [library, connect] of Object.entries(clients)) {
  for (const [table, digits] of [
    ["ms", 3],
    ["us", 6],
  ] as const) {
    it(`${library}: timestamptz(${digits}) pages ordered by it after writes around the cache equal a fresh read, and are ${digits === 3 ? "patched in place" : "never patched (a Date loses microseconds)"}`, async () => {
      const t = `${db.schema}.${table}`;
      await db.admin.unsafe(`delete from ${t} where id not in ('a', 'b', 'c', 'd')`);
      const app = connect();
      const sql = sqlCache({ client: app.client, tiers: [memoryStore()] });
      try {
        await sql.query(`select id, made, seen, n from ${t} where id = $1`, ["a"]);
        await following(sql);
        const reads: Record<string, (o: { id: string; offset: number }) => [string, unknown[]]> = {
          page: (o) => [
            `select id, made, seen, n from ${t} order by made desc, id limit 2 offset $1`,
            [o.offset],
          ],
          pageAsc: () => [`select id, made, seen, n from ${t} order by made, id limit 3`, []],
          bySeen: () => [
            `select id, made, seen, n from ${t} where n > 0 order by seen, id limit 2`,
            [],
          ],
          item: (o) => [`select id, made, seen, n from ${t} where id = $1`, [o.id]],
        };
        const ids = fc.constantFrom("a", "b", "c", "d", "e", "f");
        const at = instant(digits);
        const seen = fc.option(instant(digits), { nil: null });
        const op = fc.oneof(
          fc.record({ kind: fc.constant("upsert" as const), id: ids, at, seen }),
          fc.record({ kind: fc.constant("delete" as const), id: ids }),
          {
            arbitrary: fc.record({
              kind: fc.constant("read" as const),
              read: fc.constantFrom(...Object.keys(reads)),
              id: ids,
              offset: fc.integer({ min: 0, max: 3 }),
            }),
            weight: 4,
          },
        );
        await fc.assert(
          fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 30 }), async (ops) => {
            for (const o of ops) {
              if (o.kind === "read") {
                const [q, p] = reads[o.read]!(o);
                const cached = await sql.query(q, p);
                const fresh = await app.fresh(q, p);
                expect(cached).toEqual(fresh);
                // The instants in the driver's form: Dates, never text.
                for (const row of cached as Record<string, unknown>[]) {
                  expect(row.made).toBeInstanceOf(Date);
                  if (row.seen !== null) expect(row.seen).toBeInstanceOf(Date);
                }
                continue;
              }
              if (o.kind === "upsert") {
                await db.admin.unsafe(
                  `insert into ${t} values ($1, $2, $3, 9) on conflict (id) do update
                    set made = excluded.made, seen = excluded.seen, n = 9`,
                  [o.id, o.at, o.seen],
                );
              } else await db.admin.unsafe(`delete from ${t} where id = $1`, [o.id]);
              expect(await sql.catchUp()).toBe(true);
            }
          }),
          { numRuns: 20 },
        );
        // The rule above holds whatever was patched; that pages were, or not, is what it shows.
        if (digits === 3) expect(sql.getStats().patched).toBeGreaterThan(0);
        else expect(sql.getStats().patched).toBe(0);
      } finally {
        await sql.close();
        await app.end();
      }
    });
  }
}
