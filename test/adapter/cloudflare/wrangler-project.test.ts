import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { until } from "../../helpers/cluster.ts";
import {
  startWranglerDev,
  WRANGLER,
  WRANGLER_ENV,
  type WranglerDev,
} from "../../helpers/wrangler-dev.ts";

// The project as a new user runs it: wrangler.jsonc and the demo Worker, through wrangler
// itself (offline: local D1, KV, Cache API and Durable Object).

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "edgecache-wrangler-"));
let dev: WranglerDev | undefined;

afterAll(async () => {
  await dev?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("the wrangler project", () => {
  it("`npm run deploy -- --dry-run` bundles the demo Worker with its Durable Object class", async () => {
    const out = join(dir, "dist");
    await promisify(execFile)(
      process.execPath,
      ["node_modules/wrangler/bin/wrangler.js", "deploy", "--dry-run", "--outdir", out],
      { cwd: ROOT, env: WRANGLER_ENV },
    );
    const bundle = readFileSync(join(out, "demo-worker.js"), "utf8");
    expect(bundle).toMatch(/export\s*\{[^}]*ChangeLogObject/);
    expect(bundle).toMatch(/export\s*\{[^}]*as default/);
  }, 60_000);

  it("`npm run dev` seeds the demo into local D1 on first start and serves the data API", async () => {
    dev = await startWranglerDev({ persistTo: join(dir, "state") });
    const first = await fetch(`${dev.url}/v1/users?firstName=Lane&limit=2`);
    expect(first.status).toBe(200);
    expect(first.headers.get("cache-status")).toMatch(/fwd=miss; stored/);
    const body = (await first.json()) as { data: { firstName: string }[] };
    expect(body.data.length).toBe(2);
    expect(body.data.every((u) => u.firstName === "Lane")).toBe(true);
    const again = await fetch(`${dev.url}/v1/users?firstName=Lane&limit=2`);
    expect(again.headers.get("cache-status")).toMatch(/^edgecache; hit/);
    const stats = (await (await fetch(`${dev.url}/_edgecache/stats`)).json()) as {
      tiers: { name: string }[];
    };
    expect(stats.tiers.map((t) => t.name)).toEqual(["memory", "cache-api", "kv"]);
  }, 90_000);

  it("`npx wrangler d1 execute DB --local` is seen by the next read after the capture drain (the demo installs capture)", async () => {
    const url = `${dev!.url}/v1/users?firstName=Lane&limit=2`;
    const { data } = (await (await fetch(url)).json()) as { data: { id: string }[] };
    const id = data[0]!.id;
    expect((await fetch(url)).headers.get("cache-status")).toMatch(/^edgecache; hit/);
    const command = `UPDATE users SET lastName = 'Wrangler' WHERE id = '${id}'`;
    const args = ["d1", "execute", "DB", "--local", "--persist-to", join(dir, "state")];
    // As the change capture guide tells a user: the drain may hold the file's write lock
    // the moment wrangler writes (it deletes what it drained), and wrangler, which sets no
    // busy timeout, then says "database is locked" having changed nothing: run it again.
    for (let attempt = 1; ; attempt++) {
      try {
        await promisify(execFile)(process.execPath, [WRANGLER, ...args, "--command", command], {
          cwd: ROOT,
          env: WRANGLER_ENV,
        });
        break;
      } catch (error) {
        const said = `${(error as { stderr?: string }).stderr ?? ""}${(error as Error).message}`;
        if (attempt === 5 || !/database is locked|SQLITE_BUSY/.test(said)) throw error;
      }
    }
    await until(async () => {
      const body = (await (await fetch(url)).json()) as {
        data: { id: string; lastName: string }[];
      };
      return body.data.find((u) => u.id === id)?.lastName === "Wrangler";
    }, 15_000);
  }, 60_000);
});
