import { createHash } from "node:crypto";
import { NODE_TENANTS_LEASE, renewAfterMs } from "../../../core/time/lease.ts";
import {
  type Created,
  type KeyedTenant,
  type KeyScope,
  newTenantKeys,
  type Row,
  rowOf,
  type Tenant,
} from "../../tenants/model.ts";

/**
 * What every tenant state (a SQLite file, PostgreSQL, Redis; openTenantState in state.ts
 * opens one) is and shares: the contract, the key hash, the lease and new tenants' rows.
 */

/**
 * Keys of the state under this prefix (the URL's `?prefix=` names another); the nodes' own
 * keys under `<prefix>node:`.
 */
export const DEFAULT_REDIS_STATE_PREFIX = "edgecache:tenants:";

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
