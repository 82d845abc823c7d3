import type Database from "better-sqlite3";
import { openSqliteFile } from "../../../database/sqlite/file.ts";
import {
  type Created,
  exists,
  fromRow,
  hostTaken,
  type KeyScope,
  keyedOf,
  newKey,
  noTenant,
  type Row,
  type Tenant,
} from "../../tenants/model.ts";
import { keyHash, newTenant, type TenantFeed, type TenantState } from "./state-contract.ts";

/** The state database beside the cache when none is named. */
export const DEFAULT_STATE_FILE = "edgecache.tenants.db";

const C = "tenants";

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
