import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundle, COMPATIBILITY_DATE } from "../helpers/workerd.ts";

// edgecache/drizzle over isolate memory and Workers KV, inside workerd: Workers that share
// one D1 database and one KV namespace, so each is an isolate with its own memory.

let mf: Miniflare;

beforeAll(async () => {
  const script = await bundle(new URL("./kv-entry.ts", import.meta.url));
  const worker = (name: string, log: boolean) => ({
    name,
    modules: true,
    script,
    compatibilityDate: COMPATIBILITY_DATE,
    d1Databases: { DB: "shared-d1" },
    kvNamespaces: { CACHE: log ? "kv-logged" : "kv-alone" },
    ...(log && {
      durableObjects: { LOG: { className: "ChangeLogObject", scriptName: "logged-a" } },
    }),
  });
  mf = new Miniflare({
    workers: [
      worker("logged-a", true),
      worker("logged-b", true),
      worker("alone-a", false),
      worker("alone-b", false),
    ],
  });
  await mf.ready;
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
});

/** A Worker's own fetch: each is its own isolate. */
const fetcher = async (worker: string) =>
  (await mf.getWorker(worker)) as unknown as { fetch: typeof fetch };

async function call(worker: string, path: string) {
  const res = await (await fetcher(worker)).fetch(`http://localhost${path}`);
  if (res.status !== 200) throw new Error(`${worker} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as {
    rows: { id: number; name: string; at: string }[];
    isDate: boolean;
    drizzle: { hits: number; misses: number; faults: number; tierErrors: number };
    tiers: Record<string, { hits: number; errors: number }>;
  };
}

describe("drizzleCache({ tiers: [memoryStore(), kvStore(...)] }) inside workerd", () => {
  it("one isolate: a miss is stored in memory and KV, a hit returns Dates, an update invalidates", async () => {
    await call("alone-a", "/seed?id=1&name=Ann");
    const first = await call("alone-a", "/read?id=1");
    expect(first.rows.map((r) => r.name)).toEqual(["Ann"]);
    expect(first.drizzle).toMatchObject({ misses: 1, hits: 0 });
    const keys = (await (
      await (await fetcher("alone-a")).fetch("http://localhost/kv")
    ).json()) as string[];
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(/^edgecache:drizzle:q:/);
    const hit = await call("alone-a", "/read?id=1");
    expect(hit.drizzle).toMatchObject({ misses: 1, hits: 1 });
    expect(hit.isDate).toBe(true);
    await call("alone-a", "/update?id=1&name=Bea");
    const after = await call("alone-a", "/read?id=1");
    expect(after.rows.map((r) => r.name)).toEqual(["Bea"]);
    expect(after.drizzle).toMatchObject({ misses: 2, faults: 0, tierErrors: 0 });
  }, 30_000);

  it("without a shared log, another isolate never takes KV's copy on trust", async () => {
    // alone-a cached user 1 as Bea in KV; alone-b's writes and log are its own.
    await call("alone-b", "/update?id=1&name=Cy");
    const b = await call("alone-b", "/read?id=1");
    expect(b.rows.map((r) => r.name)).toEqual(["Cy"]);
    expect(b.tiers.kv!.hits).toBe(0); // KV's entry belongs to another log: refused
  }, 30_000);

  it("with a Durable Object log: another isolate hits KV, and sees a write made in the first", async () => {
    await call("logged-a", "/seed?id=2&name=Dee");
    const a = await call("logged-a", "/read?id=2");
    expect(a.drizzle.misses).toBe(1);
    const b = await call("logged-b", "/read?id=2");
    expect(b.rows.map((r) => r.name)).toEqual(["Dee"]);
    expect(b.tiers.kv!.hits).toBe(1); // loaded by logged-a, checked against the log
    expect(b.drizzle).toMatchObject({ hits: 1, misses: 0 });
    expect(b.isDate).toBe(true);
    await call("logged-b", "/read?id=2"); // now from logged-b's memory
    await call("logged-a", "/update?id=2&name=Eve");
    const fresh = await call("logged-b", "/read?id=2");
    expect(fresh.rows.map((r) => r.name)).toEqual(["Eve"]);
    expect(fresh.drizzle).toMatchObject({ misses: 1, faults: 0, tierErrors: 0 });
  }, 30_000);
});
