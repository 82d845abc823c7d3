import { describe, expect, it } from "vitest";
import { type SqlShape, sqlShape } from "../../../src/database/analysis/shapes.ts";
import { writtenTables } from "../../../src/database/analysis/writes.ts";

/** A search path of `app, public`: `users` and `orders` are app's, `tags` public's. */
const holders = new Map([
  ["users", "app"],
  ["orders", "app"],
  ["tags", "public"],
]);
const resolve = (t: string) => holders.get(t);
const schema = () => ({ primaryKey: "id" });
const tablesOf = (shape: SqlShape) => [...shape.tables].sort();

describe("tables named without their schema, placed by the search path (PostgreSQL)", () => {
  it("a read's tables are those the path reaches; named schemas and CTEs are left as written", () => {
    const shape = sqlShape(
      "with t as (select 1 as id) select u.id from users u join public.orders o on o.user_id = u.id " +
        "where u.id in (select id from tags) and u.id in (select id from t)",
      [],
      "postgres",
      schema,
      resolve,
    );
    expect(tablesOf(shape)).toEqual(["app.users", "orders", "tags"]);
    expect(shape.unresolved).toBeUndefined();
  });

  it("a lookup by key registers its rows on the table the path reaches", () => {
    const shape = sqlShape(
      "select id, name from users where id = $1",
      [7],
      "postgres",
      schema,
      resolve,
    );
    expect(shape.tables).toEqual(["app.users"]);
    expect(shape.lists?.table).toBe("app.users");
  });

  it("a name the path does not place is flagged (the read is not to be cached)", () => {
    const shape = sqlShape("select * from missing", [], "postgres", schema, resolve);
    expect(shape.unresolved).toBe(true);
  });

  it("a write's targets are those the path reaches; one it cannot place makes them unknown", () => {
    expect(writtenTables("update users set name = $1 where id = $2", "postgres", resolve)).toEqual([
      "app.users",
    ]);
    expect(writtenTables("delete from public.users where id = 1", "postgres", resolve)).toEqual([
      "users",
    ]);
    expect(writtenTables("insert into tags (id) values (1)", "postgres", resolve)).toEqual([
      "tags",
    ]);
    expect(writtenTables("update missing set a = 1", "postgres", resolve)).toBeUndefined();
    // Read by its leading words (the grammar does not read USING).
    expect(
      writtenTables(
        "delete from users using orders where users.id = orders.id",
        "postgres",
        resolve,
      ),
    ).toEqual(["app.users"]);
    // Without a path, a bare name is public's, as before.
    expect(writtenTables("update users set name = $1", "postgres")).toEqual(["users"]);
  });
});
