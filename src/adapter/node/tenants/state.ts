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

function newKey(): string {
  return KEY_PREFIX + randomBytes(32).toString("base64url");
}

/**
 * The tenants of a node, in a small SQLite file that the CLI writes and a running server
 * reads: `changed()` tells the server, cheaply enough for every request, that another
 * connection (the CLI) has committed since it last looked.
 */
export class TenantState {
  readonly #db: Database.Database;
  readonly path: string;
  #version = -1;

  constructor(path: string) {
    this.path = path;
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

  /**
   * Creates a tenant and returns its API key (and its read-only key with `readKey`): the
   * only time they are seen.
   */
  create(tenant: Omit<Tenant, "createdAt">): { tenant: Tenant; key: string; readKey?: string } {
    if (!NAME.test(tenant.name)) {
      badOption(C, "name", "lower-case letters, digits, - and _ (at most 63)", tenant.name);
    }
    const key = newKey();
    const readKey = tenant.readKey ? newKey() : undefined;
    const publicHost = tenant.publicHost?.toLowerCase();
    const created = {
      ...tenant,
      ...(publicHost && { publicHost }),
      createdAt: new Date().toISOString(),
    };
    try {
      this.#db
        .prepare(
          `INSERT INTO tenants (name, keyHash, readKeyHash, source, ttl, memoryBytes, publicHost, createdAt)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          created.name,
          keyHash(key),
          readKey === undefined ? null : keyHash(readKey),
          JSON.stringify(created.source),
          created.ttl ?? null,
          created.memoryBytes ?? null,
          publicHost ?? null,
          created.createdAt,
        );
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "SQLITE_CONSTRAINT_PRIMARYKEY") {
        throw new EdgecacheError("E_CONFLICT", C, `tenant "${tenant.name}" exists`);
      }
      if (code === "SQLITE_CONSTRAINT_UNIQUE") {
        throw new EdgecacheError("E_CONFLICT", C, `host ${publicHost} is another tenant's`);
      }
      throw err;
    }
    return { tenant: created, key, ...(readKey && { readKey }) };
  }

  list(): Tenant[] {
    return (this.#db.prepare("SELECT * FROM tenants ORDER BY name").all() as Row[]).map(fromRow);
  }

  /**
   * A new key of `scope` for `name` (a read key is added if it had none); the old one stops
   * working at the server's next request.
   */
  rotateKey(name: string, scope: KeyScope = "write"): string {
    const key = newKey();
    const column = scope === "write" ? "keyHash" : "readKeyHash";
    const { changes } = this.#db
      .prepare(`UPDATE tenants SET ${column} = ? WHERE name = ?`)
      .run(keyHash(key), name);
    if (changes === 0) throw new EdgecacheError("E_NOT_FOUND", C, `no tenant "${name}"`);
    return key;
  }

  delete(name: string): void {
    const { changes } = this.#db.prepare("DELETE FROM tenants WHERE name = ?").run(name);
    if (changes === 0) throw new EdgecacheError("E_NOT_FOUND", C, `no tenant "${name}"`);
  }

  /** The tenants' key hashes and scopes, for a server's lookup table. */
  keyed(): { hash: string; scope: KeyScope; tenant: Tenant }[] {
    return (this.#db.prepare("SELECT * FROM tenants").all() as Row[]).flatMap((row) => {
      const tenant = fromRow(row);
      return [
        { hash: row.keyHash, scope: "write" as const, tenant },
        ...(row.readKeyHash ? [{ hash: row.readKeyHash, scope: "read" as const, tenant }] : []),
      ];
    });
  }

  /**
   * Whether another connection committed since the last call (SQLite's data_version: a
   * read of the connection's own state, no query).
   */
  changed(): boolean {
    const version = this.#db.pragma("data_version", { simple: true }) as number;
    if (version === this.#version) return false;
    this.#version = version;
    return true;
  }

  close(): void {
    this.#db.close();
  }
}

interface Row {
  name: string;
  keyHash: string;
  readKeyHash: string | null;
  source: string;
  ttl: number | null;
  memoryBytes: number | null;
  publicHost: string | null;
  createdAt: string;
}

function fromRow(row: Row): Tenant {
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
