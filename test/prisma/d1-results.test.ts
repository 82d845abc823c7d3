import { PrismaD1 } from "@prisma/adapter-d1";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { asStored } from "../../src/database/analysis/forms.ts";
import { d1Result } from "../../src/prisma/d1-results.ts";

// What edgecache/prisma takes @prisma/adapter-d1 to do with D1's values, checked against the
// adapter itself: its D1 binding here answers `raw()` with the stored rows given (the
// binding's part; D1 inside workerd is test/prisma/d1-in-workerd.test.ts's).

/** The adapter's result for a D1 result of these stored rows. */
async function adapterResult(columnNames: string[], rows: unknown[][]) {
  const binding = {
    prepare: () => ({
      bind: () => ({
        raw: async () => [columnNames, ...rows.map((r) => [...r])],
      }),
    }),
  };
  const adapter = await new PrismaD1(binding as never).connect();
  return adapter.queryRaw({ sql: "SELECT 1", args: [], argTypes: [] });
}

const value = fc.oneof(
  fc.constant(null),
  fc.integer({ min: -1000, max: 1000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom("2024-05-17T09:41:07Z", "2024-05-17 09:41:07", "2024-05-17T09:41:07.123+00:00"),
  fc.constantFrom("5", "1.5", "1e+21", "5.0", "abc", ""),
  fc.string({ maxLength: 4 }),
);

describe("Prisma's D1 adapter: a patched result is typed and converted as the adapter would give it", () => {
  it("property: d1Result of stored rows equals the adapter's result of them (types, numbers as text)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc
          .integer({ min: 1, max: 4 })
          .chain((width) =>
            fc.array(fc.array(value, { minLength: width, maxLength: width }), { maxLength: 6 }),
          ),
        async (rows) => {
          const width = rows[0]?.length ?? 2;
          const names = Array.from({ length: width }, (_, i) => `c${i}`);
          const expected = await adapterResult(names, rows);
          const kept = { columnNames: names, columnTypes: [], rows: [] };
          expect(d1Result(kept, rows)).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a column holding text gives its numbers as String(number); one without, as numbers", async () => {
    const mixed = await adapterResult(["at"], [[5], ["b"], [1.5]]);
    expect(mixed.rows).toEqual([["5"], ["b"], ["1.5"]]);
    const numbers = await adapterResult(["at"], [[5], ["2024-05-17T09:41:07Z"], [1.5]]);
    expect(numbers.rows).toEqual([[5], ["2024-05-17T09:41:07Z"], [1.5]]);
  });
});

describe("a value of a column whose numbers come as String(number) is as stored only where it cannot be one (asStored, 'decimal')", () => {
  it("numbers are as stored; text of a number's form may be one; other text is the stored text", () => {
    expect(asStored(5, "decimal")).toBe(5);
    for (const t of ["5", "-3", "1.5", "1e+21", "1.5e-7", "NaN", "Infinity", "-Infinity"]) {
      expect(asStored(t, "decimal")).toBeUndefined();
    }
    for (const t of ["5.0", " 5", "05", "abc", "", "2024-05-17T09:41:07Z", "1e21"]) {
      expect(asStored(t, "decimal")).toBe(t);
    }
    // Prisma's better-sqlite3 adapter gives every number as ISO text: none is as stored.
    expect(asStored(5, "iso")).toBeUndefined();
    expect(asStored("2024-05-17T09:41:07.123Z", "iso")).toBeUndefined();
    expect(asStored("5", "iso")).toBe("5");
  });
});
