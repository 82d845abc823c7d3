import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Background } from "../../../src/adapter/cloudflare/background.ts";
import { TenantRegistry } from "../../../src/adapter/cloudflare/tenant-registry.ts";
import type { TenantTable } from "../../../src/adapter/cloudflare/tenants-object.ts";
import { keyHashOf, newKey, newTenantKeys, rowOf } from "../../../src/adapter/tenants/model.ts";

// The isolate's lease on the tenant table, on a fake clock: what decides when a rotated key
// stops working in an isolate that does not hear of it. The registry's Durable Object here
// is a stand-in that answers `list` (the real one runs in test/adapter/cloudflare/tenants-in-workerd.test.ts).

const LEASE = 2000;
let table: TenantTable;
let lists = 0;
let failing = false;
/** When set, `list` answers only once this resolves (a slow registry). */
let gate: Promise<void> | undefined;

const namespace = {
  idFromName: (name: string) => name,
  get: () => ({
    async fetch(request: Request) {
      expect(new URL(request.url).pathname).toBe("/list");
      lists++;
      if (failing) throw new Error("registry out of reach");
      const answer = JSON.stringify(table); // the table as it was when the object answered
      await gate;
      return new Response(answer);
    },
  }),
};

async function rotate(name: string): Promise<string> {
  const key = newKey();
  const hash = await keyHashOf(key);
  table = {
    version: table.version + 1,
    rows: table.rows.map((r) => (r.name === name ? { ...r, keyHash: hash } : r)),
  };
  return key;
}

let registry: TenantRegistry;
let background: Background;
let key: string;
const ask = (k: string) => registry.accessOf(k, "x");

beforeEach(async () => {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(1_000_000);
  const made = newTenantKeys({ name: "shop", source: { database: "DB_SHOP" } });
  key = made.key;
  table = { version: 1, rows: [rowOf(made.created, await keyHashOf(key), undefined)] };
  lists = 0;
  failing = false;
  gate = undefined;
  background = new Background();
  background.report = () => {};
  registry = new TenantRegistry(namespace as never, LEASE, background, () => {});
});

afterEach(() => {
  vi.useRealTimers();
});

const advance = (ms: number) => vi.setSystemTime(Date.now() + ms);

describe("an isolate's lease on the tenant table", () => {
  it("a rotated key works until the lease from the copy's fetch has passed, and not after", async () => {
    expect((await ask(key))?.tenant.name).toBe("shop");
    const old = key;
    const fresh = await rotate("shop");
    advance(LEASE / 2 - 1);
    expect(await ask(old)).toBeDefined(); // the copy, trusted: what the operator's API waits out
    advance(LEASE / 2 + 1);
    expect(await ask(old)).toBeUndefined();
    expect((await ask(fresh))?.tenant.name).toBe("shop");
  });

  it("from half the lease a request refetches in the background and answers from its copy", async () => {
    await ask(key);
    expect(lists).toBe(1);
    advance(LEASE / 2);
    const old = key;
    await rotate("shop");
    expect(await ask(old)).toBeDefined();
    await background.idle();
    expect(lists).toBe(2);
    expect(await ask(old)).toBeUndefined(); // the background copy is the new one
  });

  it("the lease runs from when the fetch was sent, not when it was answered", async () => {
    let open!: () => void;
    gate = new Promise((done) => {
      open = done;
    });
    const first = ask(key);
    advance(LEASE - 1); // a slow answer, with the table as it was when the object read it
    open();
    await first;
    gate = undefined;
    const old = key;
    await rotate("shop");
    advance(1);
    expect(await ask(old)).toBeUndefined();
  });

  it("past the lease without the registry: refused with 503 (E_STORE_UNAVAILABLE), and served again once it answers", async () => {
    await ask(key);
    failing = true;
    advance(LEASE / 2);
    expect(await ask(key)).toBeDefined(); // within the lease, a failed background refetch costs nothing
    await background.idle();
    advance(LEASE / 2);
    await expect(ask(key)).rejects.toMatchObject({ code: "E_STORE_UNAVAILABLE" });
    failing = false;
    expect((await ask(key))?.tenant.name).toBe("shop");
  });
});
