import { describe, expect, it } from "vitest";
import { writtenTables } from "../../src/database/analysis/writes.ts";

describe("writtenTables: the tables a write names", () => {
  it.each([
    ["update users set name = ? where id = ?", "sqlite", ["users"]],
    ["delete from main.users where id = ?", "sqlite", ["users"]],
    ["replace into users values (1, 'x')", "sqlite", ["users"]],
    ["insert into app.users (id) values (?)", "sqlite", ["app.users"]],
    // SQLite's upsert, which the grammar does not read: by its leading words.
    [
      "insert into users (id, name) values (?, ?) on conflict (id) do update set name = excluded.name",
      "sqlite",
      ["users"],
    ],
    ['INSERT OR REPLACE INTO "Users" (id) VALUES (?)', "sqlite", ["Users"]],
    ["update s1.users set name = $1 where id = $2", "postgres", ["s1.users"]],
    ["delete from public.users where id = $1", "postgres", ["users"]],
    ["update a set x = 1; delete from b", "sqlite", ["a", "b"]],
  ] as const)("%s", (sql, dialect, tables) => {
    expect(writtenTables(sql, dialect)).toEqual(tables);
  });

  it.each([
    ["create table t (id integer primary key)", "sqlite"],
    ["drop table users", "postgres"],
    ["with x as (delete from a returning id) update b set y = 1", "postgres"],
    ["select 1", "sqlite"],
    ["this is not sql", "sqlite"],
    ["insert into a (id) values (1) on conflict do nothing; drop table b", "sqlite"],
  ] as const)("unknown, so every table counts: %s", (sql, dialect) => {
    expect(writtenTables(sql, dialect)).toBeUndefined();
  });
});
