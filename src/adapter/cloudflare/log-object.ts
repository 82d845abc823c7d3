import type { DurableObjectStateLike, ReachObject } from "../../durable/rpc.ts";
import { ChangeLogHost } from "../../log/durable-host.ts";
import {
  type AlarmStorageLike,
  type CaptureDrain,
  type CaptureEnv,
  captureDrain,
  type DrainedTable,
} from "./capture-drain.ts";
import type { ObjectJob } from "./object-job.ts";

/**
 * The job of the object named after the change log (`<log>`, default `edgecache`): the log
 * itself (`ChangeLogHost`, src/log/durable-host.ts; its isolate side is `DurableChangeLog`)
 * and, with a D1 binding `DB` in the object's env (or the PostgreSQL of postgres-drain.ts),
 * the capture drain that feeds it
 * (`CaptureDrain`, capture-drain.ts): the drain appends in the same object, where the log's
 * append mark tells it whether a write appended meanwhile, so the two cannot live apart.
 *
 * Ops: `sync`, `append`, `turn`, `release`, `quiet`, `leave` (the log's), `drain` (a drain,
 * then a sync) and `capture` (the drain's counters). The alarm is the drain's.
 */
export class LogObject implements ObjectJob {
  #log: ChangeLogHost;
  #capture: CaptureDrain | undefined;

  constructor(
    state: DurableObjectStateLike & { storage: Partial<AlarmStorageLike> },
    env: CaptureEnv | undefined,
    reach: ReachObject,
    /** The change table drained: D1's by default (see capture-drain.ts). */
    table?: DrainedTable,
  ) {
    this.#log = new ChangeLogHost(state, reach);
    const storage = state.storage;
    if (typeof storage.setAlarm === "function") {
      this.#capture = captureDrain(storage as AlarmStorageLike, env, this.#log, table);
    }
  }

  async handle(op: string, body: Record<string, unknown>): Promise<Response> {
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
   * see src/query-cache/capture.ts): a drain begun after the call, then a sync, with the drain's
   * counters (null without a drain).
   */
  async #drained(body: Record<string, unknown>): Promise<Response> {
    await this.#capture?.touch(false);
    await this.#capture?.drain();
    const synced = (await (await this.#log.handle("sync", body)).json()) as object;
    const capture = this.#capture?.stats() ?? null;
    return Response.json({ ...synced, capture });
  }

  /** The capture drain's interval (see capture-drain.ts), once the log is read. */
  async alarm(): Promise<void> {
    await this.#log.ready();
    await this.#capture?.alarm();
  }
}
