import type { DurableObjectStateLike } from "../../src/durable/rpc.ts";

/** A Durable Object's state in memory; `ready` settles when the constructor's block does. */
export function memoryState(): DurableObjectStateLike & { ready: Promise<unknown> } {
  const stored = new Map<string, unknown>();
  const state = {
    ready: Promise.resolve() as Promise<unknown>,
    storage: {
      get: async <T>(key: string) => stored.get(key) as T | undefined,
      put: async (entries) => {
        for (const [k, v] of Object.entries(entries)) stored.set(k, structuredClone(v));
      },
      delete: async (keys) => keys.filter((k) => stored.delete(k)).length,
    },
    blockConcurrencyWhile<T>(callback: () => Promise<T>): Promise<T> {
      const done = callback();
      state.ready = done;
      return done;
    },
  } satisfies DurableObjectStateLike & { ready: Promise<unknown> };
  return state;
}
