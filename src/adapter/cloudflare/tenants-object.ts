import { errorResponse } from "../../app/errors.ts";
import {
  callObject,
  type DurableObjectNamespaceLike,
  type DurableObjectStateLike,
} from "../../durable/rpc.ts";
import { exists, hostTaken, type KeyScope, noTenant, type Row } from "../tenants/model.ts";

/** The tenants and the version they are at: what an isolate fetches and trusts for a lease. */
export interface TenantTable {
  version: number;
  rows: Row[];
}

/** The one object of the namespace that holds the registry. */
export const TENANTS_OBJECT = "tenants";
const C = "tenants";

/**
 * The Durable Object class of the tenant registry (bound as `TENANTS`): every tenant's row,
 * keys as their SHA-256 only, and a version that moves on each change. One object holds
 * them all, so a change is ordered and seen by the next read of any isolate, wherever it
 * runs. Each op reads, checks and writes without awaiting anything else, so the object's
 * input gate keeps two changes from interleaving.
 */
export class TenantsObject {
  readonly #storage: DurableObjectStateLike["storage"];

  constructor(state: DurableObjectStateLike) {
    this.#storage = state.storage;
  }

  async fetch(request: Request): Promise<Response> {
    const op = new URL(request.url).pathname.slice(1);
    const body = (await request.json()) as Record<string, unknown>;
    try {
      const table = await this.#table();
      if (op === "list") return Response.json(table);
      const rows = new Map(table.rows.map((r) => [r.name, r]));
      let deleted: Row | undefined;
      if (op === "create") {
        const row = body.row as Row;
        if (rows.has(row.name)) throw exists(row.name);
        if (row.publicHost !== null && table.rows.some((r) => r.publicHost === row.publicHost)) {
          throw hostTaken(row.publicHost);
        }
        rows.set(row.name, row);
      } else if (op === "rotate") {
        const name = String(body.name);
        const row = rows.get(name);
        if (!row) throw noTenant(name);
        const column = (body.scope as KeyScope) === "read" ? "readKeyHash" : "keyHash";
        rows.set(name, { ...row, [column]: String(body.hash) });
      } else if (op === "delete") {
        const name = String(body.name);
        deleted = rows.get(name);
        if (!deleted) throw noTenant(name);
        rows.delete(name);
      } else return new Response(`no op ${op}`, { status: 404 });
      const version = table.version + 1;
      await this.#storage.put({ rows: [...rows.values()], version });
      return Response.json({ version, ...(deleted && { row: deleted }) });
    } catch (error) {
      return errorResponse(error);
    }
  }

  async #table(): Promise<TenantTable> {
    const [rows, version] = await Promise.all([
      this.#storage.get<Row[]>("rows"),
      this.#storage.get<number>("version"),
    ]);
    return { version: version ?? 0, rows: rows ?? [] };
  }
}

/** One op of the registry, answered with JSON; the object's own errors keep their code. */
export function callTenants<T>(
  namespace: DurableObjectNamespaceLike,
  op: string,
  body: unknown = {},
): Promise<T> {
  return callObject<T>(namespace, TENANTS_OBJECT, op, body, {
    component: C,
    unavailable: "E_STORE_UNAVAILABLE",
    objectErrors: true,
  });
}
