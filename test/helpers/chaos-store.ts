import type { Store } from "../../src/core/store.ts";

/**
 * Wraps a store and fails its operations on demand (fault injection), like a Redis that
 * dropped its connection.
 */
export function chaosStore<S extends Store>(inner: S) {
  const failing = new Set<"get" | "set" | "delete">();
  const fail = (op: "get" | "set" | "delete") => {
    if (failing.has(op)) throw new Error(`chaos: ${inner.name} ${op} failed`);
  };
  const store: Store = {
    name: `chaos-${inner.name}`,
    async get(key) {
      fail("get");
      return inner.get(key);
    },
    async set(key, entry, ttl) {
      fail("set");
      return inner.set(key, entry, ttl);
    },
    async delete(keys) {
      fail("delete");
      return inner.delete(keys);
    },
  };
  return {
    store,
    inner,
    fail: (...ops: ("get" | "set" | "delete")[]) => {
      for (const op of ops) failing.add(op);
    },
    heal: () => failing.clear(),
  };
}

/** A clock tests move by hand. */
export function fakeClock(start = Date.UTC(2025, 0, 1)) {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}
