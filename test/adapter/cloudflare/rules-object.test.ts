import { describe, expect, it } from "vitest";
import {
  DURABLE_OBJECT_MAX_KEYS_PER_CALL,
  RulesHost,
  type RulesStorageLike,
} from "../../../src/adapter/cloudflare/rules-object.ts";
import type { Rule } from "../../../src/app/proxy/learn/rules.ts";

// The rules object's side alone, over a storage of the Durable Object's shape kept in a
// Map, which fails on demand (the shared-rules tests in workerd use the real object).

function storage() {
  const data = new Map<string, unknown>();
  const s = {
    data,
    failPuts: false,
    calls: [] as number[],
    async list<T>({ prefix }: { prefix: string }) {
      return new Map([...data].filter(([k]) => k.startsWith(prefix))) as Map<string, T>;
    },
    async put(entries: Record<string, unknown>) {
      const n = Object.keys(entries).length;
      // The platform's limit: past it, a put throws.
      if (n > DURABLE_OBJECT_MAX_KEYS_PER_CALL) throw new Error("too many keys");
      if (s.failPuts) throw new Error("storage down");
      s.calls.push(n);
      for (const [k, v] of Object.entries(entries)) data.set(k, structuredClone(v));
    },
    async delete(keys: string[]) {
      if (keys.length > DURABLE_OBJECT_MAX_KEYS_PER_CALL) throw new Error("too many keys");
      let n = 0;
      for (const k of keys) if (data.delete(k)) n++;
      return n;
    },
  };
  return s satisfies RulesStorageLike;
}

const count = (read: string, held: number, tested: number, lastSeen = 1) => ({
  write: "PATCH /api/users/:id",
  read,
  held,
  tested,
  lastSeen,
});

async function sync(host: RulesHost, changes: object, holds = false) {
  const res = await host.handle("sync", { changes, holds });
  return ((await res.json()) as { rules: Rule[] | null }).rules;
}

describe("the rules object", () => {
  it("adds every isolate's evidence, keeps decisions, and answers from storage after a restart", async () => {
    const s = storage();
    const host = new RulesHost(s);
    await sync(host, { counts: [count("/api/users/$1", 1, 1)], decisions: [] });
    await sync(host, {
      counts: [count("/api/users/$1", 2, 3, 5)],
      decisions: [{ write: "PATCH /api/users/:id", read: "/api/teams/:id", state: "pinned" }],
    });
    // A new instance of the object (evicted, or another machine) reads the same rules.
    const again = await sync(new RulesHost(s), { counts: [], decisions: [] });
    expect(again).toEqual(
      expect.arrayContaining([
        { ...count("/api/users/$1", 3, 4, 5), state: "learned" },
        { ...count("/api/teams/:id", 0, 0, 0), state: "pinned" },
      ]),
    );
    // Forgotten: gone from storage too.
    await sync(host, {
      counts: [],
      decisions: [{ write: "PATCH /api/users/:id", read: "/api/teams/:id", state: "forget" }],
    });
    expect([...s.data.keys()]).toEqual(["rule:PATCH /api/users/:id -> /api/users/$1"]);
  });

  it("answers null to an isolate that holds rules when it holds none, so that isolate seeds it", async () => {
    const host = new RulesHost(storage());
    expect(await sync(host, { counts: [count("/a", 1, 1)], decisions: [] }, true)).toBeNull();
    expect(await sync(host, { counts: [count("/a", 1, 1)], decisions: [] }, false)).toHaveLength(1);
    expect(await sync(host, { counts: [], decisions: [] }, true)).toHaveLength(1);
  });

  it("writes many changed rules in calls the platform takes, and counts nothing twice when storage fails", async () => {
    const s = storage();
    const host = new RulesHost(s);
    const many = Array.from({ length: 300 }, (_, i) => count(`/api/things/${i}`, 1, 1));
    await sync(host, { counts: many, decisions: [] });
    expect(s.data.size).toBe(300);
    expect(Math.max(...s.calls)).toBeLessThanOrEqual(DURABLE_OBJECT_MAX_KEYS_PER_CALL);

    // Not stored: the sync fails (the isolate keeps its changes and sends them again), and
    // the object's memory does not keep what it could not store.
    s.failPuts = true;
    await expect(
      sync(host, { counts: [count("/api/things/0", 1, 1)], decisions: [] }),
    ).rejects.toThrow("storage down");
    s.failPuts = false;
    const rules = await sync(host, { counts: [count("/api/things/0", 1, 1)], decisions: [] });
    expect(rules?.find((r) => r.read === "/api/things/0")).toMatchObject({ held: 2, tested: 2 });
  });

  it("leaves malformed changes out", async () => {
    const host = new RulesHost(storage());
    const rules = await sync(host, {
      counts: [{ write: 1, read: "/x" }, count("/ok", 1, 1), "junk"],
      decisions: [{ write: "PATCH /a", read: "/b", state: "owned" }],
    });
    expect(rules?.map((r) => r.read)).toEqual(["/ok"]);
  });
});
