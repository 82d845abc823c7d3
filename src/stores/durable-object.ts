import { fnv1a } from "../core/digest.ts";
import { badOption, checkOptionNames, type OptionNames } from "../core/errors.ts";
import type { BatchStore, ListableStore, StoreWrite } from "../core/store.ts";
import { guarded, isLivePacked, packFor, unavailable, unpackFor } from "./edge-entry.ts";
import { decodeFrames, encodeFrames, frameText } from "./frames.ts";

/**
 * The part of a Durable Object namespace binding this store uses (`env.CACHE_TIER`), declared
 * here so no Cloudflare type is needed.
 */
export interface TierNamespaceLike {
  idFromName(name: string): unknown;
  get(id: never): { fetch(request: Request): Promise<Response> };
}

export interface DurableObjectStoreOptions {
  /** The namespace bound to `CacheTierObject` (`env.CACHE_TIER` in a Worker). */
  namespace: TierNamespaceLike;
  /**
   * Objects the keys are spread over, by a hash of the key: each key lives in exactly one,
   * so each is strongly consistent on its own. More shards spread the load of hot keys over
   * more objects (one object serves about a thousand requests a second). Default 1; the same
   * number in every Worker and in `cacheTierObject` (see there), since it decides where a key lives.
   */
  shards?: number;
  /** Object names are `<prefix><shard>`. Default `"tier:"`. */
  prefix?: string;
  /** Tier name in stats and logs. Default `"durable-object"`. */
  name?: string;
  /** Clock in epoch milliseconds, for fake clocks in tests. Default `Date.now`. */
  now?: () => number;
}

/**
 * A Durable Object's SQLite row holds at most 2 MB: a key and its packed entry beyond this are
 * not stored (`set` removes the old one and fails with E_STORE_UNAVAILABLE, as KV's limit does).
 */
export const DURABLE_OBJECT_MAX_VALUE_BYTES = 2 * 1000 * 1000 - 1024;
/** At most this many shards: more objects than this only cost round trips to list them. */
export const DURABLE_OBJECT_MAX_SHARDS = 256;
/** The object that runs the precompute (see cacheTierObject), beside the shards. */
export const PRECOMPUTE_OBJECT = "precompute";

const COMPONENT = "durable-object";

/** The options DurableObjectStoreOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<DurableObjectStoreOptions> = {
  name: true,
  namespace: true,
  now: true,
  prefix: true,
  shards: true,
};
const DEFAULT_PREFIX = "tier:";
const utf8 = new TextEncoder();

/** FNV-1a over the key's UTF-16 units: cheap, stable across isolates, spreads similar keys. */
export function shardOf(key: string, shards: number): number {
  return fnv1a(key) % shards;
}

/**
 * A tier in Durable Objects, between an isolate's memory and the Cache API or KV: one
 * strongly consistent copy per key, in the object of the key's shard. A set is visible to
 * every isolate's next read, wherever it runs, and a delete to every read after it resolved,
 * where KV takes up to about 60 s and the Cache API is per data centre. Each read costs a round
 * trip to the object's location (it does not move to the reader), so the tier is for data every
 * isolate needs fresh at once: an aggregate precomputed by the object's alarm (see
 * `cacheTierObject`), a value many isolates load.
 *
 * Shared (`Store.shared`): its entries carry the log position their load began at and every
 * read is checked against the change log, as KV's and Redis's are; the node that wrote a
 * change deletes what it made stale here. So a delete that has not landed yet (or failed) costs
 * a refused read, never a stale one.
 *
 * @example
 * ```ts
 * const tiers = [memoryStore(), durableObjectStore({ namespace: env.CACHE_TIER, shards: 4 })];
 * const cache = createCache({ tiers, log: durableChangeLog({ namespace: env.CHANGE_LOG }) });
 * ```
 */
