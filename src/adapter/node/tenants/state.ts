import { createHash, randomBytes } from "node:crypto";
import Database from "better-sqlite3";
import { badOption, EdgecacheError } from "../../../core/errors.ts";

/** The state database beside the cache when none is named. */
export const DEFAULT_STATE_FILE = "edgecache.tenants.db";

/** What a tenant is served from: its own SQLite database, or its own origin. */
export type TenantSource = { database: string } | { origin: string };

export interface Tenant {
  name: string;
  source: TenantSource;
  /** Default seconds a response stays cached (the node's default when absent). */
  ttl?: number;
  /** Memory budget of its cache, bytes (50 MB when absent). */
  memoryBytes?: number;
  /**
   * Reads without a key are this tenant's when they name this host (`Host`): its GETs are
   * public. Writes and the admin API still need a key.
   */
  publicHost?: string;
  /** Whether it has a read-only key besides its full one. */
  readKey?: boolean;
  createdAt: string;
}

/** What a key may do: `write` everything; `read` only GET and HEAD (data and admin API). */
export type KeyScope = "write" | "read";

/**
 * Keys of the state under this prefix (the URL's `?prefix=` names another); the nodes' own
 * keys under `<prefix>node:`.
 */
export const DEFAULT_REDIS_STATE_PREFIX = "edgecache:tenants:";

/** Names as they appear in URLs of the CLI and in metrics labels. */
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** An API key: a prefix that says what it is, then 32 random bytes. */
const KEY_PREFIX = "ek_";
const C = "tenants";

/**
 * Keys are stored as their SHA-256: a stolen state file gives no key. A fast hash is
 * enough because a key is 256 random bits, not a password that could be guessed.
 */
export function keyHash(key: string): string {
  return createHash("sha256").update(key).digest("base64url");
}

/** A tenant as `create` makes it, with its key (and read-only key): the only time they are seen. */
export interface Created {
  tenant: Tenant;
  key: string;
  readKey?: string;
}

/** A tenant's key hash and what the key may do: a server's lookup table. */
export interface KeyedTenant {
  hash: string;
  scope: KeyScope;
  tenant: Tenant;
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
export const STATE_LEASE_MS = 5000;
export const HEARTBEAT_MS = 1000;
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
  if (!NAME.test(tenant.name)) {
    badOption(C, "name", "lower-case letters, digits, - and _ (at most 63)", tenant.name);
  }
  const key = newKey();
  const readKey = tenant.readKey ? newKey() : undefined;
  const publicHost = tenant.publicHost?.toLowerCase();
  const created: Tenant = {
    ...tenant,
    ...(publicHost && { publicHost }),
    createdAt: new Date().toISOString(),
  };
  const row: Row = {
    name: created.name,
    keyHash: keyHash(key),
    readKeyHash: readKey === undefined ? null : keyHash(readKey),
    source: JSON.stringify(created.source),
    ttl: created.ttl ?? null,
    memoryBytes: created.memoryBytes ?? null,
    publicHost: publicHost ?? null,
    createdAt: created.createdAt,
  };
  return { created, row, key, ...(readKey && { readKey }) };
}

export function newKey(): string {
  return KEY_PREFIX + randomBytes(32).toString("base64url");
}

export const exists = (name: string) =>
  new EdgecacheError("E_CONFLICT", C, `tenant "${name}" exists`);
export const hostTaken = (host: string | null) =>
  new EdgecacheError("E_CONFLICT", C, `host ${host} is another tenant's`);
export const noTenant = (name: string) =>
  new EdgecacheError("E_NOT_FOUND", C, `no tenant "${name}"`);

/** A server's lookup table from rows: each tenant's full key, and its read key if any. */
export function keyedOf(rows: Row[]): KeyedTenant[] {
  return rows.flatMap((row) => {
    const tenant = fromRow(row);
    return [
      { hash: row.keyHash, scope: "write" as const, tenant },
      ...(row.readKeyHash ? [{ hash: row.readKeyHash, scope: "read" as const, tenant }] : []),
    ];
  });
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
    try {
      this.#db = new Database(path);
    } catch (err) {
      throw new EdgecacheError("E_BAD_OPTION", C, `cannot open the state database ${path}`, {
        cause: err,
      });
    }
    this.#db.pragma("journal_mode = WAL");
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

/** A tenant as every state stores it (SQLite's columns; JSON in Redis). */
export interface Row {
  name: string;
  keyHash: string;
  readKeyHash: string | null;
  source: string;
  ttl: number | null;
  memoryBytes: number | null;
  publicHost: string | null;
  createdAt: string;
}

export function fromRow(row: Row): Tenant {
  return {
    name: row.name,
    source: JSON.parse(row.source) as TenantSource,
    ...(row.ttl !== null && { ttl: row.ttl }),
    ...(row.memoryBytes !== null && { memoryBytes: row.memoryBytes }),
    ...(row.publicHost !== null && { publicHost: row.publicHost }),
    ...(row.readKeyHash !== null && { readKey: true }),
    createdAt: row.createdAt,
  };
}
