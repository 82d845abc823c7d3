import { createHash } from "node:crypto";
import type Database from "better-sqlite3";
import { NODE_TENANTS_LEASE, renewAfterMs } from "../../../core/lease.ts";
import { openSqliteFile } from "../../../sources/sqlite-file.ts";
import {
  type Created,
  exists,
  fromRow,
  hostTaken,
  type KeyedTenant,
  type KeyScope,
  keyedOf,
  newKey,
  newTenantKeys,
  noTenant,
  type Row,
  rowOf,
  type Tenant,
} from "../../tenants/model.ts";

/** The state database beside the cache when none is named. */
export const DEFAULT_STATE_FILE = "edgecache.tenants.db";

/**
 * Keys of the state under this prefix (the URL's `?prefix=` names another); the nodes' own
 * keys under `<prefix>node:`.
 */
export const DEFAULT_REDIS_STATE_PREFIX = "edgecache:tenants:";

const C = "tenants";

/**
 * Keys are stored as their SHA-256 (base64url): a stolen state file gives no key. The same
 * hash as `keyHashOf`, synchronous for the dispatcher's per-request lookup.
 */
export function keyHash(key: string): string {
  return createHash("sha256").update(key).digest("base64url");
}

/** How many running nodes follow the state, and how many had not applied a change in time. */
export interface Settled {
  nodes: number;
  behind: number;
}

/**
 * Where tenants live: a SQLite file (one machine), or PostgreSQL or Redis (nodes that share
 * them). The CLI writes it; a server follows it (`follow`).
 */
export interface TenantState {
  /** Its path, or its URL without the password. */
  readonly where: string;
  create(tenant: Omit<Tenant, "createdAt">): Promise<Created>;
  list(): Promise<Tenant[]>;
  /**
   * A new key of `scope` for `name` (a read key is added if it had none); the old one is
   * refused by every node once `settle` resolves.
   */
  rotateKey(name: string, scope?: KeyScope): Promise<string>;
  delete(name: string): Promise<void>;
  /**
   * Waits until every running node has applied this client's last change (the SQLite file
   * needs no wait: a node checks it on each request). A node that cannot hear the state
   * stops serving on its own within the lease, so one that does not answer is no risk.
   */
  settle(): Promise<Settled | undefined>;
  /** For a server: the tenants as they change. */
  follow(onChange: () => void): Promise<TenantFeed>;
  close(): Promise<void>;
}

/** What a server reads on every request; synchronous. */
export interface TenantFeed {
  /** The tenants and their key hashes if they changed since the last call, else undefined. */
  changes(): KeyedTenant[] | undefined;
  /**
   * Whether this node still hears the state (PostgreSQL, Redis): a node that lost it
   * cannot know of a rotated key, so it refuses requests until it hears it again.
   */
  current(): boolean;
  close(): Promise<void>;
}

/**
 * How long a node trusts what it last heard from a shared state database; it checks every
 * `HEARTBEAT_MS`, and the CLI counts a node as running when it was heard within
 * `NODE_SEEN_MS`. The lease is shorter than that window, so a node the CLI stops waiting
 * for has already stopped serving.
 */
export const STATE_LEASE_MS = NODE_TENANTS_LEASE.ms;
export const HEARTBEAT_MS = renewAfterMs(NODE_TENANTS_LEASE);
export const NODE_SEEN_MS = 6000;

/** Opens the state a flag names: a `postgres://` or `redis://` URL, else a SQLite file. */
export async function openTenantState(where: string): Promise<TenantState> {
  if (/^postgres(ql)?:\/\//i.test(where)) {
    const { postgresTenantState } = await import("./state-postgres.ts");
    return postgresTenantState(where);
  }
  if (/^rediss?:\/\//i.test(where)) {
    const { redisTenantState } = await import("./state-redis.ts");
    return redisTenantState(where);
  }
  return new SqliteTenantState(where);
}

/** Checks a new tenant and makes its keys; every state stores what this returns. */
export function newTenant(tenant: Omit<Tenant, "createdAt">): {
  created: Tenant;
  row: Row;
  key: string;
  readKey?: string;
} {
  const { created, key, readKey } = newTenantKeys(tenant);
  const row = rowOf(created, keyHash(key), readKey === undefined ? undefined : keyHash(readKey));
  return { created, row, key, ...(readKey && { readKey }) };
}

/**
 * The tenants of a node in a small SQLite file that the CLI writes and a running server
 * reads: the feed's `changes()` tells the server, cheaply enough for every request, that
 * another connection (the CLI) has committed since it last looked.
 */
class SqliteTenantState implements TenantState {
  readonly #db: Database.Database;
  readonly where: string;

  constructor(path: string) {
    this.where = path;
    this.#db = openSqliteFile(path, {
      component: C,
      what: "the state database",
      hint: "pass --state a SQLite file of edgecache's tenants (or a postgres:// or redis:// URL)",
    });
    this.#db.pragma("busy_timeout = 5000");
    this.#db.exec(`CREATE TABLE IF NOT EXISTS tenants (
      name TEXT PRIMARY KEY,
      keyHash TEXT NOT NULL UNIQUE,
      readKeyHash TEXT UNIQUE,
      source TEXT NOT NULL,
      ttl INTEGER,
      memoryBytes INTEGER,
      publicHost TEXT UNIQUE,
      createdAt TEXT NOT NULL
    )`);
  }

  async create(tenant: Omit<Tenant, "createdAt">): Promise<Created> {
    const { created, row, key, readKey } = newTenant(tenant);
    try {
      this.#db
        .prepare(
          `INSERT INTO tenants (name, keyHash, readKeyHash, source, ttl, memoryBytes, publicHost, createdAt)
           VALUES (@name, @keyHash, @readKeyHash, @source, @ttl, @memoryBytes, @publicHost, @createdAt)`,
        )
        .run(row);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "SQLITE_CONSTRAINT_PRIMARYKEY") throw exists(tenant.name);
      if (code === "SQLITE_CONSTRAINT_UNIQUE") throw hostTaken(row.publicHost);
      throw err;
    }
    return { tenant: created, key, ...(readKey && { readKey }) };
  }

  async list(): Promise<Tenant[]> {
    return this.#rows().map(fromRow);
  }

  async rotateKey(name: string, scope: KeyScope = "write"): Promise<string> {
    const key = newKey();
    const column = scope === "write" ? "keyHash" : "readKeyHash";
    const { changes } = this.#db
      .prepare(`UPDATE tenants SET ${column} = ? WHERE name = ?`)
      .run(keyHash(key), name);
    if (changes === 0) throw noTenant(name);
    return key;
  }

  async delete(name: string): Promise<void> {
    const { changes } = this.#db.prepare("DELETE FROM tenants WHERE name = ?").run(name);
    if (changes === 0) throw noTenant(name);
  }

  async settle(): Promise<undefined> {
    return undefined;
  }

  async follow(): Promise<TenantFeed> {
    let version = -1;
    return {
      // SQLite's data_version: a read of the connection's own state, no query; it moves
      // when another connection committed.
      changes: () => {
        const now = this.#db.pragma("data_version", { simple: true }) as number;
        if (now === version) return undefined;
        version = now;
        return keyedOf(this.#rows());
      },
      current: () => true,
      close: async () => {},
    };
  }

  #rows(): Row[] {
    return this.#db.prepare("SELECT * FROM tenants ORDER BY name").all() as Row[];
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