export function durableObjectStore(
  options: DurableObjectStoreOptions,
): ListableStore & BatchStore & { readonly shards: number } {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  checkOptionNames(COMPONENT, options, OPTIONS);
  const {
    namespace,
    shards = 1,
    prefix = DEFAULT_PREFIX,
    name = COMPONENT,
    now = Date.now,
  } = options;
  if (typeof namespace?.idFromName !== "function") {
    badOption(COMPONENT, "namespace", "a Durable Object namespace binding", namespace);
  }
  if (!Number.isInteger(shards) || shards < 1 || shards > DURABLE_OBJECT_MAX_SHARDS) {
    badOption(COMPONENT, "shards", `an integer from 1 to ${DURABLE_OBJECT_MAX_SHARDS}`, shards);
  }
  if (typeof prefix !== "string") badOption(COMPONENT, "prefix", "a string", prefix);
  if (typeof name !== "string" || name === "") badOption(COMPONENT, "name", "a tier name", name);
  if (typeof now !== "function") badOption(COMPONENT, "now", "a function", now);

  /** One call to shard `shard`: frames there, the answer's bytes back. */
  const call = (shard: number, op: string, frames: readonly (Uint8Array | string)[]) =>
    guarded(COMPONENT, `${op} failed`, async () => {
      // A stub is an I/O object of the request that made it: one per call.
      const stub = namespace.get(namespace.idFromName(`${prefix}${shard}`) as never);
      const res = await stub.fetch(
        new Request(`https://cache-tier/${op}`, {
          method: "POST",
          headers: { "x-now": String(now()) },
          body: encodeFrames(frames),
        }),
      );
      if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
      return new Uint8Array(await res.arrayBuffer());
    });

  /** `keys` grouped by shard, with each key's place in `keys`. */
  const byShard = (keys: readonly string[]) => {
    const groups = new Map<number, number[]>();
    keys.forEach((key, i) => {
      const s = shardOf(key, shards);
      const group = groups.get(s);
      if (group) group.push(i);
      else groups.set(s, [i]);
    });
    return groups;
  };

  /** The packed values of `keys` that are live at `at`, in order (one round trip per shard). */
  async function readLive(keys: readonly string[], at: number) {
    const out: (Uint8Array | undefined)[] = new Array(keys.length).fill(undefined);
    await Promise.all(
      [...byShard(keys)].map(async ([shard, places]) => {
        const values = decodeFrames(
          await call(
            shard,
            "get",
            places.map((i) => keys[i]!),
          ),
        );
        if (values.length !== places.length) {
          throw unavailable(COMPONENT, `get: ${values.length} answers to ${places.length} keys`);
        }
        places.forEach((i, j) => {
          const bytes = values[j]!;
          const key = keys[i]!;
          if (bytes.byteLength > 0 && isLivePacked(COMPONENT, bytes, key, key, at)) out[i] = bytes;
        });
      }),
    );
    return out;
  }

  async function writeMany(writes: readonly StoreWrite[]) {
    const at = now();
    const frames = new Map<number, (Uint8Array | string)[]>();
    const gone: string[] = [];
    let tooLarge: string | undefined;
    for (const { key, entry, ttlMs } of writes) {
      // A write replaces whatever was there, so an already expired one removes it.
      if (!(ttlMs > 0)) {
        gone.push(key);
        continue;
      }
      const { bytes, expiresAt } = packFor(
        COMPONENT,
        key,
        { name: key, digested: false },
        entry,
        ttlMs,
        at,
      );
      if (bytes.byteLength + utf8.encode(key).byteLength > DURABLE_OBJECT_MAX_VALUE_BYTES) {
        gone.push(key);
        tooLarge = `entry of ${bytes.byteLength} bytes under ${JSON.stringify(key)} exceeds a Durable Object row's ${DURABLE_OBJECT_MAX_VALUE_BYTES} bytes; not stored`;
        continue;
      }
      const shard = shardOf(key, shards);
      const list = frames.get(shard) ?? [];
      list.push(key, expiresAt === null ? "" : String(expiresAt), bytes);
      frames.set(shard, list);
    }
    await Promise.all([
      ...[...frames].map(([shard, list]) => call(shard, "set", list)),
      gone.length > 0 ? removeMany(gone) : undefined,
    ]);
    if (tooLarge) throw unavailable(COMPONENT, tooLarge);
  }

  async function removeMany(keys: readonly string[]): Promise<number> {
    const counts = await Promise.all(
      [...byShard(keys)].map(async ([shard, places]) => {
        const [count] = decodeFrames(
          await call(
            shard,
            "delete",
            places.map((i) => keys[i]!),
          ),
        );
        return Number(frameText(count ?? new Uint8Array()));
      }),
    );
    return counts.reduce((a, b) => a + b, 0);
  }

  return {
    name,
    shared: true,
    shards,

    async get(key) {
      const [bytes] = await readLive([key], now());
      return bytes === undefined ? undefined : unpackFor(COMPONENT, key, bytes);
    },

    async getMany(keys) {
      const found = await readLive(keys, now());
      return found.map((bytes, i) =>
        bytes === undefined ? undefined : unpackFor(COMPONENT, keys[i]!, bytes),
      );
    },

    set: (key, entry, ttlMs) => writeMany([{ key, entry, ttlMs }]),
    setMany: writeMany,
    delete: (keys) => (keys.length === 0 ? Promise.resolve(0) : removeMany(keys)),

    async *keys(keyPrefix) {
      for (let shard = 0; shard < shards; shard++) {
        for (const key of decodeFrames(await call(shard, "keys", [keyPrefix]))) {
          yield frameText(key);
        }
      }
    },
  };
}
