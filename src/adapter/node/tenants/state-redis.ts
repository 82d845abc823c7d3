import type { RedisClient } from "../../../redis/connect.ts";
import { connectRedis } from "../../../redis/connect.ts";
import {
  type Created,
  exists,
  fromRow,
  hostTaken,
  type KeyScope,
  newKey,
  noTenant,
  type Row,
  type Tenant,
} from "../../tenants/model.ts";
import {
  DEFAULT_REDIS_STATE_PREFIX,
  keyHash,
  NODE_SEEN_MS,
  newTenant,
  type TenantState,
} from "./state-contract.ts";
import { type SharedState, settleAt, sharedFeed } from "./state-shared.ts";

/** Commands of the CLI and the feed may wait this long (the default 500 ms is for tiers). */
const COMMAND_TIMEOUT_MS = 5000;

// KEYS: the tenants hash (name -> row JSON), the hosts hash (public host -> name), the
// version. ARGV[1]: the channel. Each script changes, bumps the version and publishes it,
// atomically; it answers the version, or a negative code.
const BUMP = `
local v = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[1], v)
return v`;
const CREATE = `
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return -1 end
if ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[4]) == 1 then return -2 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], ARGV[4], ARGV[2]) end
${BUMP}`;
const ROTATE = `
local row = redis.call('HGET', KEYS[1], ARGV[2])
if not row then return -1 end
local t = cjson.decode(row)
t[ARGV[3]] = ARGV[4]
redis.call('HSET', KEYS[1], ARGV[2], cjson.encode(t))
${BUMP}`;
const DELETE = `
local row = redis.call('HGET', KEYS[1], ARGV[2])
if not row then return -1 end
local t = cjson.decode(row)
if type(t.publicHost) == 'string' then redis.call('HDEL', KEYS[2], t.publicHost) end
redis.call('HDEL', KEYS[1], ARGV[2])
${BUMP}`;
// The version and every row, read at one point in time.
const LOAD = `return { redis.call('GET', KEYS[3]) or '0', redis.call('HVALS', KEYS[1]) }`;

/**
 * Tenants in Redis (`edgecache serve --state redis://...`), for nodes that share them: a
 * hash of rows under `edgecache:tenants:`, a version that each change bumps and publishes
 * in the same script, and one key per running node (expiring after `NODE_SEEN_MS`) with the
 * version it applied.
 */
export async function redisTenantState(url: string): Promise<TenantState> {
  const parsed = new URL(url);
  const prefix = parsed.searchParams.get("prefix") ?? DEFAULT_REDIS_STATE_PREFIX;
  parsed.searchParams.delete("prefix");
  const { client } = await connectRedis("tenants", {
    url: parsed.href,
    commandTimeout: COMMAND_TIMEOUT_MS,
  });
  const where = new URL(url);
  if (where.password) where.password = "***";
  return new RedisTenantState(client, where.href, prefix);
}

class RedisTenantState implements TenantState, SharedState {
  readonly #client: RedisClient;
  readonly where: string;
  readonly #prefix: string;
  readonly #keys: string[];
  readonly #channel: string;
  #wrote: number | undefined;

  constructor(client: RedisClient, where: string, prefix: string) {
    this.#client = client;
    this.where = where;
    this.#prefix = prefix;
    this.#keys = [`${prefix}all`, `${prefix}hosts`, `${prefix}version`];
    this.#channel = `${prefix}changes`;
  }

  async #run(script: string, ...args: string[]): Promise<number> {
    const v = Number(await this.#client.eval(script, 3, ...this.#keys, this.#channel, ...args));
    if (v > 0) this.#wrote = v;
    return v;
  }

  async create(tenant: Omit<Tenant, "createdAt">): Promise<Created> {
    const { created, row, key, readKey } = newTenant(tenant);
    const v = await this.#run(CREATE, row.name, JSON.stringify(row), row.publicHost ?? "");
    if (v === -1) throw exists(row.name);
    if (v === -2) throw hostTaken(row.publicHost);
    return { tenant: created, key, ...(readKey && { readKey }) };
  }

  async list(): Promise<Tenant[]> {
    return (await this.load()).rows.map(fromRow);
  }

  async rotateKey(name: string, scope: KeyScope = "write"): Promise<string> {
    const key = newKey();
    const field = scope === "write" ? "keyHash" : "readKeyHash";
    if ((await this.#run(ROTATE, name, field, keyHash(key))) < 0) throw noTenant(name);
    return key;
  }

  async delete(name: string): Promise<void> {
    if ((await this.#run(DELETE, name)) < 0) throw noTenant(name);
  }

  async settle() {
    return this.#wrote === undefined ? undefined : settleAt(this, this.#wrote);
  }

  follow(onChange: () => void) {
    return sharedFeed(this, onChange, console);
  }

  async load(): Promise<{ version: number; rows: Row[] }> {
    const [version, rows] = (await this.#client.eval(LOAD, 3, ...this.#keys)) as [string, string[]];
    const parsed = rows.map((r) => rowOf(JSON.parse(r)));
    parsed.sort((a, b) => (a.name < b.name ? -1 : 1));
    return { version: Number(version), rows: parsed };
  }

  async beat(node: string, applied: number): Promise<number> {
    const replies = await this.#client
      .multi()
      .set(`${this.#prefix}node:${node}`, String(applied), "PX", NODE_SEEN_MS)
      .get(this.#keys[2]!)
      .exec();
    const [error, version] = replies?.[1] ?? [new Error("the transaction was aborted")];
    if (error) throw error;
    return Number(version ?? 0);
  }

  async nodes(): Promise<number[]> {
    const names: string[] = [];
    let cursor = "0";
    do {
      const [next, page] = await this.#client.scan(
        cursor,
        "MATCH",
        `${this.#prefix}node:*`,
        "COUNT",
        1000,
      );
      names.push(...page);
      cursor = next;
    } while (cursor !== "0");
    if (names.length === 0) return [];
    const versions = await this.#client.mget(...names);
    return versions.flatMap((v) => (v === null ? [] : [Number(v)]));
  }

  async subscribe(wake: () => void) {
    // A connection of its own, which may queue its SUBSCRIBE until it is connected; ioredis
    // subscribes again after a reconnect, and `ready` then reloads what was sent meanwhile.
    const subscriber = (this.#client as import("ioredis").Redis).duplicate({
      enableOfflineQueue: true,
    });
    subscriber.on("error", () => {}); // the heartbeat reports a lost state
    subscriber.on("message", wake);
    subscriber.on("ready", wake);
    await subscriber.subscribe(this.#channel);
    return {
      close: async () => {
        subscriber.disconnect();
      },
    };
  }

  async leave(node: string): Promise<void> {
    await this.#client.del(`${this.#prefix}node:${node}`);
  }

  async close(): Promise<void> {
    this.#client.disconnect();
  }
}

/** A row as stored: cjson writes absent fields back as absent, so they are made null. */
function rowOf(r: Partial<Row>): Row {
  return {
    name: r.name!,
    keyHash: r.keyHash!,
    readKeyHash: r.readKeyHash ?? null,
    source: r.source!,
    ttl: r.ttl ?? null,
    memoryBytes: r.memoryBytes ?? null,
    publicHost: r.publicHost ?? null,
    createdAt: r.createdAt!,
  };
}
