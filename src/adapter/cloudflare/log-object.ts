import type { DurableObjectStateLike, ReachObject } from "../../durable/rpc.ts";
import { ChangeLogHost } from "../../log/durable-host.ts";
import {
  type AlarmStorageLike,
  type CaptureDrain,
  type CaptureEnv,
  captureDrain,
  type DrainedTable,
  d1ChangeTable,
  d1TableOf,
} from "./capture-drain.ts";
import { objectLogger } from "./logger.ts";
import type { ObjectJob } from "./object-job.ts";

/** Where the object keeps the change table its isolates named (see `LogObject`). */
const CAPTURE_KEY = "capture";

/**
 * The job of the object named after the change log (`<log>`, default `edgecache`): the log
 * itself (`ChangeLogHost`, src/log/durable-host.ts; its isolate side is `DurableChangeLog`)
 * and, with a D1 binding `DB` in the object's env (or the PostgreSQL of postgres-drain.ts),
 * the capture drain that feeds it
 * (`CaptureDrain`, capture-drain.ts): the drain appends in the same object, where the log's
 * append mark tells it whether a write appended meanwhile, so the two cannot live apart.
 *
 * A tenant's log (a Worker of tenants, `edgecache:tenant:<place>`) is fed from that tenant's
 * own D1 database: its isolates name the binding on every call (`capture`: `DB_SHOP`, or
 * false for an origin tenant's or a deleted tenant's log), since an object does not know its
 * own name. The object keeps the last one named in its storage, so its alarm drains the same
 * table after a restart, before any isolate calls; a log whose isolates never name one drains
 * its class's (`DB`).
 *
 * Ops: `sync`, `append`, `turn`, `release`, `quiet`, `leave` (the log's), `drain` (a drain,
 * then a sync) and `capture` (the drain's counters). The alarm is the drain's.
 */
export class LogObject implements ObjectJob {
  #log: ChangeLogHost;
  #capture: CaptureDrain | undefined;
  readonly #storage: DurableObjectStateLike["storage"] & Partial<AlarmStorageLike>;
  readonly #env: CaptureEnv | undefined;
  readonly #table: DrainedTable;
  /** The change table chosen (a binding, false for none, undefined for the class's). */
  #fed: string | false | undefined;
  #chosen = false;

  constructor(
    state: DurableObjectStateLike & { storage: Partial<AlarmStorageLike> },
    env: CaptureEnv | undefined,
    reach: ReachObject,
    /** The change table drained: D1's by default (see capture-drain.ts). */
    table: DrainedTable = d1ChangeTable,
  ) {
    this.#log = new ChangeLogHost(state, reach);
    this.#storage = state.storage;
    this.#env = env;
    this.#table = table;
  }

  async handle(op: string, body: Record<string, unknown>): Promise<Response> {
    const capture = await this.#drainFor(body.capture);
    if (op === "capture") return Response.json(capture?.stats() ?? null);
    if (op === "drain") return this.#drained(capture, body);
    if (op === "quiet" && capture && (await capture.waiting())) {
      // A load that read D1 may already show a change not drained yet: not exact.
      return Response.json({ quiet: false });
    }
    await capture?.touch(op === "sync");
    const response = await this.#log.handle(op, body);
    if (op === "append") capture?.afterWrite();
    return response;
  }

  /**
   * An isolate asks for what was captured so far (a Drizzle mutation waits for its own rows,
   * see src/query-cache/query-capture.ts): a drain begun after the call, then a sync, with the drain's
   * counters (null without a drain).
   */
  async #drained(
    capture: CaptureDrain | undefined,
    body: Record<string, unknown>,
  ): Promise<Response> {
    await capture?.touch(false);
    await capture?.drain();
    const synced = (await (await this.#log.handle("sync", body)).json()) as object;
    return Response.json({ ...synced, capture: capture?.stats() ?? null });
  }

  /** The capture drain's interval (see capture-drain.ts), once the log is read. */
  async alarm(): Promise<void> {
    await this.#log.ready();
    await (await this.#drainFor(undefined))?.alarm();
  }

  /**
   * The drain of the change table `named` by a call (a D1 binding, or false for none), kept
   * for later calls and restarts; a call that names none keeps the one chosen.
   */
  async #drainFor(named: unknown): Promise<CaptureDrain | undefined> {
    if (typeof named === "string" || named === false) {
      if (this.#chosen && named === this.#fed) return this.#capture;
      if (named !== (await this.#storage.get(CAPTURE_KEY))) {
        await this.#storage.put({ [CAPTURE_KEY]: named });
      }
      this.#choose(named);
    } else if (!this.#chosen) {
      this.#choose(await this.#storage.get<string | false>(CAPTURE_KEY));
    }
    return this.#capture;
  }

  #choose(named: string | false | undefined): void {
    this.#chosen = true;
    this.#fed = named;
    this.#capture = undefined;
    const storage = this.#storage;
    if (named === false || typeof storage.setAlarm !== "function") return;
    const table = named === undefined ? this.#table : d1TableOf(named);
    this.#capture = captureDrain(storage as AlarmStorageLike, this.#env, this.#log, table);
    if (this.#capture === undefined && named !== undefined && this.#env !== undefined) {
      objectLogger(this.#env).warn(
        `[edgecache] [capture] the change log's object has no D1 binding ${named} to drain (or EDGECACHE_CAPTURE_MS is 0)`,
      );
    }
  }
}
