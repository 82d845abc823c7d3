import type postgres from "postgres";
import { EdgecacheError } from "../../../core/errors.ts";
import { connectPostgres } from "../../../database/postgres/connect.ts";
import { transaction } from "../../../database/postgres/transaction.ts";
import { redactUrl } from "../../../sources/postgres.ts";
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
import { keyHash, NODE_SEEN_MS, newTenant, type TenantState } from "./state-contract.ts";
import { type SharedState, settleAt, sharedFeed } from "./state-shared.ts";

/** NOTIFY channel of changes; the payload is the new version. */
const CHANNEL = "edgecache_tenants";
const COLUMNS = `name, key_hash AS "keyHash", read_key_hash AS "readKeyHash", source, ttl,
  memory_bytes AS "memoryBytes", public_host AS "publicHost", created_at AS "createdAt"`;

/**
 * Tenants in PostgreSQL (`edgecache serve --state postgres://...`), for nodes that share
 * them: three tables in the connection's schema (`edgecache_tenants`, a version counter,
 * and the running nodes with the version each applied). A change bumps the version and
 * sends NOTIFY in its transaction; nodes LISTEN, reload, and record what they applied.
 */
export async function postgresTenantState(url: string): Promise<TenantState> {
  const sql = await connectPostgres(url, 2);
  try {
    // One process at a time: concurrent CREATE TABLE IF NOT EXISTS can collide.
    await transaction(sql, async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(hashtext('edgecache_tenants'))`;
      await tx.unsafe(`
        CREATE TABLE IF NOT EXISTS edgecache_tenants (
          name text PRIMARY KEY,
          key_hash text NOT NULL UNIQUE,
          read_key_hash text UNIQUE,
          source text NOT NULL,
          ttl integer,
          memory_bytes bigint,
          public_host text UNIQUE,
          created_at text NOT NULL
        );
        CREATE TABLE IF NOT EXISTS edgecache_tenants_version (
          one boolean PRIMARY KEY DEFAULT true CHECK (one),
          version bigint NOT NULL
        );
        INSERT INTO edgecache_tenants_version (version) VALUES (0) ON CONFLICT DO NOTHING;
        CREATE TABLE IF NOT EXISTS edgecache_tenant_nodes (
          id text PRIMARY KEY,
          version bigint NOT NULL,
          seen timestamptz NOT NULL
        );`);
    });
  } catch (cause) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw new EdgecacheError(
      "E_BAD_OPTION",
      "tenants",
      `cannot open the state database ${redactUrl(url)}: ${(cause as Error).message}`,
      { cause },
    );
  }
  return new PostgresTenantState(sql, redactUrl(url));
}

class PostgresTenantState implements TenantState, SharedState {
  readonly #sql: postgres.Sql;
  readonly where: string;
  /** The version this client's last change made. */
  #wrote: number | undefined;

  constructor(sql: postgres.Sql, where: string) {
    this.#sql = sql;
    this.where = where;
  }

  /** Runs `change` and bumps the version in one transaction; NOTIFY goes out at commit. */
  async #change<T>(change: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
    const [result, version] = (await transaction(this.#sql, async (tx) => {
      const result = await change(tx);
      const [row] = await tx<{ version: string }[]>`
        UPDATE edgecache_tenants_version SET version = version + 1 RETURNING version`;
      await tx`SELECT pg_notify(${CHANNEL}, ${row!.version})`;
      return [result, Number(row!.version)] as const;
    })) as unknown as readonly [T, number];
    this.#wrote = version;
    return result;
  }

  async create(tenant: Omit<Tenant, "createdAt">): Promise<Created> {
    const { created, row, key, readKey } = newTenant(tenant);
    try {
      await this.#change(
        (tx) => tx`
        INSERT INTO edgecache_tenants
          (name, key_hash, read_key_hash, source, ttl, memory_bytes, public_host, created_at)
        VALUES (${row.name}, ${row.keyHash}, ${row.readKeyHash}, ${row.source}, ${row.ttl},
          ${row.memoryBytes}, ${row.publicHost}, ${row.createdAt})`,
      );
    } catch (err) {
      const { code, constraint_name: constraint } = err as {
        code?: string;
        constraint_name?: string;
      };
      if (code === "23505" && constraint === "edgecache_tenants_pkey") throw exists(tenant.name);
      if (code === "23505") throw hostTaken(row.publicHost);
      throw err;
    }
    return { tenant: created, key, ...(readKey && { readKey }) };
  }

  async list(): Promise<Tenant[]> {
    return (await this.#rows(this.#sql)).map(fromRow);
  }

  async rotateKey(name: string, scope: KeyScope = "write"): Promise<string> {
    const key = newKey();
    const column = scope === "write" ? "key_hash" : "read_key_hash";
    const { count } = await this.#change(
      (tx) => tx`UPDATE edgecache_tenants SET ${tx(column)} = ${keyHash(key)} WHERE name = ${name}`,
    );
    if (count === 0) throw noTenant(name);
    return key;
  }

  async delete(name: string): Promise<void> {
    const { count } = await this.#change(
      (tx) => tx`DELETE FROM edgecache_tenants WHERE name = ${name}`,
    );
    if (count === 0) throw noTenant(name);
  }

  async settle() {
    return this.#wrote === undefined ? undefined : settleAt(this, this.#wrote);
  }

  follow(onChange: () => void) {
    return sharedFeed(this, onChange, console);
  }

  async load(): Promise<{ version: number; rows: Row[] }> {
    // One snapshot: the rows are those of the version read with them.
    return transaction(
      this.#sql,
      async (tx) => {
        const [v] = await tx<{ version: string }[]>`SELECT version FROM edgecache_tenants_version`;
        return { version: Number(v!.version), rows: await this.#rows(tx) };
      },
      "isolation level repeatable read read only",
    );
  }

  async beat(node: string, applied: number): Promise<number> {
    const [v] = await this.#sql<{ version: string }[]>`
      WITH seen AS (
        INSERT INTO edgecache_tenant_nodes (id, version, seen) VALUES (${node}, ${applied}, now())
        ON CONFLICT (id) DO UPDATE SET version = excluded.version, seen = excluded.seen
      )
      SELECT version FROM edgecache_tenants_version`;
    return Number(v!.version);
  }

  async nodes(): Promise<number[]> {
    const rows = await this.#sql<{ version: string }[]>`
      SELECT version FROM edgecache_tenant_nodes
      WHERE seen > now() - ${NODE_SEEN_MS} * interval '1 millisecond'`;
    return rows.map((r) => Number(r.version));
  }

  async subscribe(wake: () => void) {
    // postgres.js listens on a connection of its own and calls `onlisten` again after it
    // reconnected: whatever was sent meanwhile is picked up by that reload.
    const { unlisten } = await this.#sql.listen(CHANNEL, wake, wake);
    return { close: unlisten };
  }

  async leave(node: string): Promise<void> {
    await this.#sql`DELETE FROM edgecache_tenant_nodes WHERE id = ${node}`;
  }

  async #rows(sql: postgres.Sql | postgres.TransactionSql): Promise<Row[]> {
    const rows = await sql.unsafe<Row[]>(`SELECT ${COLUMNS} FROM edgecache_tenants ORDER BY name`);
    return rows.map((r) => ({
      ...r,
      memoryBytes: r.memoryBytes === null ? null : Number(r.memoryBytes),
    }));
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }
}
