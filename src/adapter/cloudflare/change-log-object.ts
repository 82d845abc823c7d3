import {
  callObject,
  type DurableObjectNamespaceLike,
  type DurableObjectStateLike,
  type ReachObject,
} from "../../durable/rpc.ts";
import { FollowerHost } from "../../log/durable-follower.ts";
import type { AlarmStorageLike, CaptureEnv, DrainedTable } from "./capture-drain.ts";
import { HotKeysHost } from "./hot-keys.ts";
import { LogObject } from "./log-object.ts";
import type { ObjectJob } from "./object-job.ts";
import { RulesHost, type RulesStorageLike } from "./rules-object.ts";

/** The jobs of the namespace, by the prefix of the ops each answers (the log's have none). */
type JobKind = "log" | "hot" | "rules" | "follower";
const PREFIXED: readonly JobKind[] = ["hot", "rules", "follower"];

/**
 * The Durable Object class of the change log's namespace. Bind it in `wrangler.jsonc`
 * (`durable_objects` and a `migrations` entry with `new_sqlite_classes`) and export it
 * from the Worker.
 *
 * One binding, several jobs: each object does the one its name gives it, and each job is a
 * class of its own with its isolate side beside it:
 * - `<log>` (default `edgecache`): the log and, with a D1 binding `DB` (or PostgreSQL, see
 *   postgres-drain.ts; a tenant's log: the binding its isolates name), its capture drain
 *   (`LogObject`, log-object.ts; isolates: `DurableChangeLog`);
 * - `edgecache:hot-keys`: the hot-key totals (`HotKeysHost`, ops under `hot/`, hot-keys.ts;
 *   isolates: `HotKeysReporter`);
 * - `<log>:rules`: learned rules (`RulesHost`, ops under `rules/`, rules-object.ts; isolates:
 *   `IsolateRules`), with `edgecacheProxyWorker({ learn })`;
 * - `<log>@<region>`: the log's regional followers in follower mode (`FollowerHost`, ops under
 *   `follower/`, src/log/durable-follower.ts; isolates: `DurableChangeLog`'s follower mode). The
 *   log's object pushes records to them through its own `CHANGE_LOG` binding, and they renew
 *   their leases with it the same way.
 *
 * An object does not know its name, so a job is chosen by the prefix of the op it is asked,
 * and made on the first such call: an object holds only its own job's state (the rules and
 * hot-key objects no longer start a log). Storage keys are the jobs' own (`state`, `r<seq>`,
 * `history`, `h<n>` for the log, `rule:<id>` for rules), as every earlier version wrote them.
 */
export class ChangeLogObject {
  #jobs = new Map<JobKind, ObjectJob>();
  #make: (kind: JobKind) => ObjectJob;

  constructor(
    state: DurableObjectStateLike & { storage: Partial<AlarmStorageLike> & RulesStorageLike },
    env?: CaptureEnv & { CHANGE_LOG?: DurableObjectNamespaceLike },
    /**
     * The change table the log's object drains: D1's `DB` by default; a subclass gives
     * another (`postgresChangeLogObject`, postgres-drain.ts).
     */
    drained?: DrainedTable,
  ) {
    const namespace = env?.CHANGE_LOG;
    const reach: ReachObject = (name, op, body) => {
      if (namespace === undefined) {
        return Promise.reject(new Error("[edgecache] [change-log] no CHANGE_LOG binding"));
      }
      return callObject(namespace, name, op, body, {
        component: "durable-log",
        unavailable: "E_LOG_UNAVAILABLE",
      });
    };
    this.#make = (kind) => {
      switch (kind) {
        case "hot":
          return new HotKeysHost();
        case "rules":
          return new RulesHost(state.storage);
        case "follower":
          return new FollowerHost(reach);
        case "log":
          return new LogObject(state, env, reach, drained);
      }
    };
  }

  async fetch(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname.slice(1);
    const body = (await request.json()) as Record<string, unknown>;
    const kind = PREFIXED.find((k) => path.startsWith(`${k}/`)) ?? "log";
    const op = kind === "log" ? path : path.slice(kind.length + 1);
    return this.#job(kind).handle(op, body);
  }

  /** Only the log's object sets alarms (its capture drain's, see capture-drain.ts). */
  async alarm(): Promise<void> {
    await this.#job("log").alarm?.();
  }

  #job(kind: JobKind): ObjectJob {
    let job = this.#jobs.get(kind);
    if (job === undefined) {
      job = this.#make(kind);
      this.#jobs.set(kind, job);
    }
    return job;
  }
}
