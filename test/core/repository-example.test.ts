import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { postRepository } from "../../examples/library/repository.ts";
import { createCache } from "../../src/core/cache/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";

function setup() {
  const db = new Database(":memory:");
  db.exec(`CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT, author TEXT, published INTEGER);
    INSERT INTO posts VALUES (1, 'One', 'ann', 1), (2, 'Two', 'bob', 0), (3, 'Three', 'ann', 1);`);
  let queries = 0;
  const prepare = db.prepare.bind(db);
  db.prepare = ((sql: string) => {
    queries++;
    return prepare(sql);
  }) as typeof db.prepare;
  const cache = createCache({ tiers: [memoryStore()] });
  return { db, cache, repo: postRepository(cache, db), queries: () => queries };
}

describe("repository example", () => {
  it("serves findById and findMany from the cache until a write, then the new rows", async () => {
    const { repo, queries } = setup();
    expect(await repo.findById(1)).toEqual({ id: 1, title: "One", author: "ann", published: true });
    expect((await repo.findMany({ author: "ann" })).map((p) => p.id)).toEqual([1, 3]);
    const before = queries();
    await repo.findById(1);
    await repo.findMany({ author: "ann" });
    expect(queries()).toBe(before); // both hits

    await repo.update(3, { author: "bob" });
    expect((await repo.findMany({ author: "ann" })).map((p) => p.id)).toEqual([1]);
    expect((await repo.findById(3))?.author).toBe("bob");

    await repo.delete(1);
    expect(await repo.findById(1)).toBeNull();
    expect(await repo.findMany({ author: "ann" })).toEqual([]);
  });

  it("an update leaves other rows' entries cached", async () => {
    const { repo, queries } = setup();
    await repo.findById(1);
    await repo.findById(2);
    await repo.update(1, { title: "Uno" });
    const before = queries();
    expect((await repo.findById(2))?.title).toBe("Two");
    expect(queries()).toBe(before);
    expect((await repo.findById(1))?.title).toBe("Uno");
  });
});
