import { bearerToken } from "../../app/access.ts";
import { cgiName } from "../../app/proxy/headers.ts";
import { badOption, EdgecacheError } from "../../core/errors.ts";

/**
 * Tenants as every runtime stores them: their rows, keys and checks. Web-standard APIs only
 * (`crypto.getRandomValues`, `crypto.subtle`), so the Node state and the Workers registry
 * share it; Node keeps a synchronous hash of its own (`keyHash` in node/tenants/state.ts),
 * which `keyHashOf` equals.
 */

/**
 * What a tenant is served from: its own database (on Node a SQLite file or a postgres://
 * URL; on Workers the name of a D1 binding), or its own origin.
 */
export type TenantSource = { database: string } | { origin: string };

export interface Tenant {
  name: string;
  source: TenantSource;
  /** Default seconds a response stays cached (the node's default when absent). */
  ttl?: number;
  /** Memory budget of its cache, bytes (50 MB on Node, the isolate's budget on Workers, when absent). */
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

/** A tenant as every state stores it (SQLite's columns; JSON in Redis and the Durable Object). */
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

/** Names as they appear in URLs of the CLI and in metrics labels. */
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** An API key: a prefix that says what it is, then 32 random bytes. */
const KEY_PREFIX = "ek_";
const C = "tenants";

/** A new API key: `ek_` and 32 random bytes, base64url (43 characters). */
export function newKey(): string {
  return KEY_PREFIX + base64url(crypto.getRandomValues(new Uint8Array(32)));
}

/**
 * A key's SHA-256, base64url: what every state stores. A fast hash is enough because a key
 * is 256 random bits, not a password that could be guessed.
 */
export async function keyHashOf(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return base64url(new Uint8Array(digest));
}

function base64url(bytes: Uint8Array): string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** A new tenant checked, and its keys: the row is made by `rowOf` with their hashes. */
export function newTenantKeys(tenant: Omit<Tenant, "createdAt">): {
  created: Tenant;
  key: string;
  readKey?: string;
} {
  if (typeof tenant.name !== "string" || !NAME.test(tenant.name)) {
    badOption(C, "name", "lower-case letters, digits, - and _ (at most 63)", tenant.name);
  }
  const publicHost = tenant.publicHost?.toLowerCase();
  const created: Tenant = {
    ...tenant,
    ...(publicHost && { publicHost }),
    createdAt: new Date().toISOString(),
  };
  const readKey = tenant.readKey ? newKey() : undefined;
  return { created, key: newKey(), ...(readKey && { readKey }) };
}

/** The row of a tenant whose keys hash to `keyHash` (and `readKeyHash`). */
export function rowOf(tenant: Tenant, keyHash: string, readKeyHash: string | undefined): Row {
  return {
    name: tenant.name,
    keyHash,
    readKeyHash: readKeyHash ?? null,
    source: JSON.stringify(tenant.source),
    ttl: tenant.ttl ?? null,
    memoryBytes: tenant.memoryBytes ?? null,
    publicHost: tenant.publicHost ?? null,
    createdAt: tenant.createdAt,
  };
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

/** What makes a tenant's cache: a new key or public host does not change it. */
export function identity(t: Tenant): string {
  return JSON.stringify([t.source, t.ttl, t.memoryBytes, t.createdAt]);
}

export const exists = (name: string) =>
  new EdgecacheError("E_CONFLICT", C, `tenant "${name}" exists`);
export const hostTaken = (host: string | null) =>
  new EdgecacheError("E_CONFLICT", C, `host ${host} is another tenant's`);
export const noTenant = (name: string) =>
  new EdgecacheError("E_NOT_FOUND", C, `no tenant "${name}"`);

/** What a read scope allows (RFC 9110 9.2.1's safe methods that edgecache answers). */
const READ_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);

/** Who a request is: a tenant, with what its key (or its public host) allows. */
export interface TenantAccess {
  tenant: Tenant;
  scope: KeyScope;
  /** No key: a public read by host. */
  anonymous?: boolean;
}

/**
 * Refuses what a request's access does not allow: no tenant (no key, a wrong one), the
 * admin API (`admin`) without a key, or a write with a read key or a public read.
 */
export function allowed(
  access: TenantAccess | undefined,
  method: string,
  admin: boolean,
): TenantAccess {
  if (!access || (access.anonymous && admin)) {
    throw new EdgecacheError(
      "E_UNAUTHORIZED",
      C,
      "an API key is required: Authorization: Bearer <key> or X-Edgecache-Key",
    );
  }
  if (access.scope === "read" && !READ_METHODS.has(method)) {
    throw new EdgecacheError(
      "E_FORBIDDEN",
      C,
      access.anonymous
        ? "public reads only: writes need the tenant's key"
        : "this key may only read: writes need the tenant's key",
    );
  }
  return access;
}
/** The request header that carries a tenant's key besides `Authorization: Bearer`; never passed on. */
export const KEY_HEADER = "x-edgecache-key";

/** The key a request names its tenant by, and the header it came in. */
export interface RequestKey {
  /** undefined: no key (a public read by host, or 401). */
  key: string | undefined;
  /** The header that carried it, removed before the tenant's app sees the request. */
  carrier: typeof KEY_HEADER | "authorization";
  /**
   * With X-Edgecache-Key: the token of `Authorization: Bearer`, if any. The client's own
   * credential, unless it is a tenant's key (each runtime looks it up: see keyField).
   */
  bearer?: string;
}

/**
 * Where a request's tenant key is, on every runtime and path. X-Edgecache-Key, when present,
 * is the key alone, and Authorization is the client's own credential, passed to its tenant
 * (an origin with bearer auth can be a tenant: RFC 9111 3.5 then keeps one credential's
 * answer from another) unless it holds a tenant's key. Without it, `Authorization: Bearer
 * <key>` is the key, and Authorization is never passed on. An empty X-Edgecache-Key is a
 * wrong key, not none.
 */
export function requestKey(header: (name: string) => string | undefined): RequestKey {
  const named = header(KEY_HEADER);
  const bearer = bearerToken(header("authorization"));
  return named === undefined
    ? { key: bearer, carrier: "authorization" }
    : { key: named.trim(), carrier: KEY_HEADER, ...(bearer !== undefined && { bearer }) };
}

/**
 * Whether a request field is edgecache's, never a tenant app's (nor its origin's): the key's
 * header in every spelling a CGI, WSGI, Rack or PHP stack reads as HTTP_X_EDGECACHE_KEY
 * (`X_Edgecache_Key`), and Authorization when it carried the key or, beside X-Edgecache-Key,
 * holds a tenant's key (`bearerIsKey`: the runtime's lookup of `key.bearer`, any tenant's full
 * or read-only key). The one decision for Node's app and raw-hit paths and the Worker.
 */
export function keyField(name: string, key: RequestKey, bearerIsKey: boolean): boolean {
  const cgi = cgiName(name);
  if (cgi === KEY_HEADER) return true;
  return cgi === "authorization" && (key.carrier === "authorization" || bearerIsKey);
}

/**
 * The headers a tenant's app gets: without the key's fields (keyField); for its admin API
 * (`admin`, which the key opened: isAdminPath), Authorization holds that app's own token.
 */
export function tenantHeaders(
  from: Headers,
  key: RequestKey,
  bearerIsKey: boolean,
  admin?: string,
): Headers {
  const headers = new Headers(from);
  for (const name of [...from.keys()]) {
    if (keyField(name, key, bearerIsKey)) headers.delete(name);
  }
  if (admin !== undefined) headers.set("authorization", `Bearer ${admin}`);
  return headers;
}
