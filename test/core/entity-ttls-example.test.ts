import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import {
  demoSource,
  ENTITY_TTLS,
  type Entity,
  siteCache,
} from "../../examples/library/entity-ttls.ts";
import { createCache } from "../../src/core/cache/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { fakeClock } from "../helpers/chaos-store.ts";

const run = promisify(execFile);
const EXAMPLE = join(import.meta.dirname, "../../examples/library/entity-ttls.ts");

/** Memory over a second, listable tier named "shared"; a source that counts its loads. */
function setup() {
  const clock = fakeClock();
  const lower = { ...memoryStore({ now: clock.now }), name: "shared" };
  const cache = createCache({ tiers: [memoryStore({ now: clock.now }), lower], now: clock.now });
  const loads = new Map<string, number>();
  const db = demoSource((what) => loads.set(what, (loads.get(what) ?? 0) + 1));
  const site = siteCache(cache, db);
  const loaded = (what: string) => loads.get(what) ?? 0;
  return { clock, lower, site, loaded };
}

type Site = ReturnType<typeof setup>["site"];

/** One read of each kind, and the load it makes on a miss. */
const READS: Record<Entity, [read: (site: Site) => Promise<unknown>, load: string]> = {
  content: [(s) => s.post(1), "post 1"],
  user: [(s) => s.user(1), "user 1"],
  config: [(s) => s.flag("beta"), "flag beta"],
  media: [(s) => s.image("cat.jpg", 640), "image cat.jpg@640"],
  session: [(s) => s.session("tok"), "session tok"],
};

async function readAll(site: Site): Promise<void> {
  for (const [read] of Object.values(READS)) await read(site);
}

describe("per-entity TTL example", () => {
  it("serves each kind of data from the cache until its own TTL passes, then loads it again", async () => {
    for (const [entity, [read, load]] of Object.entries(READS)) {
      const { clock, site, loaded } = setup();
      const ttl = ENTITY_TTLS[entity as Entity];
      await read(site);
      clock.advance(ttl - 1000);
      await read(site);
      expect(loaded(load), `${entity} within its TTL`).toBe(1);
      clock.advance(2000);
      await read(site);
      expect(loaded(load), `${entity} past its TTL`).toBe(2);
    }
  });

  it("a post's edit reloads that post only; a deploy reloads content only", async () => {
    const { site, loaded } = setup();
    await readAll(site);
    await site.post(2);
    await site.postChanged(1);
    await readAll(site);
    await site.post(2);
    expect([loaded("post 1"), loaded("post 2"), loaded("user 1")]).toEqual([2, 1, 1]);

    await site.deploy();
    await readAll(site);
    await site.post(2);
    expect([loaded("post 1"), loaded("post 2")]).toEqual([3, 2]);
    for (const load of ["user 1", "flag beta", "image cat.jpg@640", "session tok"]) {
      expect(loaded(load), load).toBe(1);
    }
  });

  it("a flag change and a sign-out drop their own key at once", async () => {
    const { site, loaded } = setup();
    await readAll(site);
    await site.flagChanged("beta");
    await site.signOut("tok");
    await readAll(site);
    expect([loaded("flag beta"), loaded("session tok"), loaded("user 1")]).toEqual([2, 2, 1]);
  });

  it("keeps sessions in memory only: no session key reaches the shared tier, other kinds do", async () => {
    const { site, lower } = setup();
    await readAll(site);
    const shared: string[] = [];
    for await (const key of lower.keys("ns:")) shared.push(key);
    expect(shared.some((k) => k.startsWith("ns:content:"))).toBe(true);
    expect(shared.some((k) => k.startsWith("ns:media:"))).toBe(true);
    expect(shared.filter((k) => k.startsWith("ns:session"))).toEqual([]);
  });

  it("runs as a script: the demo's reads load what each TTL, write and deploy says", async () => {
    const { stdout } = await run(process.execPath, ["--import", "tsx", EXAMPLE], {
      timeout: 30_000,
    });
    const lines = stdout.trim().split("\n");
    expect(lines).toContainEqual(expect.stringMatching(/^again +loaded: nothing \(all cached\)$/));
    expect(lines).toContainEqual(expect.stringMatching(/^2 minutes later +loaded: user 7$/));
    expect(lines).toContainEqual(expect.stringMatching(/^after a deploy +loaded: post 123$/));
  }, 30_000);
});
