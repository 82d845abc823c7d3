import { randomId } from "../../../core/random-id.ts";
import type { Warner } from "../../../core/report.ts";
import { rerunning } from "../../../core/rerun.ts";
import { type KeyedTenant, keyedOf, type Row } from "../../tenants/model.ts";
import {
  HEARTBEAT_MS,
  NODE_SEEN_MS,
  type Settled,
  STATE_LEASE_MS,
  type TenantFeed,
} from "./state-contract.ts";

/** What a state shared by nodes (PostgreSQL, Redis) provides to follow it. */
export interface SharedState {
  /** The tenants and the version they are at, read together. */
  load(): Promise<{ version: number; rows: Row[] }>;
  /**
   * Records `node` as running with `applied` applied (kept `NODE_SEEN_MS`); answers the
   * state's current version.
   */
  beat(node: string, applied: number): Promise<number>;
  /** The versions applied by the nodes heard within `NODE_SEEN_MS`. */
  nodes(): Promise<number[]>;
  /** Calls `wake` on every change, and whenever the subscription is (re)made. */
  subscribe(wake: () => void): Promise<{ close(): Promise<void> }>;
  leave(node: string): Promise<void>;
}

/**
 * A server's feed from a shared state: it reloads on each notification, and on each
 * heartbeat that finds a newer version (a notification can be lost with a connection);
 * after each reload it tells the state which version it applied, which is what the CLI's
 * `settle` waits for. It trusts what it has for `STATE_LEASE_MS` after it last heard the
 * state; past that `current()` is false and the node refuses requests.
 */
export async function sharedFeed(
  state: SharedState,
  onChange: () => void,
  logger: Warner,
): Promise<TenantFeed> {
  const node = randomId();
  let applied = -1;
  let latest: KeyedTenant[] | undefined;
  let heardAt = Number.NEGATIVE_INFINITY;
  let failing = false;
  const failed = (err: unknown) => {
    if (failing) return;
    failing = true;
    logger.warn(
      `[edgecache] [tenants] the state database cannot be reached; requests are refused from ${STATE_LEASE_MS} ms after it was last heard`,
      err,
    );
  };
  const reload = rerunning(async () => {
    const started = performance.now();
    const { version, rows } = await state.load();
    if (version !== applied) {
      latest = keyedOf(rows);
      applied = version;
      onChange();
    }
    await state.beat(node, applied);
    heardAt = started;
    failing = false;
  });
  await reload();
  const subscription = await state.subscribe(() => reload().catch(failed));
  const timer = setInterval(async () => {
    const started = performance.now();
    try {
      const version = await state.beat(node, applied);
      if (version !== applied) await reload();
      else heardAt = Math.max(heardAt, started);
      failing = false;
    } catch (err) {
      failed(err);
    }
  }, HEARTBEAT_MS);
  timer.unref();
  return {
    changes() {
      const changed = latest;
      latest = undefined;
      return changed;
    },
    current: () => performance.now() - heardAt < STATE_LEASE_MS,
    async close() {
      clearInterval(timer);
      await subscription.close();
      await reload.settled();
      await state.leave(node).catch(() => {});
    },
  };
}

/** How often `settle` asks the state which version the nodes applied. */
const SETTLE_POLL_MS = 25;

/**
 * Waits until every node heard within `NODE_SEEN_MS` applied `version`, or until that
 * window has passed (a node that did not answer by then has stopped serving on its own).
 */
export async function settleAt(state: SharedState, version: number): Promise<Settled> {
  const deadline = performance.now() + NODE_SEEN_MS + 500;
  for (;;) {
    const nodes = await state.nodes();
    const behind = nodes.filter((v) => v < version).length;
    if (behind === 0 || performance.now() > deadline) return { nodes: nodes.length, behind };
    await new Promise((done) => setTimeout(done, SETTLE_POLL_MS));
  }
}
