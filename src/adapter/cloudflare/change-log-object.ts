import {
  callObject,
  type DurableObjectNamespaceLike,
  type DurableObjectStateLike,
  type ReachObject,
} from "../../durable/rpc.ts";
import { FollowerHost } from "../../log/durable-follower.ts";
import { ChangeLogHost } from "../../log/durable-host.ts";
import {
  type AlarmStorageLike,
  type CaptureDrain,
  type CaptureEnv,
  captureDrain,
} from "./capture-drain.ts";
import { HotKeysHost } from "./hot-keys.ts";
import { RulesHost, type RulesStorageLike } from "./rules-object.ts";

/**
 * The Durable Object class of the change log. Bind it in `wrangler.jsonc`
 * (`durable_objects` and a `migrations` entry with `new_sqlite_classes`) and export it
 * from the Worker.
 *
 * It hosts two collaborators: the log (`ChangeLogHost`) and, in the object named
 * `HOT_KEYS_OBJECT`, the hot-key totals (`HotKeysHost`). The totals live in an object of
 * their own name, so the log's object is not loaded with them; one class keeps the
 * Worker's config short. With a D1 binding `DB` in its env, the log's object also drains
 * D1's change capture into the log (`capture-drain.ts`).
 *
 * With learned rules (`edgecacheProxyWorker({ learn })`), the object named `<log>:rules`
 * holds them (`RulesHost`, ops under `rules/`).
 *
 * In follower mode, the objects named `<log>@<region>` are the log's regional followers
 * (`FollowerHost`, ops under `follower/`): the log's object pushes records to them through
 * its own `CHANGE_LOG` binding, and they renew their leases with it the same way.
 */
export class ChangeLogObject {
  #log: ChangeLogHost;
  #hot: HotKeysHost | undefined;
  #capture: CaptureDrain | undefined;
  #follower: FollowerHost | undefined;
  #rules: RulesHost | undefined;
  #reach: ReachObject;
  #storage: RulesStorageLike;

  constructor(
    state: DurableObjectStateLike & { storage: Partial<AlarmStorageLike> & RulesStorageLike },
    env?: CaptureEnv & { CHANGE_LOG?: DurableObjectNamespaceLike },
  ) {
    const namespace = env?.CHANGE_LOG;
    this.#reach = (name, op, body) => {
      if (namespace === undefined) {
        return Promise.reject(new Error("[edgecache] [change-log] no CHANGE_LOG binding"));
      }
      return callObject(namespace, name, op, body, {
        component: "durable-log",
        unavailable: "E_LOG_UNAVAILABLE",
      });
    };
    this.#log = new ChangeLogHost(state, this.#reach);
    const storage = state.storage;
    this.#storage = storage;
    if (typeof storage.setAlarm === "function") {
      this.#capture = captureDrain(storage as AlarmStorageLike, env, this.#log);
    }
  }

  async fetch(request: Request): Promise<Response> {
    const op = new URL(request.url).pathname.slice(1);
    const body = (await request.json()) as Record<string, unknown>;
    if (op.startsWith("hot/")) {
      this.#hot ??= new HotKeysHost();
      return this.#hot.handle(op.slice(4), body);
    }
    if (op.startsWith("rules/")) {
      this.#rules ??= new RulesHost(this.#storage);
      return this.#rules.handle(op.slice(6), body);
    }
    if (op.startsWith("follower/")) {
      this.#follower ??= new FollowerHost(this.#reach);
      return this.#follower.handle(op.slice(9), body);
    }
    if (op === "capture") return Response.json(this.#capture?.stats() ?? null);
    if (op === "drain") return this.#drained(body);
    if (op === "quiet" && this.#capture && (await this.#capture.waiting())) {
      // A load that read D1 may already show a change not drained yet: not exact.
      return Response.json({ quiet: false });
    }
    await this.#capture?.touch(op === "sync");
    const response = await this.#log.handle(op, body);
    if (op === "append") this.#capture?.afterWrite();
    return response;
  }

  /**
   * An isolate asks for what was captured so far (a Drizzle mutation waits for its own rows,
   * see src/drizzle/capture.ts): a drain begun after the call, then a sync, with the drain's
   * counters (null without a drain).
   */
  async #drained(body: Record<string, unknown>): Promise<Response> {
    await this.#capture?.touch(false);
    await this.#capture?.drain();
    const synced = (await (await this.#log.handle("sync", body)).json()) as object;
    const capture = this.#capture?.stats() ?? null;
    return Response.json({ ...synced, capture });
  }

  /** The capture drain's interval (see capture-drain.ts). */
  async alarm(): Promise<void> {
    await this.#capture?.alarm();
  }
}
