// Bundled by test/sql/d1-in-workerd.test.ts and run inside workerd: edgecache/sql on a D1
// binding, as a Worker would use it.
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";

// biome-ignore lint/suspicious/noExplicitAny: D1's binding type is Cloudflare's, not imported here
type Env = { DB: any };

export default {
  async fetch(_request: Request, env: Env): Promise<Response> {
    await env.DB.exec("create table if not exists users (id integer primary key, name text)");
    await env.DB.exec("create table if not exists posts (id integer primary key, title text)");
    await env.DB.exec("delete from users");
    await env.DB.exec("delete from posts");
    await env.DB.exec("insert into users values (1, 'Ann'), (2, 'Bo')");
    await env.DB.exec("insert into posts values (1, 'hello')");
    const sql = sqlCache({ client: env.DB, tiers: [memoryStore({ maxBytes: 1_000_000 })] });
    const user1 = () => sql.query("select id, name from users where id = ?", [1]);
    const post1 = () => sql.query("select id, title from posts where id = ?", [1]);
    const first = await user1();
    await post1();
    const hit = await user1();
    const written = await sql.execute("update users set name = ? where id = ?", ["Cy", 1]);
    const afterUpdate = await user1();
    await post1(); // another table: still a hit
    const before = sql.getStats();

    // Random reads and writes, each read checked against the binding itself.
    let seed = 7;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const reads: [string, () => unknown[]][] = [
      ["select id, name from users where id = ?", () => [1 + next(4)]],
      ["select id, name from users order by id", () => []],
      ["select id, name from users where name = ? order by id", () => [["Ann", "Bo"][next(2)]]],
      ["select count(*) as n from users", () => []],
    ];
    let mismatches = 0;
    for (let i = 0; i < 200; i++) {
      const op = next(6);
      const id = 1 + next(4);
      const name = ["Ann", "Bo"][next(2)];
      if (op === 0) await sql.execute("update users set name = ? where id = ?", [name, id]);
      else if (op === 1) {
        await sql.execute(
          "insert into users (id, name) values (?, ?) on conflict (id) do update set name = excluded.name",
          [id, name],
        );
      } else if (op === 2) await sql.execute("delete from users where id = ?", [id]);
      else {
        const [text, params] = reads[next(reads.length)]!;
        const p = params();
        const cached = await sql.query(text, p);
        const fresh = (
          await env.DB.prepare(text)
            .bind(...p)
            .all()
        ).results;
        if (JSON.stringify(cached) !== JSON.stringify(fresh)) mismatches++;
      }
    }
    return Response.json({
      first,
      hit,
      written,
      afterUpdate,
      before,
      mismatches,
      stats: sql.getStats(),
    });
  },
};
