// Bundled by test/sources/d1-in-workerd.test.ts and run inside workerd: the D1
// source over miniflare's local D1. Each request is one source call, named in the path,
// with its arguments as a JSON array body; the reply is its result as JSON.
import type { Row } from "../../src/core/data/query.ts";
import { resolveResource } from "../../src/core/data/query.ts";
import { DEMO_SCHEMA, type DemoOrder, type DemoUser, demoViews } from "../../src/demo/seed.ts";
import type { D1DatabaseLike } from "../../src/sources/d1.ts";
import { d1Source } from "../../src/sources/d1.ts";

type Env = { DB: D1DatabaseLike & { exec(sql: string): Promise<unknown> } };

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const op = new URL(request.url).pathname.slice(1);
    const args = (await request.json()) as unknown[];
    try {
      if (op === "seed") {
        const [users, orders] = args as [DemoUser[], DemoOrder[]];
        const ddl = DEMO_SCHEMA.split(";").filter((s) => s.trim() !== "");
        await env.DB.batch(ddl.map((sql) => env.DB.prepare(sql)));
        const user = env.DB.prepare(
          "INSERT INTO users (id, firstName, lastName, email, createdAt) VALUES (?, ?, ?, ?, ?)",
        );
        const order = env.DB.prepare(
          "INSERT INTO orders (id, userId, total, status, createdAt) VALUES (?, ?, ?, ?, ?)",
        );
        await env.DB.batch([
          ...users.map((u) => user.bind(...u)),
          ...orders.map((o) => order.bind(...o)),
        ]);
        return Response.json(null);
      }
      if (op === "exec") {
        // Statements of the test's own, in one batch.
        await env.DB.batch((args as string[]).map((sql) => env.DB.prepare(sql)));
        return Response.json(null);
      }
      // A source per request, as a Worker isolate would hold one: discovery runs each time.
      const source = d1Source({ database: env.DB, views: demoViews });
      const schema = await source.schema();
      const resource = (name: unknown) => resolveResource(schema, name as string)!;
      const [a, b, c] = args;
      let result: unknown;
      if (op === "schema") {
        result = {
          tables: [...schema.tables.values()],
          views: [...schema.views.keys()],
        };
      } else if (op === "schema-views") {
        result = { tables: [...schema.tables.values()], views: [...schema.views.values()] };
      } else if (op === "list") result = await source.list(resource(a), b as never);
      else if (op === "get") result = await source.get(resource(a), b as string);
      else if (op === "insert") result = await source.insert(a as string, b as Row);
      else if (op === "update") result = await source.update(a as string, b as string, c as Row);
      else if (op === "replace") result = await source.replace(a as string, b as string, c as Row);
      else if (op === "delete") result = await source.delete(a as string, b as string);
      else if (op === "effects") result = await source.effects(a as string, b as never);
      else throw new Error(`no op ${op}`);
      return Response.json(result ?? null);
    } catch (error) {
      const { code, message } = error as { code?: string; message: string };
      return Response.json({ error: { code, message } }, { status: 500 });
    }
  },
};
